"""Shared fixtures. Real data lives in ../shared/data (never committed); tests that need it skip
with a clear reason when it is absent."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"
SAMPLE_CASES = REPO / "sample_cases"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not (SHARED_DATA / "dicom").is_dir():
        pytest.skip(f"real QA data not found at {SHARED_DATA} (it is kept outside the repository)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def expected_geometry(shared_data) -> dict:
    return json.loads((shared_data / "expected_geometry.json").read_text())


def _eager_monai(vol, spacing, mode="bilinear"):
    """MONAI's eager path on a C-ordered copy of ``vol``: Orientation to RAS, then Spacing to
    ``spacing`` (when given; ``mode``, border padding), each resampling on its own: the
    reference for :func:`medfuse.transforms.preprocess`, which applies them lazily."""
    import numpy as np
    import torch
    from monai.data import MetaTensor
    from monai.transforms import Orientation, Spacing

    img = MetaTensor(
        torch.from_numpy(np.ascontiguousarray(vol.array, dtype=np.float32)[None]),
        affine=torch.as_tensor(vol.affine, dtype=torch.float64),
    )
    img = Orientation(axcodes="RAS", labels=(("L", "R"), ("P", "A"), ("I", "S")))(img)
    if spacing is not None:
        img = Spacing(spacing, mode=mode, padding_mode="border", dtype=torch.float32)(img)
    return img


@pytest.fixture(scope="session")
def eager_monai():
    """:func:`_eager_monai`: ``eager_monai(volume, spacing, mode="bilinear") -> MetaTensor``."""
    return _eager_monai
