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
