"""Contract tests over the whole model zoo: every registered image encoder, fusion, head and
preset. Forward shapes, gradients, missing modalities, eval determinism, save → load identity,
card round trip; and a fusion added from outside through the registry. All test-sized."""

from __future__ import annotations

import json

import pytest
import torch
from _fusion_inputs import encodings as _encodings

from medfuse.errors import ConfigError, ModelError
from medfuse.models.card import ModelCard
from medfuse.models.encoders.image import ImageEncoding, image_encoder_from_config
from medfuse.models.fusion import Fusion, FusionOutput, fusion_from_config, modality_mask
from medfuse.models.heads import head_from_config
from medfuse.models.model import create_model, load_model, preset_names, preset_spec, save_model
from medfuse.models.weights import load_weights, save_weights
from medfuse.registry import fusion, heads, image_encoders

REPORTS = ["No pleural effusion. 8 mm nodule in the right upper lobe.", None, "Mild cardiomegaly."]
SIZE = 32
TINY_PRESETS = [p for p in preset_names() if p.endswith("_tiny")]
FULL_PRESETS = [p for p in preset_names() if not p.endswith("_tiny")]


def _seed(n: int = 0) -> None:
    torch.manual_seed(n)


def _grads_missing(module: torch.nn.Module) -> list[str]:
    return [n for n, p in module.named_parameters() if p.requires_grad and p.grad is None]


# -- image encoders --------------------------------------------------------------------------------
@pytest.mark.parametrize("name", image_encoders.names())
def test_image_encoder_contract(name, tmp_path):
    _seed()
    enc = image_encoders.create(name, **image_encoders.metadata(name).get("tiny", {}))
    x = torch.randn(2, enc.in_channels, SIZE, SIZE, SIZE)
    out = enc(x)
    assert isinstance(out, ImageEncoding)
    assert out.features.ndim == 5 and out.features.shape[:2] == (2, enc.dim)
    assert out.pooled.shape == (2, enc.dim) and out.present.tolist() == [True, True]
    assert out.tokens.shape == (2, out.features[0, 0].numel(), enc.dim)
    (out.features.square().mean() + out.pooled.sum()).backward()
    assert not _grads_missing(enc)
    enc.eval()
    with torch.no_grad():
        a, b = enc(x).pooled, enc(x).pooled
    assert torch.equal(a, b)
    # weights and config round trip
    sha = save_weights(enc, tmp_path / "w.safetensors")
    again = image_encoder_from_config(json.loads(json.dumps(enc.config())))
    load_weights(again, tmp_path / "w.safetensors", expected_sha256=sha)
    again.eval()
    with torch.no_grad():
        assert torch.equal(again(x).features, enc(x).features)
    with pytest.raises(ConfigError):
        enc(torch.randn(1, enc.in_channels + 1, SIZE, SIZE, SIZE))


def test_unet_segmentation_decoder():
    enc = image_encoders.create("unet_encoder_3d", features=(4, 4, 8, 8, 16, 4), seg_classes=2)
    out = enc(torch.randn(1, 1, SIZE, SIZE, SIZE))
    assert out.segmentation is not None and out.segmentation.shape == (1, 2, SIZE, SIZE, SIZE)


@pytest.mark.parametrize("stem", ["stride2", "s2d", "monai"])
def test_resnet_stems(stem):
    enc = image_encoders.create("resnet10_3d", width=4, stem=stem, max_pool=False)
    out = enc(torch.randn(1, 1, SIZE, SIZE, SIZE))
    # no max-pool: the cheap stems halve the input once more than MONAI's stride-1 stem
    expected = SIZE // 8 if stem == "monai" else SIZE // 16
    assert tuple(out.features.shape[2:]) == (expected,) * 3


def test_resnet_stage_strides_keep_a_finer_feature_map():
    from medfuse.models.encoders.image import image_encoder_from_config

    enc = image_encoders.create(
        "resnet10_3d", width=4, stem="s2d", max_pool=False, strides=[2, 1, 1]
    )
    out = enc(torch.randn(1, 1, SIZE, SIZE, SIZE))
    assert tuple(out.features.shape[2:]) == (SIZE // 4,) * 3
    again = image_encoder_from_config(enc.config())
    assert again.config()["kwargs"]["strides"] == [2, 1, 1]
    again.load_state_dict(enc.state_dict())
    assert "strides" not in image_encoders.create("resnet10_3d", width=4).config()["kwargs"]
    narrow = image_encoders.create("resnet10_3d", widths=[4, 8, 8, 6], stem="s2d", max_pool=False)
    assert narrow.dim == 6 and narrow(torch.randn(1, 1, SIZE, SIZE, SIZE)).features.shape[1] == 6
    assert image_encoder_from_config(narrow.config()).dim == 6


def test_aux_features_append_the_finding_maps_to_the_feature_map():
    enc = image_encoders.create(
        "resnet10_3d", widths=[4, 8, 8, 6], stem="s2d", max_pool=False, aux_maps=2,
        aux_features=True, pool="meanmax",
    )  # fmt: skip
    enc.eval()
    out = enc(torch.randn(2, 1, SIZE, SIZE, SIZE))
    assert enc.dim == 8 and out.features.shape[1] == 8 and out.pooled.shape == (2, 8)
    # the last two channels are the auxiliary map logits themselves
    assert torch.equal(out.features[:, 6:], out.segmentation)
    again = image_encoder_from_config(enc.config())
    again.load_state_dict(enc.state_dict())
    again.eval()
    assert torch.allclose(again(torch.ones(1, 1, SIZE, SIZE, SIZE)).pooled,
                          enc(torch.ones(1, 1, SIZE, SIZE, SIZE)).pooled)  # fmt: skip
    with pytest.raises(ConfigError, match="aux_maps"):
        image_encoders.create("resnet10_3d", width=4, aux_features=True)


def test_dilated_stride1_stages_widen_the_receptive_field_on_the_same_grid():
    from medfuse.models.encoders.image import image_encoder_from_config

    def reach(enc) -> int:
        # input voxels along x that one central output cell depends on
        x = torch.randn(1, 1, 128, 8, 8, requires_grad=True)
        f = enc.eval()(x).features
        c = [s // 2 for s in f.shape[2:]]
        (g,) = torch.autograd.grad(f[0, :, c[0], c[1], c[2]].sum(), x)
        return int((g[0, 0].abs().sum(dim=(1, 2)) > 0).sum())

    kw = {"width": 4, "stem": "s2d", "max_pool": False, "strides": [2, 1, 1]}
    torch.manual_seed(0)
    plain = image_encoders.create("resnet10_3d", **kw)
    dilated = image_encoders.create("resnet10_3d", **kw, dilate=True)
    dilated.load_state_dict(plain.state_dict())  # same weights, only the dilation differs
    assert dilated(torch.randn(1, 1, SIZE, SIZE, SIZE)).features.shape[2:] == (SIZE // 4,) * 3
    assert reach(dilated) > reach(plain)
    again = image_encoder_from_config(dilated.config())
    assert again.config()["kwargs"]["dilate"] is True
    assert again.net.layer4[0].conv2.dilation == (4, 4, 4)
    assert "dilate" not in plain.config()["kwargs"]
    # a strided stage after a stride-1 one keeps the dilation given up before it
    mixed = image_encoders.create(
        "resnet10_3d", width=4, stem="s2d", max_pool=False, strides=[1, 2, 1], dilate=True
    )
    assert [mixed.net.layer2[0].conv2.dilation, mixed.net.layer3[0].conv2.dilation,
            mixed.net.layer4[0].conv2.dilation] == [(2,) * 3, (2,) * 3, (4,) * 3]  # fmt: skip
    assert mixed(torch.randn(1, 1, SIZE, SIZE, SIZE)).features.shape[2:] == (SIZE // 4,) * 3


@pytest.mark.parametrize("pool", ["max", "meanmax"])
def test_resnet_pooling_options(pool):
    from medfuse.models.encoders.image import image_encoder_from_config

    enc = image_encoders.create("resnet10_3d", width=4, stem="s2d", max_pool=False, pool=pool)
    out = enc.eval()(torch.randn(2, 1, SIZE, SIZE, SIZE), torch.tensor([True, False]))
    want = out.features[0].amax(dim=(1, 2, 3))
    if pool == "meanmax":
        want = want + out.features[0].mean(dim=(1, 2, 3))
    torch.testing.assert_close(out.pooled[0], want)
    assert not out.pooled[1].any()  # missing image
    assert image_encoder_from_config(enc.config()).pool == pool
    with pytest.raises(ConfigError):
        image_encoders.create("resnet10_3d", width=4, pool="median")
    with pytest.raises(ConfigError):
        image_encoders.create("resnet10_3d", width=4, strides=[2, 3, 1])


# -- fusion ----------------------------------------------------------------------------------------


#: every registered fusion with its defaults, plus the options that add modules
FUSION_CASES = [(name, {}) for name in fusion.names()] + [
    ("concat", {"modality_norm": True}),
    ("cross_attention", {"modality_norm": True, "out_hidden": 24, "pooled_skip": True}),
]


@pytest.mark.parametrize(
    "name,kwargs", FUSION_CASES, ids=[n + "".join(f"-{k}" for k in kw) for n, kw in FUSION_CASES]
)
def test_fusion_contract(name, kwargs, tmp_path):
    _seed()
    f = fusion.create(name, image_dim=12, text_dim=10, dim=16, **kwargs)
    assert f.config()["kwargs"].items() >= kwargs.items()
    img, txt = _encodings(img_present=[True, False, True], txt_present=[True, True, False])
    out = f(img, txt)
    assert isinstance(out, FusionOutput) and out.embedding.shape == (3, 16)
    assert out.mask.tolist() == [[True, True], [False, True], [True, False]]
    out.embedding.sum().backward()
    assert not _grads_missing(f), _grads_missing(f)
    # a missing modality is a learned token: the missing sample's own data does not matter
    f.eval()
    with torch.no_grad():
        ref = f(img, txt).embedding
        img.features[1].normal_()
        img.pooled[1] = 123.0
        txt.tokens[2].normal_()
        txt.pooled[2] = -5.0
        again = f(img, txt).embedding
    assert torch.allclose(ref[1:], again[1:], atol=1e-5)
    # whole modality absent (None), and the explicit mask overrides presence
    with torch.no_grad():
        only_text = f(None, txt)
        only_image = f(img, None)
        masked = f(img, txt, torch.tensor([[False, True]] * 3))
    assert (
        only_text.mask[:, 0].tolist() == [False] * 3
        and only_image.mask[:, 1].tolist() == [False] * 3
    )
    assert torch.isfinite(masked.embedding).all()
    assert torch.allclose(masked.embedding[1], ref[1], atol=1e-5)  # sample 1 had no image anyway
    # determinism and save/load
    with torch.no_grad():
        assert torch.equal(f(img, txt).embedding, f(img, txt).embedding)
    sha = save_weights(f, tmp_path / "f.safetensors")
    g = fusion_from_config(json.loads(json.dumps(f.config())))
    load_weights(g, tmp_path / "f.safetensors", expected_sha256=sha)
    g.eval()
    with torch.no_grad():
        assert torch.equal(g(img, txt).embedding, f(img, txt).embedding)


def test_cross_attention_returns_weights():
    f = fusion.create("cross_attention", image_dim=12, text_dim=10, dim=16, heads=2).eval()
    img, txt = _encodings()
    att = f(img, txt).attention
    # position 0 of each key sequence is the missing-modality token
    assert att["text_to_image"].shape == (3, 2, 6, 9)
    assert att["image_to_text"].shape == (3, 2, 9, 6)
    torch.testing.assert_close(att["text_to_image"].sum(-1), torch.ones(3, 2, 6))


def test_cross_attention_token_pool():
    f = fusion.create("cross_attention", image_dim=12, text_dim=10, dim=16, heads=2, token_pool=2)
    feats = torch.randn(3, 12, 4, 3, 2)
    img = ImageEncoding(feats, feats.mean((2, 3, 4)), torch.ones(3, dtype=torch.bool))
    _, txt = _encodings()
    att = f.eval()(img, txt).attention
    # 4x3x2 patches pooled in 2x2x2 blocks (ceil) -> 2x2x1 tokens, plus the missing-image key
    assert att["text_to_image"].shape == (3, 2, 6, 5)
    assert fusion_from_config(f.config()).token_pool == 2
    assert "token_pool" not in fusion.create("cross_attention", image_dim=4, text_dim=4).config()
    with pytest.raises(ConfigError):
        fusion.create("cross_attention", image_dim=4, text_dim=4, dim=8, token_pool=0)
    g = fusion.create("cross_attention", image_dim=12, text_dim=10, dim=16, image_pool="meanmax")
    assert fusion_from_config(g.config()).image_pool == "meanmax"
    assert torch.isfinite(g.eval()(img, txt).embedding).all()
    with pytest.raises(ConfigError):
        fusion.create("cross_attention", image_dim=4, text_dim=4, dim=8, image_pool="sum")
    with pytest.raises(ConfigError):
        fusion.create("cross_attention", image_dim=4, text_dim=4, dim=8, out_hidden=-1)


def test_modality_mask_validation():
    img, txt = _encodings()
    with pytest.raises(ConfigError):
        modality_mask(img, txt, torch.ones(3, 3, dtype=torch.bool))
    with pytest.raises(ConfigError):
        modality_mask(None, None)


# -- heads -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", heads.names())
def test_head_contract(name, tmp_path):
    _seed()
    h = heads.create(name, in_dim=16)
    x = torch.randn(6, 16, requires_grad=True)
    out = h(x)
    assert out.shape[0] == 6
    if name == "multilabel":
        loss = h.loss(out, torch.tensor([[1.0], [0.0], [float("nan")], [1.0], [-1.0], [0.0]]))
    elif name == "cox":
        loss = h.loss(out, torch.arange(6.0), torch.tensor([1, 0, 1, 1, 0, 1]))
    else:
        loss = h.loss(out, torch.tensor([0, 1, 2, 3, 4, 5]), torch.tensor([1, 0, 1, 1, 0, 1]))
    assert torch.isfinite(loss)
    loss.backward()
    assert not _grads_missing(h) and x.grad is not None
    sha = save_weights(h, tmp_path / "h.safetensors")
    g = head_from_config(json.loads(json.dumps(h.config())))
    load_weights(g, tmp_path / "h.safetensors", expected_sha256=sha)
    assert torch.equal(g.eval()(x), h.eval()(x))


def test_multilabel_calibration_and_cox_ordering():
    h = heads.create("multilabel", in_dim=4, labels=["a", "b"])
    h.set_calibration([2.0, 1.0], [0.3, 0.7])
    logits = torch.tensor([[2.0, 2.0]])
    torch.testing.assert_close(h.probabilities(logits), torch.sigmoid(torch.tensor([[1.0, 2.0]])))
    assert h.decide(logits).tolist() == [[True, True]]
    with pytest.raises(ConfigError):
        h.set_calibration([0.0, 1.0])
    cox = heads.create("cox", in_dim=1)
    time, event = torch.tensor([1.0, 2.0, 3.0]), torch.tensor([1, 1, 1])
    good = cox.loss(torch.tensor([3.0, 2.0, 1.0]), time, event)
    bad = cox.loss(torch.tensor([1.0, 2.0, 3.0]), time, event)
    assert good < bad


# -- presets ---------------------------------------------------------------------------------------
def _inputs(model, B: int = 3):
    _seed(1)
    x = torch.rand(B, model.preprocessing.in_channels, SIZE, SIZE, SIZE)
    text = model.tokenize(REPORTS[:B]) if model.text_encoder is not None else None
    return x, text


def _loss(out) -> torch.Tensor:
    total = out.embedding.sum() * 0
    for v in out.outputs.values():
        total = total + v.float().square().mean()
    return total


@pytest.mark.parametrize("name", TINY_PRESETS)
def test_preset_contract(name, tmp_path):
    _seed()
    model = create_model(name)
    x, text = _inputs(model)
    present = torch.tensor([True, False, True])
    out = model(image=x, text=text, image_present=present)
    B, L = 3, len(model.labels)
    assert out.logits.shape == (B, L) and out.embedding.shape[0] == B
    if model.image_encoder is not None:
        assert out.mask[:, 0].tolist() == present.tolist()
    if model.text_encoder is not None:
        assert out.mask[:, 1].tolist() == [True, False, True]
    _loss(out).backward()
    assert not _grads_missing(model), _grads_missing(model)

    model.eval()
    with torch.no_grad():
        ref = model(image=x, text=text, image_present=present)
        # each modality missing for the whole batch
        no_image = model(image=None, text=text) if model.text_encoder is not None else None
        no_text = model(image=x, text=None)
        assert torch.equal(ref.logits, model(image=x, text=text, image_present=present).logits)
        # the missing image's pixels do not matter
        x2 = x.clone()
        x2[1] = torch.rand_like(x2[1])
        assert torch.allclose(
            model(image=x2, text=text, image_present=present).logits, ref.logits, atol=1e-5
        )
    assert no_text.mask[:, 1].tolist() == [False] * B
    if no_image is not None:
        assert no_image.mask[:, 0].tolist() == [False] * B and torch.isfinite(no_image.logits).all()

    # save -> load gives identical outputs; the card round-trips
    card = ModelCard.from_model(model, training_data={"cohort": "none (contract test)"})
    save_model(model, card, tmp_path / "m")
    loaded = load_model(tmp_path / "m")
    with torch.no_grad():
        again = loaded(image=x, text=text, image_present=present)
    assert torch.equal(again.logits, ref.logits)
    for k in ref.outputs:
        assert torch.equal(again.outputs[k], ref.outputs[k])
    saved = ModelCard.load(tmp_path / "m")
    assert ModelCard.from_dict(json.loads(saved.to_json())) == saved
    assert saved.labels == model.labels and saved.weights_sha256 and saved.not_for_clinical_use
    assert saved.training_data == {"cohort": "none (contract test)"}
    assert loaded.card == saved


@pytest.mark.parametrize("name", FULL_PRESETS)
def test_full_presets_build_and_describe(name):
    spec = preset_spec(name)
    model = create_model(name)
    tiny = create_model(f"{name}_tiny")
    n_full = sum(p.numel() for p in model.parameters())
    assert n_full > sum(p.numel() for p in tiny.parameters())
    card = ModelCard.from_model(model)
    assert card.preprocessing["spatial_size"] == spec["preprocessing"]["spatial_size"]
    assert set(card.components) == {"image_encoder", "text_encoder", "fusion", "heads"}


def test_weights_checksum_and_bad_inputs(tmp_path):
    model = create_model("chest_ct_image_only_tiny")
    save_model(model, None, tmp_path / "m")
    w = tmp_path / "m" / "weights.safetensors"
    data = bytearray(w.read_bytes())
    data[-1] ^= 0xFF
    w.write_bytes(bytes(data))
    with pytest.raises(ModelError, match="checksum"):
        load_model(tmp_path / "m")
    with pytest.raises(ModelError, match="pickle"):
        load_weights(model, tmp_path / "x.pt")
    with pytest.raises(ModelError, match="preset without trained weights"):
        load_model("chest_ct_fusion_tiny")
    assert load_model("chest_ct_image_only_tiny", allow_untrained=True).labels == model.labels
    with pytest.raises(ModelError):
        load_model(tmp_path / "nowhere")
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "card.json").write_text("{not json")
    with pytest.raises(ModelError):
        load_model(tmp_path / "bad")
    with pytest.raises(ConfigError, match="unknown create_model overrides"):
        create_model("chest_ct_fusion_tiny", colour="red")


def test_overrides():
    m = create_model(
        "chest_ct_fusion_tiny", labels=["a", "b"], risk="discrete_time", fusion="gated", dim=8
    )
    assert m.labels == ["a", "b"] and m.fusion.name == "gated" and m.fusion.dim == 8
    x, text = _inputs(m, 2)
    out = m(image=x, text=text)
    assert out.outputs["risk"].shape == (2, 10) and m.risk_score(out).shape == (2,)


def test_public_api_is_lazy():
    import medfuse

    assert medfuse.create_model is create_model and medfuse.load_model is load_model


# -- extending: a new fusion module through the registry, no library edit ---------------------------
class _MeanFusion(Fusion):
    """Average of the projected modalities (a user's own fusion)."""

    name = "test_mean"

    def __init__(self, image_dim: int, text_dim: int, dim: int = 16, *, scale: float = 1.0):
        super().__init__(image_dim, text_dim, dim)
        self._init_kwargs = {"scale": scale}
        self.pi = torch.nn.Linear(image_dim, dim)
        self.pt = torch.nn.Linear(text_dim, dim)
        self.scale = scale

    def forward(self, image, text, mask=None):
        mask = modality_mask(image, text, mask)
        img, txt = self._vectors(image, text, mask)
        return FusionOutput(self.scale * (self.pi(img) + self.pt(txt)) / 2, mask)


def test_register_new_fusion_without_editing_library(tmp_path):
    fusion.register("test_mean", lambda **kw: _MeanFusion(**kw))
    try:
        assert "test_mean" in fusion.names()
        model = create_model(
            "chest_ct_fusion_tiny", fusion="test_mean", fusion_kwargs={"scale": 2.0}
        )
        x, text = _inputs(model)
        model.eval()
        with torch.no_grad():
            ref = model(image=x, text=text).logits
        save_model(model, None, tmp_path / "m")
        loaded = load_model(tmp_path / "m")
        assert loaded.fusion.scale == 2.0
        with torch.no_grad():
            assert torch.equal(loaded(image=x, text=text).logits, ref)
    finally:
        fusion._entries.pop("test_mean", None)
