"""Generator → reader round trip: exact voxels and affine for many orientations, patient
positions, transfer syntaxes and file orders; plus dcm2niix as an independent oracle."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import medfuse
from medfuse.cli.main import main as cli
from medfuse.synth.dicom_write import write_series
from medfuse.synth.geometry import make_geometry
from medfuse.synth.phantom import chest_ct_phantom

SHAPE, SPACING = (36, 32, 10), (2.0, 2.5, 3.0)

GEOMETRIES = {
    "axial_HFS": dict(orientation="axial", patient_position="HFS"),
    "axial_HFP": dict(orientation="axial", patient_position="HFP"),
    "axial_FFS": dict(orientation="axial", patient_position="FFS"),
    "coronal": dict(orientation="coronal"),
    "sagittal": dict(orientation="sagittal"),
    "oblique_20": dict(orientation="axial", oblique_deg=20.0),
    "double_oblique": dict(orientation="sagittal", oblique_deg=(12.0, -25.0)),
}


def _write(tmp_path: Path, name: str, ts: str = "explicit", **kw):
    g = make_geometry(SHAPE, SPACING, center_lps=(10.0, -20.0, -150.0), **GEOMETRIES[name])
    vol = chest_ct_phantom(SHAPE, SPACING, seed=3, geometry=g)
    write_series(tmp_path, vol, g, seed=3, transfer_syntax=ts, scramble_instance_numbers=True, **kw)
    return g, vol


@pytest.mark.parametrize("name", GEOMETRIES)
def test_round_trip_exact_for_every_orientation(tmp_path, name):
    g, vol = _write(tmp_path, name)
    out = medfuse.read_volume(tmp_path)
    np.testing.assert_allclose(out.affine, g.affine_ras, atol=1e-4)
    np.testing.assert_array_equal(out.array, vol)
    assert out.units == "HU" and out.warnings == []


@pytest.mark.parametrize("ts", ["implicit", "rle", "jpegls", "jpeg2000"])
def test_round_trip_exact_for_transfer_syntaxes(tmp_path, ts):
    g, vol = _write(tmp_path, "oblique_20", ts=ts, ct_pixel="signed" if ts == "rle" else "unsigned")
    out = medfuse.read_volume(tmp_path)
    np.testing.assert_allclose(out.affine, g.affine_ras, atol=1e-4)
    np.testing.assert_array_equal(out.array, vol)


def _dcm2niix() -> str | None:
    exe = shutil.which("dcm2niix") or str(Path(sys.executable).with_name("dcm2niix"))
    return exe if Path(exe).exists() else None


@pytest.mark.parametrize("name", ["axial_HFP", "sagittal", "double_oblique"])
def test_convert_agrees_with_dcm2niix(tmp_path, name):
    exe = _dcm2niix()
    if exe is None:
        pytest.skip("dcm2niix is not installed (pip install dcm2niix; it is in the test extra)")
    import nibabel as nib

    src = tmp_path / "dicom"
    _write(src, name)
    ours = tmp_path / "ours.nii"
    assert cli(["convert", str(src), str(ours)]) == 0
    (tmp_path / "ref").mkdir()
    subprocess.run(
        [exe, "-z", "n", "-b", "n", "-f", "ref", "-o", str(tmp_path / "ref"), str(src)],
        check=True,
        capture_output=True,
    )
    a = nib.as_closest_canonical(nib.load(ours))
    b = nib.as_closest_canonical(nib.load(next((tmp_path / "ref").glob("*.nii"))))
    np.testing.assert_allclose(a.affine, b.affine, atol=1e-3)
    np.testing.assert_array_equal(a.get_fdata(), b.get_fdata())


def test_sample_cases_match_their_ground_truth():
    import json

    root = Path(__file__).resolve().parents[2] / "sample_cases"
    cases = sorted(p for p in root.iterdir() if (p / "ground_truth.json").exists())
    assert len(cases) >= 3
    for case in cases:
        truth = json.loads((case / "ground_truth.json").read_text())
        vol = medfuse.read_volume(case)
        np.testing.assert_allclose(vol.affine, truth["affine_ras"], atol=1e-4)
        assert list(vol.shape) == truth["shape"]
        for lesion in truth.get("lesions", []):
            ijk = np.round(vol.world_to_voxel(lesion["center_ras_mm"])).astype(int)
            assert vol.array[tuple(ijk)] > -200, (case.name, lesion)  # soft tissue, not lung
