"""Training loop for :class:`~medfuse.models.model.MedfuseModel` on the synthetic fusion cohort.

``medfuse train CONFIG.yaml`` (or :func:`train`) does, from a YAML file read with
``yaml.safe_load`` into :class:`TrainConfig` (pydantic, unknown keys refused, nothing executed):

* draws / reuses the seeded cohort (:mod:`medfuse.train.cohort`), splits train / validation,
  builds the report tokenizer on the training reports and the model from a preset + overrides;
* trains with AdamW, linear warm-up then cosine decay, gradient accumulation, gradient clipping,
  per-sample *modality dropout* (image / report hidden from the model, the learned
  missing-modality tokens take their place), bf16 autocast on CUDA only, early stopping on a
  validation score (``early_stopping.monitor``); fully seeded (epoch order, dropout masks);
* checkpoints every epoch (``checkpoints/last``: model + optimizer as safetensors, state JSON)
  and resumes from there; keeps the best weights;
* optionally fits the image encoder's auxiliary finding maps to the cohort's finding masks
  (``aux_maps`` section: dense supervision of where the focal findings are);
* fits per-label temperatures and decision thresholds on the validation split and saves the
  model (safetensors + card with calibration, training data and validation metrics).

Distributed data parallel: run under ``torchrun --nproc_per_node N -m medfuse.train.trainer
CONFIG.yaml`` (gloo on CPU, NCCL on GPU); each process takes a disjoint shard of every epoch.
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ..errors import ConfigError

__all__ = [
    "TrainConfig",
    "load_train_config",
    "predict_cohort",
    "train",
]

log = logging.getLogger(__name__)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class IntensityDetectorsInit(_Strict):
    """``model.init.intensity_detectors``: start a space-to-depth ``resnet10_3d`` stem as
    intensity-threshold filters (:func:`medfuse.train.inits.init_intensity_detectors`)."""

    #: thresholds in units of the preprocessed input (z-score for MR), cycled over the channels
    thresholds: list[float] = Field(default_factory=lambda: [2.4, 2.7], min_length=1)
    gain: float = Field(4.0, gt=0)


class InitSection(_Strict):
    """``model.init``: weight initialisations applied to the freshly built model (not on resume:
    a checkpoint's weights replace them)."""

    intensity_detectors: IntensityDetectorsInit | None = None


class ModelSection(_Strict):
    preset: str = "chest_ct_fusion_tiny"
    #: fine-tune: a shipped model name or a model folder whose encoders (and fusion) are kept;
    #: a new diagnosis head is built for ``data.labels`` (``preset`` is then ignored)
    init_from: str | None = None
    #: keep the encoders' weights fixed (fine-tuning): true, or "image" / "text" for one of them
    freeze: bool | Literal["image", "text"] = False
    name: str | None = None
    description: str | None = None
    #: the model card's intended use and limitations (defaults: medfuse's research wording)
    intended_use: str | None = None
    limitations: str | None = None
    #: create_model overrides (image_encoder, text_encoder, fusion, *_kwargs, dim, risk, ...)
    overrides: dict[str, Any] = Field(default_factory=dict)
    #: merged into the preset's preprocessing
    preprocessing: dict[str, Any] = Field(default_factory=dict)
    tokenizer_min_freq: int = 2
    #: further ReportTokenizer options (e.g. ``code_markers: true``, ``max_length: 384``)
    tokenizer: dict[str, Any] = Field(default_factory=dict)
    #: weight initialisations of the new model (see :class:`InitSection`)
    init: InitSection = Field(default_factory=InitSection)


class DataSection(_Strict):
    """Where the cases come from: a manifest of your own cohort (``manifest``, see
    ``docs/training.md``), or else medfuse's synthetic cohort (``cohort``)."""

    #: your cohort: a manifest CSV or datalist JSON (relative: next to the config, else here)
    manifest: str | None = None
    #: label columns to learn (default: every non-reserved manifest column)
    labels: list[str] | None = None
    #: fill missing / empty label cells with the report labeler's values (weak labels)
    labels_from_reports: bool = False
    #: uncertain (-1) labels: masked in the loss, or counted as positive / negative
    uncertain: Literal["ignore", "positive", "negative"] = "ignore"
    #: report-derived labels of findings a report does not mention
    not_mentioned: Literal["negative", "ignore"] = "negative"
    #: rows with problems: stop with all of them listed, or leave them out (listed)
    on_invalid: Literal["error", "skip"] = "error"
    #: processes (or Ray tasks) preprocessing images in the dataset build
    workers: int = Field(1, ge=1, le=256)
    engine: Literal["local", "ray"] = "local"
    #: where the data came from, as the card should say it (name, licence, citation, source,
    #: ...; plain values; never a patient identifier): merged into ``training_data``
    provenance: dict[str, Any] = Field(default_factory=dict)
    #: split fractions when the manifest has no split column (grouped by patient, stratified)
    test_fraction: float = Field(0.0, ge=0.0, lt=1.0)
    #: the synthetic cohort: ``kind`` (:data:`SYNTHETIC_COHORTS`; default ``chest_fusion``,
    #: :class:`~medfuse.train.cohort.FusionCohortConfig`) and that kind's parameters (n, seed,
    #: shape, label_noise, report_missing, ...; ``brain_mr``:
    #: :class:`~medfuse.train.mr_cohort.MRCohortConfig`)
    cohort: dict[str, Any] = Field(default_factory=dict)
    #: synthetic cohort: folder for cohort.json and cached inputs (None: memory only);
    #: manifest: the per-case input cache (None: $MEDFUSE_CACHE_DIR or ~/.cache/medfuse)
    cache_dir: str | None = None
    val_fraction: float = Field(0.2, gt=0.0, lt=1.0)


class OptimSection(_Strict):
    lr: float = Field(2e-3, gt=0)
    weight_decay: float = Field(0.01, ge=0)
    epochs: int = Field(10, ge=1)
    batch_size: int = Field(16, ge=1)
    grad_accum: int = Field(1, ge=1)
    warmup_epochs: float = Field(0.5, ge=0)
    min_lr_ratio: float = Field(0.02, ge=0, le=1)
    grad_clip: float | None = 1.0
    risk_weight: float = Field(0.5, ge=0)
    #: keep an exponential moving average of the weights (and batch-norm statistics) with this
    #: decay per optimiser step; validation, early stopping and the saved model use the average.
    #: None: the weights as trained.
    ema_decay: float | None = Field(None, gt=0, lt=1)


class DropoutSection(_Strict):
    image: float = Field(0.1, ge=0, le=1)
    report: float = Field(0.25, ge=0, le=1)


class ImputationSection(_Strict):
    """Training of the fusion's missing-modality imputer (chosen by the fusion's ``missing``
    option, e.g. ``model.overrides: {fusion_kwargs: {missing: generative}}``; see
    :mod:`medfuse.models.impute`). ``joint``: its loss is added to the task loss and the heads
    see its imputed embeddings where modality dropout hid a modality. ``second``: the model is
    trained with the learned tokens first, then the imputer alone for ``epochs`` epochs on the
    frozen encoders. Either way its diagnostics (discriminator accuracy, diversity and Fréchet
    distance of generated vs real embeddings on the validation cases) go into the card."""

    stage: Literal["joint", "second"] = "joint"
    epochs: int = Field(5, ge=1)
    lr: float = Field(1e-3, gt=0)


class EarlyStopSection(_Strict):
    patience: int = Field(4, ge=1)
    min_delta: float = Field(0.0, ge=0)
    #: validation score to watch: "auroc" (macro AUROC, higher is better, plus the risk
    #: c-index when there is a risk head), "bce" or "loss" (BCE + risk loss; lower is better)
    monitor: str = Field("auroc", pattern="^(auroc|bce|loss)$")


class AuxMapsSection(_Strict):
    """Auxiliary finding maps: the image encoder's ``aux_maps`` logits (feature grid) are fitted
    with a binary cross-entropy to the cohort's finding masks (``findings``, in the order of the
    encoder's map channels) average-pooled onto that grid; ``weight`` 0 turns it off."""

    weight: float = Field(0.0, ge=0)
    findings: list[str] = Field(default_factory=lambda: ["lung_lesion", "consolidation"])
    #: weight of the positive cells (findings cover a few cells of the grid)
    pos_weight: float = Field(10.0, gt=0)
    #: target of a cell: the fraction of it the finding covers (``mean``), or 1 where the
    #: finding touches it (``max``: a 16 mm nodule covers at most ~15 % of a 24 mm cell, so
    #: fractions make small findings faint targets)
    target: str = Field("mean", pattern="^(mean|max)$")


class CalibrationSection(_Strict):
    thresholds: Literal["youden", "sensitivity", "f1"] = "youden"
    target_sensitivity: float = Field(0.9, gt=0, le=1)


class TrainConfig(_Strict):
    """Schema of a training YAML file (see ``configs/train/chest_ct_demo.yaml`` and
    ``docs/training.md``)."""

    seed: int = 0
    #: the model folder written (card, weights, tokenizer); default ``<out_dir>/model``
    output: str | None = None
    #: checkpoints and reports; default ``<output>/training`` when ``output`` is given
    out_dir: str = "runs/train"
    model: ModelSection = Field(default_factory=ModelSection)
    data: DataSection = Field(default_factory=DataSection)
    optim: OptimSection = Field(default_factory=OptimSection)
    modality_dropout: DropoutSection = Field(default_factory=DropoutSection)
    imputation: ImputationSection = Field(default_factory=ImputationSection)
    early_stopping: EarlyStopSection = Field(default_factory=EarlyStopSection)
    calibration: CalibrationSection = Field(default_factory=CalibrationSection)
    aux_maps: AuxMapsSection = Field(default_factory=AuxMapsSection)
    #: random augmentations of the model-grid images in training (``medfuse.data.augment``);
    #: none by default (no left-right flips: laterality matters)
    augment: dict[str, Any] = Field(default_factory=dict)
    #: folder of the config file (relative manifest paths look there first); not in the YAML
    base_dir: str = Field("", exclude=True)
    #: bf16 autocast (CUDA only; ignored on CPU)
    amp: bool = True
    device: str = "auto"
    #: torch CPU threads per process (0: leave torch's default)
    num_threads: int = 0
    resume: bool = True
    eval_batch_size: int = 32
    #: bootstrap resamples for the validation metrics stored in the card
    eval_n_boot: int = Field(200, ge=10)

    def model_dir(self) -> Path:
        """The model folder this config writes."""
        return Path(self.output) if self.output else Path(self.out_dir) / "model"

    def work_dir(self) -> Path:
        """Checkpoints and the dataset report."""
        if self.output and "out_dir" not in self.model_fields_set:
            return Path(self.output) / "training"
        return Path(self.out_dir)

    def manifest_path(self) -> Path | None:
        """``data.manifest``: absolute, else next to the config file if it is there, else
        relative to the current folder."""
        if not self.data.manifest:
            return None
        p = Path(os.path.expanduser(self.data.manifest))
        if not p.is_absolute() and self.base_dir and (Path(self.base_dir) / p).exists():
            return Path(self.base_dir) / p
        return p


def load_train_config(
    path: str | os.PathLike, overrides: dict[str, Any] | None = None
) -> TrainConfig:
    """Read a training YAML file (safe loader) into a validated :class:`TrainConfig`."""
    import yaml

    p = Path(path)
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"cannot read training config: {exc}", path=p) from None
    if not isinstance(data, dict):
        raise ConfigError("a training config is a YAML mapping", path=p)
    data.update(overrides or {})
    try:
        return TrainConfig.model_validate({**data, "base_dir": str(p.resolve().parent)})
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(x) for x in first["loc"])
        raise ConfigError(f"bad training config at {where}: {first['msg']}", path=p) from None


# -- batches ---------------------------------------------------------------------------------------
def _index_text(batch: Any, idx: np.ndarray) -> Any:
    """Rows ``idx`` of a pre-tokenized text batch (TokenBatch or FindingsBatch)."""
    import torch

    from ..models.encoders.text import FindingsBatch, TokenBatch

    t = torch.as_tensor(idx, dtype=torch.long)
    if isinstance(batch, TokenBatch):
        mask = batch.mask.index_select(0, t)
        w = max(1, int(mask.sum(1).max()))
        return TokenBatch(
            batch.input_ids.index_select(0, t)[:, :w].contiguous(),
            mask[:, :w].contiguous(),
            [batch.spans[i][:w] for i in idx],
            batch.present.index_select(0, t),
            [batch.tokens[i] for i in idx],
            None if batch.findings is None else batch.findings.index_select(0, t),
        )
    if isinstance(batch, FindingsBatch):
        return FindingsBatch(
            batch.features.index_select(0, t),
            [batch.spans[i] for i in idx],
            batch.present.index_select(0, t),
        )
    raise ConfigError(f"cannot batch text inputs of type {type(batch).__name__}")


class _Data:
    """Cached model inputs of a cohort: image array, tokenized reports, targets."""

    def __init__(
        self,
        model: Any,
        cohort: Any,
        *,
        progress: Callable | None = None,
        maps: list[str] | None = None,
    ):
        self.cohort = cohort
        self.n = len(cohort)
        self.images = (
            cohort.inputs(model.preprocessing, progress=progress)
            if model.image_encoder is not None
            else None
        )
        #: finding masks on the model grid [N, K, X, Y, Z] uint8 (auxiliary map training)
        self.maps = (
            cohort.finding_maps(model.preprocessing, maps, progress=progress)
            if maps and model.image_encoder is not None
            else None
        )
        self.text = model.tokenize(cohort.reports()) if model.text_encoder is not None else None
        self.labels = cohort.label_matrix(names=model.labels)
        self.time = cohort.times
        self.event = cohort.events
        self.image_present = cohort.image_present()
        self.report_present = cohort.report_present()

    def batch(
        self,
        idx: np.ndarray,
        device: Any,
        *,
        drop_image: np.ndarray | None = None,
        drop_report: np.ndarray | None = None,
        augment: Callable[[Any], Any] | None = None,
    ) -> dict[str, Any]:
        import torch

        out: dict[str, Any] = {}
        if self.images is not None:
            img_present = self.image_present[idx].copy()
            if drop_image is not None:
                img_present &= ~drop_image
            x = torch.from_numpy(self.images[idx].astype(np.float32))
            out["image"] = (augment(x) if augment is not None else x).to(device)
            out["image_present"] = torch.from_numpy(img_present).to(device)
        if self.text is not None:
            rep_present = self.report_present[idx].copy()
            if drop_report is not None:
                rep_present &= ~drop_report
            out["text"] = _index_text(self.text, idx).to(device)
            out["text_present"] = torch.from_numpy(rep_present).to(device)
        return out


def _risk_loss(model: Any, out: Any, time_t: Any, event_t: Any, edges: Any) -> Any:
    from ..models.heads import DiscreteTimeHead

    head = model.heads["risk"]
    if isinstance(head, DiscreteTimeHead):
        import torch

        bins = torch.bucketize(time_t, edges, right=True).clamp_max(head.bins - 1)
        return head.loss(out.outputs["risk"], bins, event_t)
    return head.loss(out.outputs["risk"], time_t, event_t)


# -- prediction ------------------------------------------------------------------------------------
def predict_cohort(
    model: Any,
    cohort: Any,
    *,
    data: _Data | None = None,
    indices: np.ndarray | None = None,
    drop_report: bool = False,
    drop_image: bool = False,
    batch_size: int = 32,
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, np.ndarray]:
    """Raw logits, calibrated probabilities and risk scores of ``model`` on cohort cases
    (optionally with every report or image hidden)."""
    import torch

    data = data or _Data(model, cohort)
    idx_all = np.arange(data.n) if indices is None else np.asarray(indices)
    device = next(model.parameters()).device
    model.eval()
    logits, risks = [], []
    with torch.no_grad():
        for s in range(0, len(idx_all), batch_size):
            idx = idx_all[s : s + batch_size]
            ones = np.ones(len(idx), dtype=bool)
            batch = data.batch(
                idx,
                device,
                drop_image=ones if drop_image else None,
                drop_report=ones if drop_report else None,
            )
            if drop_image and model.text_encoder is not None:
                batch.pop("image", None)
                batch.pop("image_present", None)
            if drop_report and model.image_encoder is not None:
                batch.pop("text", None)
                batch.pop("text_present", None)
            out = model(**batch)
            logits.append(out.logits.float().cpu())
            r = model.risk_score(out)
            if r is not None:
                risks.append(r.float().cpu())
            if progress is not None:
                progress(min(s + batch_size, len(idx_all)), len(idx_all))
    lg = torch.cat(logits)
    probs = model.diagnosis_head.probabilities(lg)
    return {
        "logits": lg.numpy(),
        "probs": probs.numpy(),
        "risk": torch.cat(risks).numpy() if risks else np.full(len(idx_all), np.nan),
    }


# -- checkpoints -----------------------------------------------------------------------------------
def _weight_average(model: Any, decay: float | None) -> Any:
    """torch's :class:`~torch.optim.swa_utils.AveragedModel` keeping an exponential moving
    average of ``model``'s parameters and buffers, or None without a decay."""
    if decay is None:
        return None
    from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

    return AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(decay), use_buffers=True)


def _save_checkpoint(
    folder: Path, model: Any, opt: Any, state: dict[str, Any], ema: Any = None
) -> None:
    import torch
    from safetensors.torch import save_file

    from .._atomic import atomic_path, atomic_write_text
    from ..models.weights import save_weights

    folder.mkdir(parents=True, exist_ok=True)
    save_weights(model, folder / "model.safetensors")
    if ema is not None:
        save_weights(ema, folder / "average.safetensors")
    sd = opt.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    for pid, st in sd["state"].items():
        for k, v in st.items():
            t = v if torch.is_tensor(v) else torch.tensor(v)
            tensors[f"{pid}.{k}"] = t.detach().cpu().contiguous()
    with atomic_path(folder / "optimizer.safetensors") as tmp:
        save_file(tensors, str(tmp))
    groups = [{k: v for k, v in g.items()} for g in sd["param_groups"]]
    atomic_write_text(
        folder / "state.json", json.dumps({**state, "param_groups": groups}, indent=1)
    )


def _load_checkpoint(folder: Path, model: Any, opt: Any, ema: Any = None) -> dict[str, Any]:
    from safetensors.torch import load_file

    from ..models.weights import load_weights

    state = json.loads((folder / "state.json").read_text())
    load_weights(model, folder / "model.safetensors")
    if ema is not None:
        load_weights(ema, folder / "average.safetensors")
    flat = load_file(str(folder / "optimizer.safetensors"))
    opt_state: dict[int, dict[str, Any]] = {}
    for key, t in flat.items():
        pid, name = key.split(".", 1)
        opt_state.setdefault(int(pid), {})[name] = t
    opt.load_state_dict({"state": opt_state, "param_groups": state.pop("param_groups")})
    return state


# -- distributed -----------------------------------------------------------------------------------
def _dist_info() -> tuple[int, int]:
    return int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))


def _setup_device(cfg: TrainConfig):
    import torch

    if cfg.num_threads > 0:
        torch.set_num_threads(cfg.num_threads)
    rank, world = _dist_info()
    want = cfg.device
    if want == "auto":
        want = "cuda" if torch.cuda.is_available() else "cpu"
    if want == "cuda":
        local = int(os.environ.get("LOCAL_RANK", "0"))
        device = torch.device("cuda", local)
        torch.cuda.set_device(device)
    else:
        device = torch.device(want)
    if world > 1:
        import torch.distributed as dist

        if not dist.is_initialized():
            dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return device, rank, world


# -- training --------------------------------------------------------------------------------------
def model_inputs(cfg: TrainConfig) -> tuple[dict[str, Any], bool, bool]:
    """What the config's model reads: (preprocessing dict, has an image encoder, has a text
    encoder), known before the model is built (the dataset is built with it)."""
    from ..models.card import ModelCard
    from ..models.model import load_model, model_folder, preset_spec

    if cfg.model.init_from:
        # the card alone says what the base model reads (its weights load in _fine_tune_model)
        folder = model_folder(cfg.model.init_from)
        card = ModelCard.load(folder) if folder else load_model(cfg.model.init_from).card
        comp = card.components
        return (
            dict(card.preprocessing),
            bool(comp.get("image_encoder")),
            bool(comp.get("text_encoder")),
        )
    spec = preset_spec(cfg.model.preset)
    ov = cfg.model.overrides
    pre = {**(spec.get("preprocessing") or {}), **(ov.get("preprocessing") or {})}
    pre.update(cfg.model.preprocessing)
    image = ov.get("image_encoder", spec.get("image_encoder"))
    text = ov.get("text_encoder", spec.get("text_encoder"))
    return pre, image is not None, text is not None


def load_dataset(cfg: TrainConfig, progress: Callable[[str, int, int], None] | None = None):
    """The config's manifest built into a :class:`~medfuse.data.Dataset` with the model's
    preprocessing (the per-case cache is reused when present)."""
    from ..data.dataset import Dataset

    pre, has_image, _ = model_inputs(cfg)
    d = cfg.data
    return Dataset.from_manifest(
        cfg.manifest_path(),  # type: ignore[arg-type]
        d.labels,
        preprocessing=pre,
        images=has_image,
        labels_from_reports=d.labels_from_reports,
        not_mentioned=d.not_mentioned,
        uncertain=d.uncertain,
        cache_dir=d.cache_dir,
        workers=d.workers,
        engine=d.engine,
        val_fraction=d.val_fraction,
        test_fraction=d.test_fraction,
        seed=cfg.seed,
        on_invalid=d.on_invalid,
        progress=progress,
    )


def build_model_for(cfg: TrainConfig, cohort: Any, train_idx: np.ndarray) -> Any:
    """The (untrained) model of the config, with a tokenizer built on the training reports."""
    from ..data.dataset import Dataset
    from ..models.model import create_model, preset_spec

    own = isinstance(cohort, Dataset)  # a user's cohort, not the synthetic one
    if cfg.model.init_from:
        return _fine_tune_model(cfg, cohort)
    spec = preset_spec(cfg.model.preset)
    overrides = dict(cfg.model.overrides)
    text = overrides.get("text_encoder", spec.get("text_encoder"))
    text_name = text if isinstance(text, str) else (text or {}).get("name")
    from ..models.encoders.text import TOKEN_ENCODERS

    if text_name in TOKEN_ENCODERS and "tokenizer" not in overrides:
        from ..models.encoders.text import ReportTokenizer

        keep = set(train_idx.tolist())
        reps = [r for i, r in enumerate(cohort.reports()) if i in keep and r]
        overrides["tokenizer"] = ReportTokenizer.from_reports(
            reps, min_freq=cfg.model.tokenizer_min_freq, hash_buckets=256, **cfg.model.tokenizer
        )
    overrides.setdefault("labels", list(cohort.labels))
    if not own and not getattr(cohort, "has_survival", True):
        overrides["risk"] = None  # a synthetic cohort without a survival target
    if own:
        survival = cohort.has_survival
        if not survival:
            overrides["risk"] = None
        elif "risk" not in (spec.get("heads") or {}) and "risk" not in overrides:
            overrides["risk"] = "cox"
    if cfg.model.preprocessing:
        overrides["preprocessing"] = dict(cfg.model.preprocessing)
    if cfg.model.description:
        overrides["description"] = cfg.model.description
    model = create_model(cfg.model.preset, **overrides)
    if cfg.model.name:
        model.name = cfg.model.name
    _apply_init(cfg, model)
    return model


def _apply_init(cfg: TrainConfig, model: Any) -> None:
    """``model.init``: the weight initialisations of :mod:`medfuse.train.inits`."""
    det = cfg.model.init.intensity_detectors
    if det is not None:
        from .inits import init_intensity_detectors

        if model.image_encoder is None:
            raise ConfigError("model.init.intensity_detectors needs an image encoder")
        n = init_intensity_detectors(model.image_encoder, det.thresholds, det.gain)
        log.info("image stem: %d intensity-detector channels (thresholds %s)", n, det.thresholds)


def _chest_fusion_cohort(params: dict[str, Any], cache_dir: str | None) -> Any:
    from .cohort import FusionCohortConfig, make_fusion_cohort

    return make_fusion_cohort(FusionCohortConfig.from_dict(params), cache_dir)


def _brain_mr_cohort(params: dict[str, Any], cache_dir: str | None) -> Any:
    from .mr_cohort import MRCohortConfig, make_mr_cohort

    return make_mr_cohort(MRCohortConfig.from_dict(params))  # in memory: nothing to cache


#: ``data.cohort.kind`` -> maker ``(parameters, cache_dir) -> cohort``: the synthetic cohorts a
#: config can train on (``chest_fusion``: :mod:`medfuse.train.cohort`, the default;
#: ``brain_mr``: :mod:`medfuse.train.mr_cohort`, in memory)
SYNTHETIC_COHORTS: dict[str, Callable[[dict[str, Any], str | None], Any]] = {
    "chest_fusion": _chest_fusion_cohort,
    "brain_mr": _brain_mr_cohort,
}
DEFAULT_COHORT_KIND = "chest_fusion"


def cohort_kind(cfg: TrainConfig) -> str:
    """The config's synthetic cohort kind (``data.cohort.kind``), checked."""
    kind = cfg.data.cohort.get("kind", DEFAULT_COHORT_KIND)
    if kind not in SYNTHETIC_COHORTS:
        raise ConfigError(
            f"unknown data.cohort.kind {kind!r}", hint=f"choose from {sorted(SYNTHETIC_COHORTS)}"
        )
    return str(kind)


def make_synthetic_cohort(cfg: TrainConfig, cache_dir: str | None) -> Any:
    """The config's synthetic cohort (``data.cohort``: ``kind`` and its parameters)."""
    params = {k: v for k, v in cfg.data.cohort.items() if k != "kind"}
    return SYNTHETIC_COHORTS[cohort_kind(cfg)](params, cache_dir)


def _fine_tune_model(cfg: TrainConfig, dataset: Any) -> Any:
    """``model.init_from``: the base model's encoders, fusion and tokenizer, a new diagnosis
    head for the dataset's labels (and a risk head only when the data has survival targets)."""
    import copy

    from ..models.model import build_model, load_model

    base = load_model(cfg.model.init_from)  # type: ignore[arg-type]
    card = base.card  # type: ignore[attr-defined]
    spec = copy.deepcopy(card.components)
    heads = spec.get("heads") or {}
    diag_name = next(
        (k for k, h in heads.items() if (h or {}).get("name") == "multilabel"), "diagnosis"
    )
    diag = copy.deepcopy(heads.get(diag_name) or {"name": "multilabel", "kwargs": {}})
    diag.setdefault("kwargs", {})["labels"] = list(dataset.labels)
    diag["kwargs"].pop("temperatures", None)
    diag["kwargs"].pop("thresholds", None)
    new_heads = {diag_name: diag}
    if getattr(dataset, "has_survival", False):
        new_heads["risk"] = heads.get("risk") or {"name": "cox", "kwargs": {}}
    spec["heads"] = new_heads
    spec["preprocessing"] = card.preprocessing
    spec["description"] = (
        cfg.model.description or f"Fine-tuned from {card.name}. {card.description}"
    )
    tokenizer = base.text_encoder.tokenizer_state() if base.text_encoder is not None else None
    model = build_model(spec, tokenizer=tokenizer, name=cfg.model.name or f"{card.name}_finetuned")
    keep = {k: v for k, v in base.state_dict().items() if not k.startswith("heads.")}
    missing, unexpected = model.load_state_dict(keep, strict=False)
    new = [k for k in missing if not k.startswith("heads.")]
    if new or unexpected:
        raise ConfigError(
            f"cannot carry the weights of {cfg.model.init_from!r} over: missing {new[:5]}, "
            f"unexpected {list(unexpected)[:5]}"
        )
    log.info("fine-tuning %s: encoders and fusion kept, new head for %s", card.name, dataset.labels)
    return model


def _frozen(cfg: TrainConfig, model: Any) -> list[Any]:
    """The encoders ``model.freeze`` holds fixed (their parameters stop requiring gradients)."""
    f = cfg.model.freeze
    parts = []
    if f in (True, "image") and model.image_encoder is not None:
        parts.append(model.image_encoder)
    if f in (True, "text") and model.text_encoder is not None:
        parts.append(model.text_encoder)
    for part in parts:
        for p in part.parameters():
            p.requires_grad_(False)
    return parts


def cohort_split(n: int, val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The (train, val) case indices of an ``n``-case synthetic cohort for a training seed (what
    :func:`train` uses when the data is a cohort rather than a manifest)."""
    perm = np.random.default_rng([seed, 0x5B1]).permutation(n)
    n_val = max(1, round(n * val_fraction))
    return np.sort(perm[n_val:]), np.sort(perm[:n_val])


def train(
    cfg: TrainConfig,
    *,
    progress: Callable[[str, int, int], None] | None = None,
) -> dict[str, Any]:
    """Train, calibrate and save (see the module docstring). Returns a summary dict with the
    output folder, epochs run, best validation loss, timings and validation metrics."""
    import torch
    from torch.nn import functional as F

    t_start = time.perf_counter()
    device, rank, world = _setup_device(cfg)
    torch.manual_seed(cfg.seed)
    out_dir = cfg.work_dir()
    if rank == 0:
        out_dir.mkdir(parents=True, exist_ok=True)
    if cfg.data.manifest:
        # rank 0 builds the per-case cache; the other ranks then find every case in it
        if world > 1 and rank != 0:
            _barrier()
        cohort = load_dataset(cfg, progress if rank == 0 else None)
        if world > 1 and rank == 0:
            _barrier()
        if rank == 0:
            cohort.write_report(out_dir)
        parts = cohort.split_indices()
        train_idx, val_idx = parts["train"], parts["val"]
        if not train_idx.size or not val_idx.size:
            raise ConfigError(
                f"training needs train and val cases; the splits hold "
                f"{ {k: int(v.size) for k, v in parts.items()} }",
                path=cfg.manifest_path(),
            )
    else:
        cohort = make_synthetic_cohort(cfg, cfg.data.cache_dir if rank == 0 else None)
        if world > 1 and cfg.data.cache_dir:
            _barrier()
            if rank != 0:
                cohort = make_synthetic_cohort(cfg, cfg.data.cache_dir)
        train_idx, val_idx = cohort_split(len(cohort), cfg.data.val_fraction, cfg.seed)
    torch.manual_seed(cfg.seed)
    model = build_model_for(cfg, cohort, train_idx).to(device)
    frozen = _frozen(cfg, model)
    augment = None
    if cfg.augment:
        from ..data.augment import build_augmentation

        augment = build_augmentation(cfg.augment, seed=cfg.seed)

    def cb(done: int, total: int) -> None:
        if progress is not None and rank == 0:
            progress("inputs", done, total)

    if world > 1 and cfg.data.cache_dir and rank != 0:
        import torch.distributed as dist

        dist.barrier()  # rank 0 writes the input cache first
    aux = cfg.aux_maps
    use_aux = aux.weight > 0 and model.image_encoder is not None
    if use_aux and getattr(model.image_encoder, "aux_maps", 0) != len(aux.findings):
        raise ConfigError(
            f"aux_maps.weight > 0 needs an image encoder built with aux_maps={len(aux.findings)} "
            f"(one map per finding in {aux.findings})"
        )
    data = _Data(model, cohort, progress=cb, maps=list(aux.findings) if use_aux else None)
    if world > 1 and cfg.data.cache_dir and rank == 0:
        import torch.distributed as dist

        dist.barrier()
    t_data = time.perf_counter() - t_start

    net: Any = model
    if world > 1:
        from torch.nn.parallel import DistributedDataParallel as DDP

        net = DDP(
            model,
            device_ids=[device.index] if device.type == "cuda" else None,
            find_unused_parameters=True,
        )
    opt = torch.optim.AdamW(
        [p for p in model.parameters() if p.requires_grad],
        lr=cfg.optim.lr,
        weight_decay=cfg.optim.weight_decay,
    )
    o = cfg.optim
    ema = _weight_average(model, o.ema_decay)
    #: the weights validated, kept as best and saved: the moving average when there is one
    scored = ema.module if ema is not None else model
    per_rank = len(train_idx) // world
    micro_per_epoch = max(1, math.ceil(per_rank / o.batch_size))
    steps_per_epoch = max(1, math.ceil(micro_per_epoch / o.grad_accum))
    total_steps = steps_per_epoch * o.epochs
    warmup = round(o.warmup_epochs * steps_per_epoch)

    def lr_at(step: int) -> float:
        if step < warmup:
            return o.lr * (step + 1) / max(1, warmup)
        frac = (step - warmup) / max(1, total_steps - warmup)
        return o.lr * (o.min_lr_ratio + (1 - o.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * frac)))

    edges = None
    if "risk" in model.heads and getattr(model.heads["risk"], "bins", None):
        k = model.heads["risk"].bins
        qs = np.quantile(data.time[train_idx], np.linspace(0, 1, k + 1)[1:-1])
        edges = torch.as_tensor(qs, dtype=torch.float32, device=device)

    ckpt = out_dir / "checkpoints"
    state: dict[str, Any] = {
        "epoch": 0,
        "step": 0,
        "best_score": None,
        "best_epoch": None,
        "bad_epochs": 0,
        "history": [],
    }
    if cfg.resume and (ckpt / "last" / "state.json").is_file():
        state = _load_checkpoint(ckpt / "last", model, opt, ema)
        log.info("resumed from epoch %d", state["epoch"])

    use_amp = cfg.amp and device.type == "cuda"
    has_risk = "risk" in model.heads and o.risk_weight > 0
    md = _modality_dropout(cfg, model)
    imputer = getattr(model.fusion, "imputer", None)
    learned_imputer = bool(imputer is not None and imputer.learned)
    if learned_imputer and len(model.modalities) != 2:
        raise ConfigError(
            f"missing={model.fusion.missing!r} imputes one modality from the other: it needs a "
            f"model with an image and a text encoder (this one reads {model.modalities})"
        )
    second_stage = learned_imputer and cfg.imputation.stage == "second"
    if second_stage:  # first the model with the learned tokens, the imputer afterwards
        model.fusion.impute_enabled = False

    aux_pos = torch.full((len(aux.findings), 1, 1, 1), aux.pos_weight, device=device)

    def loss_of(out: Any, idx: np.ndarray) -> Any:
        y = torch.from_numpy(data.labels[idx]).to(device)
        loss = model.diagnosis_head.loss(out.logits.float(), y)
        img = out.image
        if use_aux and img is not None and img.segmentation is not None and bool(img.present.any()):
            seg = img.segmentation.float()[img.present]
            pool = F.adaptive_max_pool3d if aux.target == "max" else F.adaptive_avg_pool3d
            target = pool(
                torch.from_numpy(data.maps[idx]).to(device=device, dtype=torch.float32),
                tuple(seg.shape[2:]),
            )[img.present]
            loss = loss + aux.weight * F.binary_cross_entropy_with_logits(
                seg, target, pos_weight=aux_pos
            )
        if has_risk:
            tt = torch.from_numpy(data.time[idx]).to(device)
            ee = torch.from_numpy(data.event[idx]).to(device)
            loss = loss + o.risk_weight * _risk_loss(model, out, tt, ee, edges)
        if out.fusion.aux_loss is not None:  # imputer / adversarial alignment
            loss = loss + out.fusion.aux_loss
        return loss

    def validate() -> tuple[float, dict[str, float]]:
        """(score to minimise, validation numbers)."""
        from .metrics import auroc, c_index

        pred = predict_cohort(
            scored, cohort, data=data, indices=val_idx, batch_size=cfg.eval_batch_size
        )
        lg = torch.from_numpy(pred["logits"])
        yv = data.labels[val_idx]
        bce = float(model.diagnosis_head.loss(lg, torch.from_numpy(yv)))
        loss = bce
        cidx = float("nan")
        if has_risk:
            cidx = c_index(data.time[val_idx], data.event[val_idx], pred["risk"])
            if not isinstance(model.heads["risk"], _discrete_cls()):
                from ..models.heads import cox_partial_likelihood

                loss += o.risk_weight * float(
                    cox_partial_likelihood(
                        torch.from_numpy(pred["risk"]),
                        torch.from_numpy(data.time[val_idx]),
                        torch.from_numpy(data.event[val_idx]),
                    )
                )
        aucs = [auroc(yv[:, j], pred["logits"][:, j]) for j in range(yv.shape[1])]
        macro = float(np.nanmean(aucs)) if np.any(np.isfinite(aucs)) else 0.5
        log.info(
            "validation AUROC by label: %s",
            ", ".join(f"{n} {a:.3f}" for n, a in zip(model.labels, aucs, strict=True)),
        )
        numbers = {"val_loss": loss, "val_bce": bce, "val_auroc": macro, "val_c_index": cidx}
        mon = cfg.early_stopping.monitor
        if mon == "auroc":
            score = -(macro + (cidx if math.isfinite(cidx) else 0.0)) / (2 if has_risk else 1)
        else:
            score = bce if mon == "bce" else loss
        return score, numbers

    epoch = int(state["epoch"])
    step = int(state["step"])
    while epoch < o.epochs and state["bad_epochs"] < cfg.early_stopping.patience:
        t_ep = time.perf_counter()
        net.train()
        for part in frozen:  # frozen encoders keep their batch-norm statistics too
            part.eval()
        rng = np.random.default_rng([cfg.seed, epoch, 0xE90C])
        perm = rng.permutation(train_idx)[: per_rank * world]
        mine = perm[rank::world]
        drop_rng = np.random.default_rng([cfg.seed, epoch, rank, 0xD0])
        torch.manual_seed(cfg.seed * 1009 + epoch * 31 + rank)
        running = 0.0
        diag: dict[str, list[float]] = {}
        opt.zero_grad(set_to_none=True)
        for micro in range(micro_per_epoch):
            idx = mine[micro * o.batch_size : (micro + 1) * o.batch_size]
            if len(idx) == 0:
                continue
            drop_img = drop_rng.random(len(idx)) < md.image
            drop_rep = (drop_rng.random(len(idx)) < md.report) & ~drop_img
            batch = data.batch(
                idx, device, drop_image=drop_img, drop_report=drop_rep, augment=augment
            )
            last_micro = (micro + 1) % o.grad_accum == 0 or micro == micro_per_epoch - 1
            sync = net.no_sync() if (world > 1 and not last_micro) else _nullcontext()
            with sync:
                with torch.autocast("cuda", dtype=torch.bfloat16, enabled=use_amp):
                    out = net(**batch)
                loss = loss_of(out, idx) / o.grad_accum
                loss.backward()
            running += float(loss.detach()) * o.grad_accum
            for k, v in out.fusion.diagnostics.items():
                diag.setdefault(k, []).append(v)
            if last_micro:
                for g in opt.param_groups:
                    g["lr"] = lr_at(step)
                if o.grad_clip:
                    torch.nn.utils.clip_grad_norm_(model.parameters(), o.grad_clip)
                opt.step()
                opt.zero_grad(set_to_none=True)
                if ema is not None:
                    ema.update_parameters(model)
                step += 1
            if progress is not None and rank == 0:
                progress(f"epoch {epoch + 1}/{o.epochs}", micro + 1, micro_per_epoch)
        score, numbers = validate()
        epoch += 1
        improved = state["best_score"] is None or score < state["best_score"] - (
            cfg.early_stopping.min_delta
        )
        if improved:
            state.update(best_score=score, best_epoch=epoch, bad_epochs=0)
        else:
            state["bad_epochs"] += 1
        state["history"].append(
            {
                "epoch": epoch,
                "train_loss": round(running / micro_per_epoch, 5),
                "score": round(score, 5),
                **{k: round(v, 5) for k, v in numbers.items() if math.isfinite(v)},
                **{k: round(float(np.mean(v)), 4) for k, v in diag.items()},
                "lr": round(lr_at(max(0, step - 1)), 7),
                "seconds": round(time.perf_counter() - t_ep, 2),
            }
        )
        state.update(epoch=epoch, step=step)
        log.info("epoch %d: %s", epoch, state["history"][-1])
        if rank == 0:
            if improved:
                from ..models.weights import save_weights

                ckpt.mkdir(parents=True, exist_ok=True)
                save_weights(scored, ckpt / "best.safetensors")
            _save_checkpoint(ckpt / "last", model, opt, state, ema)
        if world > 1:
            import torch.distributed as dist

            dist.barrier()

    t_train = time.perf_counter() - t_start - t_data
    summary: dict[str, Any] = {
        "out_dir": str(out_dir),
        "epochs": epoch,
        "best_epoch": state["best_epoch"],
        "best_score": state["best_score"],
        "history": state["history"],
        "seconds_data": round(t_data, 1),
        "seconds_train": round(t_train, 1),
        "world_size": world,
        "device": str(device),
    }
    if rank == 0:
        from ..models.weights import load_weights

        if (ckpt / "best.safetensors").is_file():
            load_weights(model, ckpt / "best.safetensors")
        if second_stage:
            model.fusion.impute_enabled = True
            summary["imputer_stage"] = _train_imputer(cfg, model, data, train_idx, device)
        if learned_imputer or getattr(model.fusion, "align_disc", None) is not None:
            summary["imputation"] = _imputation_diagnostics(cfg, model, data, val_idx, device)
            log.info("imputation diagnostics: %s", summary["imputation"])
        summary.update(_calibrate_and_save(cfg, model, cohort, data, train_idx, val_idx, summary))
    if world > 1:
        import torch.distributed as dist

        dist.barrier()
        dist.destroy_process_group()
    return summary


def _train_imputer(
    cfg: TrainConfig, model: Any, data: _Data, train_idx: np.ndarray, device: Any
) -> list[dict[str, float]]:
    """Second stage (``imputation.stage: second``): the imputer alone, on the frozen encoders'
    embeddings of the training cases (every case with both modalities is a pair)."""
    import torch

    imp = model.fusion.imputer
    trainable = [p for p in model.parameters() if p.requires_grad]
    for p in model.parameters():
        p.requires_grad_(False)
    params = list(imp.parameters())
    for p in params:
        p.requires_grad_(True)
    opt = torch.optim.AdamW(params, lr=cfg.imputation.lr)
    bs = cfg.optim.batch_size
    history: list[dict[str, float]] = []
    model.eval()
    imp.train()
    try:
        for epoch in range(cfg.imputation.epochs):
            perm = np.random.default_rng([cfg.seed, epoch, 0x1A7]).permutation(train_idx)
            torch.manual_seed(cfg.seed * 7919 + epoch)
            diag: dict[str, list[float]] = {}
            for s in range(0, len(perm), bs):
                batch = data.batch(perm[s : s + bs], device)
                with torch.no_grad():
                    img = model.encode_image(batch["image"], batch["image_present"])
                    txt = model.text_encoder(batch["text"])
                res = imp.training_loss(img, txt)
                if res is None:
                    continue
                opt.zero_grad(set_to_none=True)
                res.loss.backward()
                opt.step()
                diag.setdefault("loss", []).append(float(res.loss.detach()))
                for k, v in res.diagnostics.items():
                    diag.setdefault(k, []).append(v)
            history.append(
                {"epoch": epoch + 1, **{k: round(float(np.mean(v)), 4) for k, v in diag.items()}}
            )
            log.info("imputer epoch %d: %s", epoch + 1, history[-1])
    finally:
        for p in params:
            p.requires_grad_(False)
        for p in trainable:
            p.requires_grad_(True)
    return history


def _imputation_diagnostics(
    cfg: TrainConfig, model: Any, data: _Data, val_idx: np.ndarray, device: Any
) -> dict[str, Any]:
    """The imputer's and alignment's diagnostics on the validation cases (for the card)."""
    from ..models.impute import evaluate_imputation

    bs = cfg.eval_batch_size
    batches = (data.batch(val_idx[s : s + bs], device) for s in range(0, len(val_idx), bs))
    out = evaluate_imputation(model, batches)
    out["stage"] = cfg.imputation.stage if getattr(model.fusion.imputer, "learned", False) else None
    return out


def _discrete_cls():
    from ..models.heads import DiscreteTimeHead

    return DiscreteTimeHead


def _barrier() -> None:
    import torch.distributed as dist

    dist.barrier()


class _nullcontext:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


def calibrate(
    model: Any,
    logits: np.ndarray,
    labels: np.ndarray,
    *,
    method: str = "youden",
    target_sensitivity: float = 0.9,
) -> tuple[list[float], list[float]]:
    """Fit per-label temperatures (NLL) and thresholds (on the calibrated probabilities) and
    set them on the model's diagnosis head; returns ``(temperatures, thresholds)``."""
    from .metrics import fit_temperature, fit_thresholds

    temps = [fit_temperature(logits[:, j], labels[:, j]) for j in range(logits.shape[1])]
    probs = 1.0 / (1.0 + np.exp(-logits / np.asarray(temps)))
    ths = fit_thresholds(probs, labels, method=method, target_sensitivity=target_sensitivity)
    model.diagnosis_head.set_calibration(temps, ths)
    return temps, ths


def _calibrate_and_save(
    cfg: TrainConfig,
    model: Any,
    cohort: Any,
    data: _Data,
    train_idx: np.ndarray,
    val_idx: np.ndarray,
    summary: dict[str, Any],
) -> dict[str, Any]:
    from ..models.model import save_model
    from .metrics import evaluate_predictions

    pred = predict_cohort(model, cohort, data=data, indices=val_idx)
    y = data.labels[val_idx]
    temps, ths = calibrate(
        model,
        pred["logits"],
        y,
        method=cfg.calibration.thresholds,
        target_sensitivity=cfg.calibration.target_sensitivity,
    )
    probs = 1.0 / (1.0 + np.exp(-pred["logits"] / np.asarray(temps)))
    metrics = evaluate_predictions(
        probs,
        y,
        model.labels,
        thresholds=ths,
        time=data.time[val_idx],
        event=data.event[val_idx],
        risk=pred["risk"] if np.all(np.isfinite(pred["risk"])) else None,
        n_boot=cfg.eval_n_boot,
        seed=cfg.seed,
    )
    from ..data.dataset import Dataset

    if not isinstance(cohort, Dataset):
        training_data: dict[str, Any] = _synthetic_card_data(cfg, cohort, model)
        limitations = (
            "Trained only on synthetic phantoms and template reports; it has no clinical "
            "validity and must not be applied to real patients."
        )
    else:
        training_data = _provenance(cohort, model, cfg)
        limitations = (
            "Trained on the cohort described in training_data (provenance without identifiers). "
            "medfuse makes no claim of clinical validity for it: validate it on independent "
            "data before relying on it, and never for clinical decisions without regulatory "
            "clearance."
        )
    training_data.update({
        "n_train": len(train_idx),
        "n_validation": len(val_idx),
        "modality_dropout": _modality_dropout(cfg, model).model_dump(),
        "aux_maps": cfg.aux_maps.model_dump() if cfg.aux_maps.weight > 0 else None,
        **({"imputation": summary["imputation"]} if summary.get("imputation") else {}),
        "training": {
            "seed": cfg.seed,
            "optim": cfg.optim.model_dump(),
            "epochs_run": summary["epochs"],
            "best_epoch": summary["best_epoch"],
            "seconds": summary["seconds_train"],
            "device": summary["device"],
            "world_size": summary["world_size"],
        },
    })  # fmt: skip
    folder = save_model(
        model,
        None,
        cfg.model_dir(),
        training_data=training_data,
        metrics={"validation": metrics},
        limitations=cfg.model.limitations or limitations,
        **({"intended_use": cfg.model.intended_use} if cfg.model.intended_use else {}),
        extra=_card_extra(cfg, pred["risk"]),
    )
    return {
        "model_dir": str(folder),
        "validation": metrics,
        "temperatures": temps,
        "thresholds": ths,
    }


def _synthetic_card_data(cfg: TrainConfig, cohort: Any, model: Any) -> dict[str, Any]:
    """What the card says of a synthetic training cohort: its generator, kind, parameters and
    where each label's evidence lies."""
    kind = cohort_kind(cfg)
    if kind == "brain_mr":
        from .mr_cohort import MR_LABEL_SOURCES as sources

        generator = (
            "medfuse.train.mr_cohort (seeded T1 head phantoms of medfuse.synth + template reports)"
        )
    else:
        from .cohort import LABEL_SOURCES as sources

        generator = "medfuse.train.cohort (seeded chest CT phantoms + template reports)"
    out: dict[str, Any] = {
        "synthetic": True,
        "generator": generator,
        "cohort": cohort.config.to_dict(),
        "label_sources": {k: sources.get(k, "?") for k in model.labels},
    }
    if kind != DEFAULT_COHORT_KIND:
        out["cohort_kind"] = kind
    if cfg.augment:
        out["augment"] = dict(cfg.augment)
    if cfg.model.init.intensity_detectors is not None:
        out["init"] = cfg.model.init.model_dump(exclude_none=True)
    return out


def _modality_dropout(cfg: TrainConfig, model: Any) -> DropoutSection:
    """The modality dropout applied: it teaches a fusion model to cope with a missing
    modality; a model that reads one modality only would just lose its input (none)."""
    return cfg.modality_dropout if len(model.modalities) == 2 else DropoutSection(image=0, report=0)


def _provenance(dataset: Any, model: Any, cfg: TrainConfig) -> dict[str, Any]:
    """What the card says of a user's cohort: the manifest's hash, counts per split, where the
    labels came from and their prevalence; never a patient or study identifier."""
    s = dataset.summary()
    splits = s["splits"]
    return {
        "synthetic": False,
        "manifest_sha256": s["manifest_sha256"],
        "rows": s["rows"],
        "cases_used": s["used"],
        "cases_left_out": s["failed"],
        "counts": {k: v["n"] for k, v in splits.items()},
        "modalities": {k: v["modalities"] for k, v in splits.items()},
        "prevalence": {
            k: {lab: v["labels"][lab]["prevalence"] for lab in model.labels}
            for k, v in splits.items()
        },
        "label_origin": s["label_origin"],
        "weak_labels": s["weak_labels"],
        "uncertain_policy": s["uncertain_policy"],
        "labels_from_reports": cfg.data.labels_from_reports,
        "label_sources": {k: _needs(model) for k in model.labels},
        "images": {k: v for k, v in (s.get("images") or {}).items() if k != "n"} or None,
        "init_from": cfg.model.init_from,
        "frozen": cfg.model.freeze,
        "augment": cfg.augment or None,
        **({"provenance": dict(cfg.data.provenance)} if cfg.data.provenance else {}),
    }


def _needs(model: Any) -> str:
    """The modality a label of a model trained on a user's cohort needs: the one the model
    reads, or "either" for a model that reads both."""
    mods = model.modalities
    return "either" if len(mods) == 2 else mods[0]


#: Number of validation risk quantiles stored in the card as ``extra["risk_reference"]``.
RISK_REFERENCE_SIZE = 200


def _card_extra(cfg: TrainConfig, risk: np.ndarray) -> dict[str, Any]:
    """The card's ``extra``: calibration method and, with a risk head, the risk reference (the
    validation risk scores at :data:`RISK_REFERENCE_SIZE` evenly spaced quantiles, sorted,
    rounded to 4 decimals) that predictions use to report a percentile."""
    extra: dict[str, Any] = {
        "calibration": {"method": "temperature", "thresholds": cfg.calibration.thresholds}
    }
    r = np.asarray(risk, dtype=np.float64)
    if r.size and np.all(np.isfinite(r)):
        q = (np.arange(RISK_REFERENCE_SIZE) + 0.5) / RISK_REFERENCE_SIZE
        extra["risk_reference"] = [round(float(v), 4) for v in np.sort(np.quantile(r, q))]
        extra["risk_reference_info"] = (
            f"{RISK_REFERENCE_SIZE} evenly spaced quantiles of the risk-head scores of the "
            f"{r.size} validation cases (both modalities as recorded, missing ones included)"
        )
    return extra


def main(argv: list[str] | None = None) -> int:
    """Entry point for ``torchrun -m medfuse.train.trainer CONFIG.yaml [key=value ...]``."""
    import sys

    args = list(sys.argv[1:] if argv is None else argv)
    if not args:
        print("usage: python -m medfuse.train.trainer CONFIG.yaml [out_dir=...]", file=sys.stderr)
        return 2
    over: dict[str, Any] = {}
    for a in args[1:]:
        k, _, v = a.partition("=")
        over[k] = v
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    summary = train(load_train_config(args[0], over))
    if _dist_info()[0] == 0:
        sys.stdout.write(json.dumps({k: v for k, v in summary.items() if k != "validation"}) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
