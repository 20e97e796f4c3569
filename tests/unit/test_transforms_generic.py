"""The generic intensity modality (volumes that are neither CT nor MR intensities, e.g. the
MedMNIST3D shape masks): one channel scaled to [0, 1] from a fixed range or the volume's
min/max, padding that scales to 0, recorded like the other steps; CT/MR configs unchanged;
NIfTI volumes (modality "OT") accepted; the ``image_only_small`` preset."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from medfuse.errors import ConfigError
from medfuse.transforms import PreprocessingConfig, preprocess
from medfuse.types import Volume

MEDMNIST = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "medmnist3d"


def _volume(arr: np.ndarray, modality: str = "OT") -> Volume:
    return Volume(np.asarray(arr), np.eye(4), modality=modality)


def test_min_max_scaling_pads_with_zero_and_records_the_step():
    rng = np.random.default_rng(0)
    arr = rng.uniform(100.0, 300.0, size=(28, 28, 28)).astype(np.float32)
    cfg = PreprocessingConfig(modality="generic", spacing=(1, 1, 1), spatial_size=(32, 32, 32))
    x, rec = preprocess(_volume(arr), cfg)
    assert tuple(x.shape) == (1, 32, 32, 32) and x.dtype == torch.float32
    inner = x[0, 2:30, 2:30, 2:30].numpy()
    want = (arr - arr.min()) / (arr.max() - arr.min())
    np.testing.assert_allclose(inner, want, atol=1e-6)
    assert float(x[0, :2].abs().max()) == 0.0  # the padding is the low end of the range: 0
    steps = {s["name"]: s for s in rec.steps}
    assert steps["input"]["params"]["modality"] == "generic"
    assert "foreground" not in steps
    assert steps["pad_crop"]["params"]["pad_value"] == pytest.approx(float(arr.min()))
    p = steps["intensity"]["params"]
    assert p["method"] == "generic" and p["source"] == "min_max"
    assert p["range"] == pytest.approx([float(arr.min()), float(arr.max())])
    json.dumps(rec.to_dict() if hasattr(rec, "to_dict") else rec.steps)


def test_fixed_range_clips_and_is_the_same_for_every_volume():
    arr = np.linspace(-50, 300, 8 * 8 * 8, dtype=np.float32).reshape(8, 8, 8)
    cfg = PreprocessingConfig(modality="generic", generic_range=(0, 255))
    x, rec = preprocess(_volume(arr), cfg)
    np.testing.assert_allclose(x[0].numpy(), np.clip(arr / 255.0, 0, 1), atol=1e-6)
    assert rec.steps[-1]["params"]["source"] == "fixed"
    # a constant volume is all zeros with min/max, and the record says why
    flat, rec2 = preprocess(
        _volume(np.full((4, 4, 4), 7.0)), PreprocessingConfig(modality="generic")
    )
    assert float(flat.abs().max()) == 0.0 and rec2.steps[-1]["params"]["constant"] is True


def test_config_validation_and_round_trip():
    cfg = PreprocessingConfig(modality="Generic", generic_range=[0, 255], spatial_size=[32] * 3)
    assert cfg.modality == "generic" and cfg.in_channels == 1 and cfg.channels("CT") == 1
    d = json.loads(json.dumps(cfg.to_dict()))
    assert d["generic_range"] == [0.0, 255.0]
    assert PreprocessingConfig.from_dict(d) == cfg
    with pytest.raises(ConfigError, match="'generic' only"):
        PreprocessingConfig(modality="CT", generic_range=(0, 1))
    with pytest.raises(ConfigError, match="high > low"):
        PreprocessingConfig(modality="generic", generic_range=(5, 5))
    with pytest.raises(ConfigError, match="'generic'"):
        PreprocessingConfig(modality="PET")
    # configs of the CT and MR models are written exactly as before (no new key)
    for m in ("CT", "MR", "auto"):
        assert "generic_range" not in PreprocessingConfig(modality=m).to_dict()


def test_ct_and_mr_outputs_unchanged_by_the_generic_option():
    from monai.transforms import NormalizeIntensity, ScaleIntensityRange

    rng = np.random.default_rng(1)
    arr = rng.normal(0, 300, size=(10, 12, 14)).astype(np.float32)
    x, _ = preprocess(_volume(arr, "CT"), PreprocessingConfig(modality="CT"))
    want = ScaleIntensityRange(-1350.0, 150.0, 0.0, 1.0, clip=True)(torch.from_numpy(arr[None]))
    assert torch.equal(x, torch.as_tensor(want).float())
    x, _ = preprocess(_volume(arr, "MR"), PreprocessingConfig(modality="MR"))
    want = NormalizeIntensity(nonzero=True, channel_wise=True)(torch.from_numpy(arr[None]))
    assert torch.equal(x, torch.as_tensor(want).float())


def test_nifti_volume_without_modality_through_the_small_preset(tmp_path):
    import nibabel as nib

    from medfuse.io.volumes import read_nifti
    from medfuse.models.model import create_model, preset_spec

    rng = np.random.default_rng(2)
    arr = (rng.random((28, 28, 28)) > 0.7).astype(np.uint8) * 255
    nib.save(nib.Nifti1Image(arr, np.eye(4)), tmp_path / "case.nii.gz")
    vol = read_nifti(tmp_path / "case.nii.gz")
    assert vol.modality == "OT"
    spec = preset_spec("image_only_small")
    assert spec["preprocessing"]["modality"] == "generic"
    x, _rec = preprocess(vol, spec["preprocessing"])
    assert tuple(x.shape) == (1, 32, 32, 32)
    np.testing.assert_array_equal(x[0, 2:30, 2:30, 2:30].numpy(), arr / 255.0)
    model = create_model("image_only_small", labels=["abnormal"]).eval()
    batch = model.prepare(volumes=[vol, None])
    batch.pop("records")
    with torch.no_grad():
        out = model(**batch)
    # the last feature grid of a 32³ input stays 4³
    assert tuple(out.image.features.shape[2:]) == (4, 4, 4)
    assert out.logits.shape == (2, 1) and model.labels == ["abnormal"]


@pytest.mark.skipif(
    not (MEDMNIST / "adrenalmnist3d_trainval.npz").is_file(),
    reason="real MedMNIST3D data absent (../shared/data/medmnist3d)",
)
def test_real_medmnist_masks_scale_to_zero_one():
    d = np.load(MEDMNIST / "adrenalmnist3d_trainval.npz")
    arr = d["val_images"][0]
    x, _rec = preprocess(
        _volume(arr), PreprocessingConfig(modality="generic", spatial_size=(32,) * 3)
    )
    assert float(x.min()) == 0.0 and float(x.max()) == 1.0
    np.testing.assert_allclose(
        x[0, 2:30, 2:30, 2:30].numpy(), (arr - arr.min()) / float(arr.max() - arr.min()), atol=1e-6
    )
