"""Contract tests of the missing-modality imputers (registry ``imputers``) in every fusion:
shapes, gradients, save/load identical outputs, each modality missing; the alignment option;
the diagnostics. All test-sized."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from _fusion_inputs import encodings as _encodings

from medfuse.errors import ConfigError
from medfuse.models.encoders.text import TextEncoding
from medfuse.models.fusion import fusion_from_config
from medfuse.models.impute import embedding_diagnostics, frechet_distance, grad_reverse
from medfuse.models.weights import load_weights, save_weights
from medfuse.registry import fusion, imputers


def test_registry_entries_carry_metadata():
    assert set(imputers.names()) >= {"token", "regression", "generative"}
    assert imputers.metadata("generative")["adversarial"] is True
    assert imputers.metadata("regression")["adversarial"] is False
    assert imputers.metadata("token")["learned"] is False
    with pytest.raises(ConfigError):
        fusion.create("concat", image_dim=4, text_dim=4, dim=8, missing="zeros")
    with pytest.raises(ConfigError):  # concat has no shared per-modality space
        fusion.create("concat", image_dim=4, text_dim=4, dim=8, align="adversarial")


def test_token_imputer_keeps_state_dict_keys_and_config():
    torch.manual_seed(0)
    a = fusion.create("cross_attention", image_dim=12, text_dim=10, dim=16, heads=2)
    torch.manual_seed(0)
    b = fusion.create(
        "cross_attention", image_dim=12, text_dim=10, dim=16, heads=2, missing="token"
    )
    assert list(a.state_dict()) == list(b.state_dict())
    assert "missing" not in a.config()["kwargs"] and a.missing == "token"
    assert not any(k.startswith("imputer.") for k in a.state_dict())


CASES = [
    (fus, miss, align)
    for fus in ("concat", "gated", "late", "cross_attention")
    for miss in ("token", "regression", "generative")
    for align in ((None,) if fus == "concat" else (None, "adversarial"))
]


@pytest.mark.parametrize("fus,missing,align", CASES, ids=["-".join(map(str, c)) for c in CASES])
def test_imputer_contract(fus, missing, align, tmp_path):
    torch.manual_seed(0)
    kw = {"heads": 2} if fus == "cross_attention" else {}
    f = fusion.create(
        fus, image_dim=12, text_dim=10, dim=16, missing=missing, align=align,
        missing_kwargs={"tokens": 3, "noise_dim": 4, "hidden": 16} if missing != "token" else None,
        **kw,
    )  # fmt: skip
    # rows: both, image missing, report missing, both
    img, txt = _encodings(
        4, img_present=[True, False, True, True], txt_present=[True, True, False, True]
    )
    out = f(img, txt)
    assert out.embedding.shape == (4, 16)
    assert out.mask.tolist() == [[True, True], [False, True], [True, False], [True, True]]
    if missing == "token":
        assert out.imputed is None
    else:
        assert out.imputed.tolist() == [
            [False, False],
            [True, False],
            [False, True],
            [False, False],
        ]
    learned = imputers.metadata(missing)["learned"]
    assert (out.aux_loss is not None) == (learned or align is not None)
    total = out.embedding.sum() + (out.aux_loss if out.aux_loss is not None else 0.0)
    total.backward()
    missing_grads = [n for n, p in f.named_parameters() if p.requires_grad and p.grad is None]
    assert not missing_grads, missing_grads
    if missing == "generative":
        assert {"disc_acc_image", "disc_acc_text"} <= set(out.diagnostics)
    if align:
        assert 0.0 <= out.diagnostics["align_disc_acc"] <= 1.0
    f.eval()
    with torch.no_grad():
        ref = f(img, txt)
        assert ref.aux_loss is None  # losses only in training
        # the imputed stand-in depends on the present modality, never on the missing one's data
        img.features[1].normal_()
        img.pooled[1] = 123.0
        txt.tokens[2].normal_()
        txt.pooled[2] = -5.0
        again = f(img, txt).embedding
        assert torch.allclose(ref.embedding, again, atol=1e-5)
        if missing != "token":  # ... and it does depend on the present one
            txt2 = TextEncoding(txt.tokens, txt.mask, txt.pooled.clone(), txt.spans, txt.present)
            txt2.pooled[1] = 3.0 * torch.randn(10)  # (a constant shift: LayerNorm removes it)
            assert not torch.allclose(f(img, txt2).embedding[1], ref.embedding[1])
        # each modality missing for the whole batch (None), and deterministic in eval
        only_text, only_image = f(None, txt), f(img, None)
        assert only_text.embedding.shape == only_image.embedding.shape == (4, 16)
        if missing != "token":
            # imputed where the other modality is there (row 2 has no report, row 1 no image)
            assert only_text.imputed[:, 0].tolist() == [True, True, False, True]
            assert only_image.imputed[:, 1].tolist() == [True, False, True, True]
        assert torch.equal(f(img, txt).embedding, ref.embedding)
    # save/load: identical outputs
    sha = save_weights(f, tmp_path / "f.safetensors")
    cfg = json.loads(json.dumps(f.config()))
    assert cfg["kwargs"].get("missing", "token") == missing
    assert cfg["kwargs"].get("align") == align
    g = fusion_from_config(cfg)
    load_weights(g, tmp_path / "f.safetensors", expected_sha256=sha)
    g.eval()
    with torch.no_grad():
        assert torch.equal(g(img, txt).embedding, f(img, txt).embedding)
        assert torch.equal(g(None, txt).embedding, f(None, txt).embedding)


def test_generator_samples_differ_with_noise_but_not_in_eval():
    torch.manual_seed(0)
    imp = imputers.create("generative", image_dim=12, text_dim=10, tokens=2, noise_dim=4)
    imp.eval()
    cond = torch.randn(5, 10)
    a, at = imp.generate("image", cond)
    b, _ = imp.generate("image", cond)
    assert a.shape == (5, 12) and at.shape == (5, 2, 12) and torch.equal(a, b)
    s1, _ = imp.generate("image", cond, sample=True)
    s2, _ = imp.generate("image", cond, sample=True)
    assert not torch.allclose(s1, s2)


def test_wgan_gp_loss_trains_discriminator_only_on_its_term():
    torch.manual_seed(0)
    imp = imputers.create("generative", image_dim=12, text_dim=10, loss="wgan_gp", hidden=16)
    img, txt = _encodings(4)
    res = imp.training_loss(img, txt)
    assert res is not None and torch.isfinite(res.loss)
    res.loss.backward()
    assert all(p.grad is not None for p in imp.parameters())
    # conditions and targets are detached: the imputer does not move the encoders
    assert img.features.grad is None and txt.tokens.grad is None


def test_gradient_reversal_and_diagnostics():
    x = torch.ones(3, requires_grad=True)
    (grad_reverse(x, 2.0) * torch.tensor([1.0, 2.0, 3.0])).sum().backward()
    assert x.grad.tolist() == [-2.0, -4.0, -6.0]
    rng = np.random.default_rng(0)
    a = rng.normal(size=(200, 4))
    assert abs(frechet_distance(a, a)) < 1e-6
    assert frechet_distance(a, a + 3.0) == pytest.approx(36.0, rel=0.05)
    d = embedding_diagnostics(a, np.zeros_like(a) + a.mean(0))  # collapsed
    assert d["diversity_ratio"] == 0.0 and d["diversity_real"] > 1.0
