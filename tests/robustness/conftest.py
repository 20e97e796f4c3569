"""Robustness tests write deliberately invalid DICOM, which pydicom would refuse to write or
warn about on reading: its validation is off for every test here."""

from __future__ import annotations

import pydicom
import pytest


@pytest.fixture(autouse=True)
def _lenient_pydicom(monkeypatch):
    monkeypatch.setattr(pydicom.config.settings, "writing_validation_mode", pydicom.config.IGNORE)
    monkeypatch.setattr(pydicom.config.settings, "reading_validation_mode", pydicom.config.IGNORE)
