"""``MedfuseModel`` = image encoder ⊕ text encoder → fusion → heads, presets, save and load.

    model = create_model("chest_ct_fusion_tiny")
    batch = model.prepare(volumes=[vol, None], reports=["No effusion.", None])
    out = model(**batch)                   # out.logits [B, L], out.risk [B], out.mask [B, 2]
    save_model(model, None, "out/my_model")
    same = load_model("out/my_model")      # SHA-256 of the weights checked against the card

A preset (registry ``model_presets``) is a function returning a *spec*: a dict with
``image_encoder`` / ``text_encoder`` / ``fusion`` (``{"name", "kwargs"}`` or ``None`` for an
absent encoder), ``heads`` (``{head_name: {"name", "kwargs"}}``), ``preprocessing``
(:class:`~medfuse.transforms.PreprocessingConfig` fields) and ``description``. Every preset
``X`` also exists as ``X_tiny`` (test-sized widths, 32³ input).
"""

from __future__ import annotations

import copy
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from ..errors import ConfigError, ModelError
from ..registry import fusion as fusion_registry
from ..registry import heads as heads_registry
from ..registry import image_encoders, model_presets, text_encoders
from ..transforms import PreprocessingConfig, preprocess_batch
from .card import CARD_FILE, ModelCard
from .encoders.image import ImageEncoder, ImageEncoding
from .encoders.text import TextEncoder, TextEncoding
from .fusion import Fusion, FusionOutput
from .heads import DiscreteTimeHead, MultiLabelHead, RiskHead
from .labels import CHEST_CT_LABELS
from .weights import load_weights, save_weights, sha256_file

__all__ = [
    "CHEST_CT_LABELS",
    "MedfuseModel",
    "ModelOutput",
    "build_model",
    "create_model",
    "load_model",
    "model_folder",
    "preset_names",
    "preset_spec",
    "save_model",
]

log = logging.getLogger(__name__)

TOKENIZER_FILE = "tokenizer.json"
WEIGHTS_FILE = "weights.safetensors"


@dataclass
class ModelOutput:
    """What :meth:`MedfuseModel.forward` returns."""

    #: every head's output by head name ("diagnosis" logits [B, L], "risk" [B] or [B, K])
    outputs: dict[str, Tensor]
    #: fused embedding [B, D]
    embedding: Tensor
    #: [B, 2] bool: (image used, report used) per sample
    mask: Tensor
    fusion: FusionOutput
    image: ImageEncoding | None = None
    text: TextEncoding | None = None
    extras: dict[str, Any] = field(default_factory=dict)

    @property
    def logits(self) -> Tensor | None:
        """Diagnosis logits [B, L] (None without a diagnosis head)."""
        return self.outputs.get("diagnosis")

    @property
    def risk(self) -> Tensor | None:
        """Risk head output (None without a risk head)."""
        return self.outputs.get("risk")

    @property
    def attention(self) -> dict[str, Tensor]:
        return self.fusion.attention


class MedfuseModel(nn.Module):
    """Image encoder (optional) + text encoder (optional) + fusion + named heads.

    Missing modalities are handled per sample: images flagged absent are not run through the
    encoder (and do not touch its batch-norm statistics); absent reports come from the text
    encoder's ``present`` flags; the fusion replaces both by learned tokens.
    """

    def __init__(
        self,
        image_encoder: ImageEncoder | None,
        text_encoder: TextEncoder | None,
        fusion: Fusion,
        heads: dict[str, nn.Module],
        *,
        preprocessing: PreprocessingConfig | dict[str, Any] | None = None,
        name: str = "custom",
        description: str = "",
    ):
        super().__init__()
        if image_encoder is None and text_encoder is None:
            raise ConfigError("a model needs an image encoder, a text encoder or both")
        if not heads:
            raise ConfigError("a model needs at least one head")
        self.image_encoder = image_encoder
        self.text_encoder = text_encoder
        self.fusion = fusion
        self.heads = nn.ModuleDict(heads)
        if isinstance(preprocessing, dict):
            preprocessing = PreprocessingConfig.from_dict(preprocessing)
        self.preprocessing = preprocessing or PreprocessingConfig()
        self.name = name
        self.description = description
        if (
            image_encoder is not None
            and image_encoder.in_channels != self.preprocessing.in_channels
        ):
            raise ConfigError(
                f"image encoder takes {image_encoder.in_channels} channel(s) but preprocessing "
                f"gives {self.preprocessing.in_channels}"
            )

    # -- description ------------------------------------------------------------------------------
    @property
    def diagnosis_head(self) -> MultiLabelHead | None:
        return next((h for h in self.heads.values() if isinstance(h, MultiLabelHead)), None)

    @property
    def labels(self) -> list[str]:
        head = self.diagnosis_head
        return list(head.labels) if head is not None else []

    @property
    def modalities(self) -> tuple[str, ...]:
        return tuple(
            m for m, enc in (("image", self.image_encoder), ("report", self.text_encoder)) if enc
        )

    def config(self) -> dict[str, Any]:
        """The spec that rebuilds this model (text encoder without its tokenizer state)."""
        text = None
        if self.text_encoder is not None:
            text = {k: v for k, v in self.text_encoder.config().items() if k != "tokenizer"}
        return {
            "name": self.name,
            "description": self.description,
            "image_encoder": self.image_encoder.config() if self.image_encoder else None,
            "text_encoder": text,
            "fusion": self.fusion.config(),
            "heads": {k: h.config() for k, h in self.heads.items()},
            "preprocessing": self.preprocessing.to_dict(),
        }

    # -- inputs -----------------------------------------------------------------------------------
    def tokenize(self, reports: Sequence[Any]) -> Any:
        """Text-encoder batch for ``reports`` (Report, str or None each)."""
        if self.text_encoder is None:
            raise ConfigError(f"model {self.name!r} has no text encoder")
        return self.text_encoder.tokenize(list(reports))

    def prepare(
        self, volumes: Sequence[Any] | None = None, reports: Sequence[Any] | None = None
    ) -> dict[str, Any]:
        """Keyword arguments for :meth:`forward` from volumes and reports (``None`` entries are
        missing); preprocessing records are under ``"records"`` (pop it before calling)."""
        out: dict[str, Any] = {}
        device = next((p.device for p in self.parameters()), torch.device("cpu"))
        if volumes is not None and self.image_encoder is not None:
            x, present, records = preprocess_batch(list(volumes), self.preprocessing)
            out.update(image=x.to(device), image_present=present.to(device), records=records)
        if reports is not None and self.text_encoder is not None:
            batch = self.tokenize(reports)
            out["text"] = batch.to(device) if hasattr(batch, "to") else batch
        return out

    # -- forward ----------------------------------------------------------------------------------
    def encode_image(self, image: Tensor, present: Tensor | None = None) -> ImageEncoding | None:
        """Run the image encoder on the present samples only; absent ones get zero features
        (the fusion never reads them) and ``present`` False."""
        assert self.image_encoder is not None
        B = image.shape[0]
        if present is None:
            present = torch.ones(B, dtype=torch.bool, device=image.device)
        present = present.to(device=image.device, dtype=torch.bool).reshape(B)
        if bool(present.all()):
            return self.image_encoder(image, present)
        if not bool(present.any()):
            return None
        idx = present.nonzero().squeeze(1)
        sub = self.image_encoder(image.index_select(0, idx))

        def scatter(t: Tensor | None) -> Tensor | None:
            if t is None:
                return None
            return t.new_zeros((B, *t.shape[1:])).index_copy(0, idx, t)

        return ImageEncoding(
            scatter(sub.features), scatter(sub.pooled), present, scatter(sub.segmentation)
        )

    def forward(
        self,
        image: Tensor | None = None,
        text: Any = None,
        *,
        image_present: Tensor | None = None,
        text_present: Tensor | None = None,
        records: Any = None,
    ) -> ModelOutput:
        """``image`` [B, C, X, Y, Z] (or None), ``text`` a batch from :meth:`tokenize` (or None);
        ``image_present`` / ``text_present`` [B] bool mark missing samples."""
        del records  # accepted so that ``model(**model.prepare(...))`` works
        if image is None and text is None:
            raise ConfigError("forward needs an image batch, a text batch or both")
        img = None
        if image is not None and self.image_encoder is not None:
            img = self.encode_image(image, image_present)
        B = int(image.shape[0]) if image is not None else _text_batch_size(text)
        return self.forward_encoded(img, text, batch_size=B, text_present=text_present)

    def forward_encoded(
        self,
        img: ImageEncoding | None,
        text: Any = None,
        *,
        batch_size: int,
        text_present: Tensor | None = None,
    ) -> ModelOutput:
        """:meth:`forward` from an image encoding already computed by :meth:`encode_image`
        (``img``, None without an image): text encoder, fusion and heads only. Explainers that
        vary only the report reuse one image encoding across their passes through this."""
        txt = None
        if text is not None and self.text_encoder is not None:
            txt = self.text_encoder(text)
        B = int(batch_size)
        device = next(self.parameters()).device
        mask = torch.zeros(B, 2, dtype=torch.bool, device=device)
        if img is not None:
            mask[:, 0] = img.present
        if txt is not None:
            tp = txt.present.to(device=device, dtype=torch.bool)
            if text_present is not None:
                tp = tp & text_present.to(device=device, dtype=torch.bool)
            mask[:, 1] = tp
        fused = self.fusion(img, txt, mask)
        outputs = {name: head(fused.embedding) for name, head in self.heads.items()}
        return ModelOutput(outputs, fused.embedding, fused.mask, fused, img, txt)

    @torch.no_grad()
    def predict_proba(self, **inputs: Any) -> Tensor:
        """Calibrated diagnosis probabilities [B, L] (eval mode must be set by the caller)."""
        head = self.diagnosis_head
        if head is None:
            raise ConfigError(f"model {self.name!r} has no diagnosis head")
        inputs.pop("records", None)
        return head.probabilities(self(**inputs).logits)

    def risk_score(self, output: ModelOutput) -> Tensor | None:
        """One risk number per sample from the risk head's output."""
        head = self.heads["risk"] if "risk" in self.heads else None  # noqa: SIM401 (ModuleDict)
        if isinstance(head, (RiskHead, DiscreteTimeHead)):
            return head.risk_score(output.outputs["risk"])
        return None


def _text_batch_size(text: Any) -> int:
    present = getattr(text, "present", None)
    if present is None:
        raise ConfigError("cannot tell the batch size of the text batch")
    return int(present.shape[0])


# -- specs and presets ------------------------------------------------------------------------------
def _component(value: Any) -> dict[str, Any] | None:
    if value is None:
        return None
    if isinstance(value, str):
        return {"name": value, "kwargs": {}}
    if isinstance(value, dict) and "name" in value:
        return {"name": value["name"], "kwargs": dict(value.get("kwargs") or {})}
    raise ConfigError(f"a component is a registry name or {{'name', 'kwargs'}}, got {value!r}")


def build_model(
    spec: dict[str, Any], *, tokenizer: Any = None, name: str | None = None
) -> MedfuseModel:
    """Build a (randomly initialised) model from a spec (see the module docstring)."""
    spec = copy.deepcopy(spec)
    pre = spec.get("preprocessing") or {}
    pre_cfg = pre if isinstance(pre, PreprocessingConfig) else PreprocessingConfig.from_dict(pre)
    image_encoder = None
    img_spec = _component(spec.get("image_encoder"))
    if img_spec is not None:
        img_spec["kwargs"].setdefault("in_channels", pre_cfg.in_channels)
        image_encoder = image_encoders.from_config(img_spec)
    text_encoder = None
    txt_spec = _component(spec.get("text_encoder"))
    if txt_spec is not None:
        if tokenizer is not None:
            txt_spec["tokenizer"] = (
                tokenizer.to_dict() if hasattr(tokenizer, "to_dict") else tokenizer
            )
        text_encoder = text_encoders.from_config(txt_spec)
    fus_spec = _component(spec.get("fusion")) or {"name": "concat", "kwargs": {}}
    dim = int(fus_spec["kwargs"].get("dim", 256))
    fus_spec["kwargs"]["dim"] = dim
    fus_spec["kwargs"]["image_dim"] = image_encoder.dim if image_encoder is not None else dim
    fus_spec["kwargs"]["text_dim"] = text_encoder.dim if text_encoder is not None else dim
    fusion = fusion_registry.from_config(fus_spec)
    heads_spec = spec.get("heads") or {"diagnosis": {"name": "multilabel", "kwargs": {}}}
    heads: dict[str, nn.Module] = {}
    for hname, hspec in heads_spec.items():
        hs = _component(hspec)
        if hs is None:
            continue
        hs["kwargs"]["in_dim"] = fusion.dim
        heads[hname] = heads_registry.from_config(hs)
    return MedfuseModel(
        image_encoder,
        text_encoder,
        fusion,
        heads,
        preprocessing=pre_cfg,
        name=name or spec.get("name", "custom"),
        description=spec.get("description", ""),
    )


_CT_PRE = {
    "orientation": "RAS",
    "spacing": [1.5, 1.5, 1.5],
    "modality": "CT",
    "ct_windows": ["lung", "mediastinum", "bone"],
    "foreground_crop": True,
    "spatial_size": [128, 128, 128],
}


def _chest_heads(risk: str | None = "cox") -> dict[str, Any]:
    heads: dict[str, Any] = {
        "diagnosis": {"name": "multilabel", "kwargs": {"labels": list(CHEST_CT_LABELS)}}
    }
    if risk:
        heads["risk"] = {"name": risk, "kwargs": {}}
    return heads


def _preset(name: str):
    def deco(fn):
        model_presets.register(name, fn)
        model_presets.register(f"{name}_tiny", lambda fn=fn: _tiny(fn()))
        return fn

    return deco


@_preset("chest_ct_fusion")
def chest_ct_fusion() -> dict[str, Any]:
    """Chest CT + report: resnet18_3d (stride-2 stem) + transformer + cross_attention."""
    return {
        "description": "Chest CT (3 HU windows, 1.5 mm, 128³) and report; cross-attention fusion; "
        "multi-label findings and a Cox risk score.",
        "image_encoder": {"name": "resnet18_3d", "kwargs": {}},
        "text_encoder": {"name": "transformer", "kwargs": {"dim": 256, "depth": 4, "heads": 4}},
        "fusion": {"name": "cross_attention", "kwargs": {"dim": 256, "heads": 4}},
        "heads": _chest_heads("cox"),
        "preprocessing": dict(_CT_PRE),
    }


@_preset("chest_ct_gated")
def chest_ct_gated() -> dict[str, Any]:
    """Chest CT + report: resnet10_3d + the parser's finding vector + gated fusion; discrete-time
    risk."""
    return {
        "description": "Light chest CT + report model: finding-vector text encoder, gated fusion.",
        "image_encoder": {"name": "resnet10_3d", "kwargs": {}},
        "text_encoder": {"name": "findings", "kwargs": {"dim": 64}},
        "fusion": {"name": "gated", "kwargs": {"dim": 128}},
        "heads": {**_chest_heads(None), "risk": {"name": "discrete_time", "kwargs": {"bins": 8}}},
        "preprocessing": dict(_CT_PRE),
    }


@_preset("chest_ct_late")
def chest_ct_late() -> dict[str, Any]:
    """Chest CT + report: unet_encoder_3d + bilstm + late fusion."""
    return {
        "description": "Chest CT + report, U-Net encoder, BiLSTM report encoder, late fusion.",
        "image_encoder": {"name": "unet_encoder_3d", "kwargs": {}},
        "text_encoder": {"name": "bilstm", "kwargs": {"dim": 128}},
        "fusion": {"name": "late", "kwargs": {"dim": 128}},
        "heads": _chest_heads("cox"),
        "preprocessing": dict(_CT_PRE),
    }


@_preset("chest_ct_image_only")
def chest_ct_image_only() -> dict[str, Any]:
    """Ablation: the image branch of ``chest_ct_fusion`` alone."""
    spec = chest_ct_fusion()
    spec.update(
        description="Ablation: chest CT only (resnet18_3d).",
        text_encoder=None,
        fusion={"name": "concat", "kwargs": {"dim": 256}},
    )
    return spec


@_preset("chest_ct_text_only")
def chest_ct_text_only() -> dict[str, Any]:
    """Ablation: the report branch of ``chest_ct_fusion`` alone."""
    spec = chest_ct_fusion()
    spec.update(
        description="Ablation: report only (transformer).",
        image_encoder=None,
        fusion={"name": "concat", "kwargs": {"dim": 256}},
    )
    return spec


@_preset("image_only_small")
def image_only_small() -> dict[str, Any]:
    """Small volumes (about 28-32 voxels a side, e.g. MedMNIST3D), image only: resnet18_3d with a
    space-to-depth stem and stage strides 2, 2, 1, so a 32³ input keeps a 4³ last feature grid;
    generic intensity (one channel scaled to [0, 1]), 1 mm, 32³; one label ``abnormal``
    (``labels=`` or the training config's labels replace it)."""
    return {
        "description": "Small 3D volumes (28-32 voxels a side): generic intensity scaled to "
        "[0, 1], 1 mm, 32³; resnet18_3d (space-to-depth stem, strides 2-2-1, 4³ last grid); "
        "image only.",
        "image_encoder": {
            "name": "resnet18_3d",
            "kwargs": {"width": 16, "stem": "s2d", "max_pool": False, "strides": [2, 2, 1]},
        },
        "text_encoder": None,
        "fusion": {"name": "concat", "kwargs": {"dim": 128}},
        "heads": {"diagnosis": {"name": "multilabel", "kwargs": {"labels": ["abnormal"]}}},
        "preprocessing": {
            "orientation": "RAS",
            "spacing": [1.0, 1.0, 1.0],
            "modality": "generic",
            "spatial_size": [32, 32, 32],
        },
    }


@_preset("text_only")
def text_only() -> dict[str, Any]:
    """A report-only classifier for your own cohort: a bag of hashed n-grams over the report's
    tokens and the parser's finding-status markers, plus the parser's status of every finding
    code (fast on a CPU); labels come from the training data."""
    return {
        "description": "Report only: n-gram report encoder with the parser's finding status, "
        "multi-label findings.",
        "image_encoder": None,
        "text_encoder": {"name": "ngram", "kwargs": {"dim": 128, "findings": True, "dropout": 0.3}},
        "fusion": {"name": "concat", "kwargs": {"dim": 128}},
        "heads": _chest_heads(None),
        "preprocessing": dict(_CT_PRE),
    }


@_preset("image_only")
def image_only() -> dict[str, Any]:
    """A CT-only classifier for your own cohort: the image branch of ``chest_ct_fusion``."""
    spec = chest_ct_fusion()
    spec.update(
        description="CT only: resnet18_3d (3 HU windows, 1.5 mm, 128³), multi-label findings.",
        text_encoder=None,
        fusion={"name": "concat", "kwargs": {"dim": 256}},
        heads=_chest_heads(None),
    )
    return spec


def _tiny(spec: dict[str, Any]) -> dict[str, Any]:
    """Test-sized version of a spec: narrow encoders (each registry entry's ``tiny`` metadata),
    16-wide fusion, 32³ input at 8 mm."""
    spec = copy.deepcopy(spec)
    for part, registry in (("image_encoder", image_encoders), ("text_encoder", text_encoders)):
        if spec.get(part):
            tiny = registry.metadata(spec[part]["name"]).get("tiny", {})
            spec[part]["kwargs"].update(copy.deepcopy(dict(tiny)))
    fk = spec["fusion"]["kwargs"]
    fk["dim"] = 16
    if "heads" in fk:
        fk["heads"] = 2
    fk["dropout"] = 0.0
    pre = dict(spec.get("preprocessing") or {})
    pre.update(spacing=[8.0, 8.0, 8.0], spatial_size=[32, 32, 32])
    spec["preprocessing"] = pre
    spec["description"] = "Tiny (test-sized) variant. " + spec.get("description", "")
    return spec


def preset_names() -> list[str]:
    """Names of every registered preset."""
    return model_presets.names()


def preset_spec(name: str) -> dict[str, Any]:
    """A copy of a preset's spec."""
    spec = model_presets.get(name)()
    spec["name"] = name
    return copy.deepcopy(spec)


_OVERRIDES = (
    "image_encoder",
    "text_encoder",
    "fusion",
    "heads",
    "image_encoder_kwargs",
    "text_encoder_kwargs",
    "fusion_kwargs",
    "labels",
    "risk",
    "preprocessing",
    "tokenizer",
    "dim",
    "description",
)


def create_model(name: str = "chest_ct_fusion", **overrides: Any) -> MedfuseModel:
    """A new (untrained) model from preset ``name`` with ``overrides``:

    ``image_encoder`` / ``text_encoder`` / ``fusion`` (registry name, ``{"name", "kwargs"}``, or
    ``None`` to drop an encoder), ``*_kwargs`` (merged into that component's arguments),
    ``heads`` (replaces all heads), ``labels`` (diagnosis labels), ``risk`` (``"cox"``,
    ``"discrete_time"`` or ``None``), ``preprocessing`` (fields merged, or a
    ``PreprocessingConfig``), ``tokenizer`` (a ``ReportTokenizer`` built on your corpus),
    ``dim`` (fusion width), ``description``.
    """
    unknown = set(overrides) - set(_OVERRIDES)
    if unknown:
        raise ConfigError(
            f"unknown create_model overrides {sorted(unknown)}", hint=f"use {', '.join(_OVERRIDES)}"
        )
    spec = preset_spec(name)
    for key in ("image_encoder", "text_encoder", "fusion"):
        if key in overrides:
            spec[key] = _component(overrides[key])
        if overrides.get(f"{key}_kwargs"):
            if spec.get(key) is None:
                raise ConfigError(f"{key}_kwargs given but preset {name!r} has no {key}")
            spec[key] = _component(spec[key])
            spec[key]["kwargs"].update(overrides[f"{key}_kwargs"])
    if spec.get("fusion") is None:
        raise ConfigError("a model needs a fusion module")
    if "heads" in overrides:
        spec["heads"] = copy.deepcopy(overrides["heads"])
    if "labels" in overrides:
        diag = spec["heads"].setdefault("diagnosis", {"name": "multilabel", "kwargs": {}})
        diag["kwargs"]["labels"] = list(overrides["labels"])
    if "risk" in overrides:
        if overrides["risk"] is None:
            spec["heads"].pop("risk", None)
        else:
            spec["heads"]["risk"] = _component(overrides["risk"])
    if "preprocessing" in overrides:
        pre = overrides["preprocessing"]
        spec["preprocessing"] = (
            pre.to_dict()
            if isinstance(pre, PreprocessingConfig)
            else {**spec["preprocessing"], **pre}
        )
    if "dim" in overrides:
        spec["fusion"] = _component(spec["fusion"])
        spec["fusion"]["kwargs"]["dim"] = int(overrides["dim"])
    if "description" in overrides:
        spec["description"] = overrides["description"]
    return build_model(spec, tokenizer=overrides.get("tokenizer"), name=name)


# -- save / load -----------------------------------------------------------------------------------
def save_model(
    model: MedfuseModel, card: ModelCard | None, directory: str | os.PathLike, **card_info: Any
) -> Path:
    """Write ``weights.safetensors``, ``tokenizer.json`` (token-based text encoders) and
    ``card.json`` into ``directory``, each atomically, the card last (with the SHA-256 of the
    others). ``card`` None builds one from the model (``card_info`` fills its descriptive
    fields); a given card gets its calibration, components and checksums refreshed."""
    from .._atomic import atomic_write_text

    folder = Path(directory)
    folder.mkdir(parents=True, exist_ok=True)
    fresh = ModelCard.from_model(model, **card_info)
    if card is None:
        card = fresh
    else:
        card = copy.deepcopy(card)
        for key in ("labels", "thresholds", "temperatures", "preprocessing", "components"):
            setattr(card, key, getattr(fresh, key))
    card.weights_file = WEIGHTS_FILE
    card.weights_sha256 = save_weights(model, folder / WEIGHTS_FILE)
    state = model.text_encoder.tokenizer_state() if model.text_encoder is not None else None
    if state is not None:
        import json

        atomic_write_text(folder / TOKENIZER_FILE, json.dumps(state, ensure_ascii=False))
        card.tokenizer_file = TOKENIZER_FILE
        card.tokenizer_sha256 = sha256_file(folder / TOKENIZER_FILE)
    else:
        card.tokenizer_file = card.tokenizer_sha256 = None
    card.validate()
    card.save(folder / CARD_FILE)
    return folder


def _assets_dir() -> Path:
    return Path(__file__).resolve().parents[1] / "assets" / "models"


def model_folder(name_or_dir: str | os.PathLike) -> Path | None:
    """The folder holding the model card of a saved model folder or a shipped model's name
    (None when there is none)."""
    p = Path(name_or_dir)
    if (p / CARD_FILE).is_file():
        return p
    if not p.exists() and (_assets_dir() / str(name_or_dir) / CARD_FILE).is_file():
        return _assets_dir() / str(name_or_dir)
    return None


def load_model(
    name_or_dir: str | os.PathLike,
    *,
    map_location: str | torch.device = "cpu",
    allow_untrained: bool = False,
) -> MedfuseModel:
    """Load a saved model folder (or a model shipped in ``medfuse/assets/models/<name>``).

    Checks the SHA-256 of the weights (and tokenizer) against the card; :class:`ModelError` on
    any mismatch. The card's temperatures and thresholds are applied to the diagnosis head and
    the card is attached as ``model.card``. A preset name loads only with ``allow_untrained``
    (random weights, logged as a warning).
    """
    import json

    p = Path(name_or_dir)
    folder = model_folder(name_or_dir)
    if folder is None:
        if str(name_or_dir) in model_presets:
            if allow_untrained:
                log.warning("model %r: preset with random (untrained) weights", str(name_or_dir))
                return create_model(str(name_or_dir)).eval()
            raise ModelError(
                f"{name_or_dir!s} is a preset without trained weights",
                hint="use create_model() for an untrained model, or give a folder written by save_model()",
            )
        raise ModelError(
            "no model here (no card.json) and no preset or shipped model by that name",
            path=p,
            hint=f"presets: {', '.join(preset_names())}",
        )
    card = ModelCard.load(folder)
    for named in (card.weights_file, card.tokenizer_file):  # files inside the model folder only
        if named is not None and (Path(named).name != named or named in ("", ".", "..")):
            raise ModelError(
                f"the model card names {named!r}: a plain file name in the model folder is needed",
                path=folder / CARD_FILE,
            )
    tokenizer = None
    if card.tokenizer_file:
        tpath = folder / card.tokenizer_file
        if not tpath.is_file():
            raise ModelError("tokenizer file named by the card is missing", path=tpath)
        if card.tokenizer_sha256 and sha256_file(tpath) != card.tokenizer_sha256:
            raise ModelError("tokenizer checksum mismatch", path=tpath)
        try:
            tokenizer = json.loads(tpath.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise ModelError(f"cannot read tokenizer: {exc}", path=tpath) from None
    if not card.weights_sha256:
        raise ModelError("model card has no weights_sha256", path=folder / CARD_FILE)
    spec = {**card.components, "preprocessing": card.preprocessing, "description": card.description}
    try:
        model = build_model(spec, tokenizer=tokenizer, name=card.name)
    except ConfigError as exc:
        raise ModelError(
            f"cannot rebuild the model from its card: {exc.reason}", path=folder
        ) from None
    load_weights(
        model,
        folder / card.weights_file,
        expected_sha256=card.weights_sha256,
        map_location=map_location,
    )
    head = model.diagnosis_head
    if head is not None:
        if card.labels and card.labels != head.labels:
            raise ModelError("card labels differ from the diagnosis head's labels", path=folder)
        head.set_calibration(card.temperatures or None, card.thresholds or None)
    model.card = card  # type: ignore[assignment]
    return model.eval()
