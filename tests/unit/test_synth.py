"""Tests of the synthetic study generator (medfuse.synth): determinism, DICOM correctness
(read back with pydicom, dciodvfy, dcm2niix as the geometry oracle), ground truth, reports, CLI."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pydicom
import pytest

from medfuse.errors import ConfigError
from medfuse.synth.cohort import make_cohort, make_study
from medfuse.synth.dicom_write import write_series
from medfuse.synth.geometry import make_geometry
from medfuse.synth.phantom import (
    HU_LESION,
    HU_LUNG,
    MR_LESION,
    ChestPhantom,
    HeadPhantom,
    Lesion,
    chest_ct_phantom,
)

TINY = (36, 32, 16)  # X != Y on purpose: catches a rows/columns swap (JPEG 2000 needs >= 32)
TINY_SPACING = (11.0, 12.0, 15.0)  # anisotropic in-plane for the same reason


# -- helpers ------------------------------------------------------------------------------------


def read_series(folder: Path) -> tuple[np.ndarray, list[pydicom.Dataset]]:
    """Read a folder written by write_series: (volume[i, j, k] after rescale, datasets in slice
    order), sorting by position along the slice normal (not by file name or InstanceNumber)."""
    dss = [pydicom.dcmread(f) for f in sorted(folder.glob("*.dcm"))]
    iop = np.asarray(dss[0].ImageOrientationPatient, dtype=float)
    normal = np.cross(iop[:3], iop[3:])
    dss.sort(key=lambda d: float(np.dot(np.asarray(d.ImagePositionPatient, dtype=float), normal)))
    slices = []
    for d in dss:
        arr = d.pixel_array.astype(np.float64)
        arr = arr * float(getattr(d, "RescaleSlope", 1)) + float(getattr(d, "RescaleIntercept", 0))
        slices.append(arr.T)
    return np.stack(slices, axis=2), dss


def tree_bytes(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


def dcm2niix_exe() -> str | None:
    exe = shutil.which("dcm2niix")
    if exe:
        return exe
    cand = Path(sys.executable).parent / "dcm2niix"
    if cand.exists():
        return str(cand)
    try:
        import dcm2niix  # type: ignore[import-not-found]

        return str(dcm2niix.bin)
    except (ImportError, AttributeError):
        return None


# -- geometry and phantoms ----------------------------------------------------------------------


def test_geometry_presets_and_affine():
    g = make_geometry(TINY, TINY_SPACING, center_lps=(1.0, 2.0, 3.0))
    assert g.iop == (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)
    np.testing.assert_allclose(g.center_lps, [1.0, 2.0, 3.0], atol=1e-4)
    np.testing.assert_allclose(np.diag(g.affine_ras)[:3], [-11.0, -12.0, 15.0])
    assert g.pixel_spacing == (12.0, 11.0)  # (row spacing, column spacing)

    sag = make_geometry(TINY, TINY_SPACING, orientation="sagittal")
    assert sag.iop == (0.0, 1.0, 0.0, 0.0, 0.0, -1.0)
    np.testing.assert_allclose(sag.normal, [-1.0, 0.0, 0.0])
    assert make_geometry(TINY, TINY_SPACING, patient_position="HFP").iop == (
        -1.0,
        0.0,
        0.0,
        0.0,
        -1.0,
        0.0,
    )

    obl = make_geometry(TINY, TINY_SPACING, oblique_deg=(20.0, 10.0))
    r, c = np.asarray(obl.row_dir), np.asarray(obl.col_dir)
    assert abs(np.dot(r, c)) < 1e-7 and abs(np.linalg.norm(r) - 1) < 1e-7
    ijk = np.array([[3.0, 4.0, 5.0], [0.5, 7.0, 1.0]])
    np.testing.assert_allclose(obl.lps_to_ijk(obl.ijk_to_lps(ijk)), ijk, atol=1e-9)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"shape": (0, 4, 4)},
        {"spacing": (1.0, -1.0, 1.0)},
        {"patient_position": "XYZ"},
        {"orientation": "diagonal"},
        {"orientation": (1, 0, 0, 1, 0, 0)},
    ],
)
def test_geometry_rejects_bad_parameters(kwargs):
    args = {"shape": TINY, "spacing": TINY_SPACING, **kwargs}
    with pytest.raises(ConfigError):
        make_geometry(args.pop("shape"), args.pop("spacing"), **args)


def test_chest_phantom_contents():
    g = make_geometry((48, 40, 20), (8.0, 8.0, 10.0), center_lps=(0, 0, -150))
    les = Lesion(radius_mm=10.0, center_ijk=(14, 20, 10))
    p = ChestPhantom(g, seed=3, lesions=[les])
    vol = p.volume()
    assert vol.shape == (48, 40, 20) and vol.dtype == np.int16
    assert vol.min() >= -1024 and vol.max() <= 3071
    assert vol[0, 0, 0] == -1000  # air in the corner
    assert vol[14, 20, 10] == HU_LESION
    assert (vol == 700).any()  # bone
    lung = vol[(vol < -700)]
    assert abs(np.median(lung[lung > -990]) - HU_LUNG) < 20
    # A bigger heart replaces lung by soft tissue.
    big = ChestPhantom(g, seed=3, heart_scale=1.5).volume()
    assert (big < -700).sum() < (vol < -700).sum()
    # Same seed, same volume; slices equal the volume.
    np.testing.assert_array_equal(vol, ChestPhantom(g, seed=3, lesions=[les]).volume(workers=1))
    np.testing.assert_array_equal(vol[:, :, 7], p.slice(7))


def test_head_phantom_sagittal():
    g = make_geometry((40, 40, 12), (6.0, 6.0, 12.0), orientation="sagittal")
    c = g.center_lps + np.array([0.0, -30.0, 40.0])
    p = HeadPhantom(g, seed=1, lesions=[Lesion(radius_mm=8.0, center_lps=tuple(c))])
    vol = p.volume()
    assert vol.dtype == np.uint16
    ijk = np.rint(g.lps_to_ijk(c)).astype(int)
    assert vol[tuple(ijk)] == MR_LESION
    assert vol[0, 0, 0] < 60  # background is noise only


# -- DICOM writing --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "ts,ct_pixel",
    [
        ("explicit", "unsigned"),
        ("explicit", "signed"),
        ("implicit", "unsigned"),
        ("rle", "signed"),
        ("jpegls", "unsigned"),
        ("jpeg2000", "unsigned"),
    ],
)
def test_write_series_round_trip(tmp_path, ts, ct_pixel):
    g = make_geometry(TINY, TINY_SPACING, center_lps=(5.0, -10.0, -120.0))
    vol = chest_ct_phantom(TINY, TINY_SPACING, seed=5, geometry=g)
    info = write_series(tmp_path, vol, g, seed=5, transfer_syntax=ts, ct_pixel=ct_pixel)
    back, dss = read_series(tmp_path)
    np.testing.assert_array_equal(back, vol)  # exact after rescale

    ds = dss[0]
    assert ds.file_meta.TransferSyntaxUID == info["transfer_syntax_uid"]
    assert ds.SOPClassUID == "1.2.840.10008.5.1.4.1.1.2"
    assert ds.file_meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID
    assert (ds.Rows, ds.Columns) == (TINY[1], TINY[0])
    assert [float(v) for v in ds.PixelSpacing] == [TINY_SPACING[1], TINY_SPACING[0]]
    assert [float(v) for v in ds.ImageOrientationPatient] == [1, 0, 0, 0, 1, 0]
    assert ds.PixelRepresentation == (1 if ct_pixel == "signed" else 0)
    assert float(ds.RescaleIntercept) == (0.0 if ct_pixel == "signed" else -1024.0)
    assert ds.PatientName == "MEDFUSE^SYNTH0001" and ds.PatientPosition == "HFS"
    assert len({d.SOPInstanceUID for d in dss}) == len(dss) == TINY[2]
    assert len({(d.StudyInstanceUID, d.SeriesInstanceUID, d.FrameOfReferenceUID) for d in dss}) == 1

    # Positions: on one line along the normal, `spacing` apart, as the ground truth says.
    pos = np.array([[float(v) for v in d.ImagePositionPatient] for d in dss])
    steps = np.diff(pos, axis=0)
    np.testing.assert_allclose(
        steps, np.tile(g.normal * TINY_SPACING[2], (len(steps), 1)), atol=1e-3
    )
    np.testing.assert_allclose(pos, info["image_positions_lps"], atol=1e-6)
    np.testing.assert_allclose(pos[0], g.affine_lps[:3, 3], atol=1e-4)


def test_file_names_and_instance_numbers_are_not_slice_order(tmp_path):
    g = make_geometry(TINY, TINY_SPACING)
    vol = chest_ct_phantom(TINY, TINY_SPACING, geometry=g)
    info = write_series(tmp_path / "a", vol, g, seed=1)
    assert info["files"] != sorted(info["files"])  # names shuffled
    assert info["instance_numbers"] == list(range(1, TINY[2] + 1))
    info = write_series(tmp_path / "b", vol, g, seed=1, scramble_instance_numbers=True)
    inst = info["instance_numbers"]
    assert (
        sorted(inst) == list(range(1, TINY[2] + 1))
        and inst != sorted(inst)
        and inst != sorted(inst)[::-1]
    )
    _, dss = read_series(tmp_path / "b")
    assert [int(d.InstanceNumber) for d in dss] == inst


def test_write_series_rejects_bad_parameters(tmp_path):
    g = make_geometry(TINY, TINY_SPACING)
    vol = chest_ct_phantom(TINY, TINY_SPACING, geometry=g)
    with pytest.raises(ConfigError, match="transfer syntax"):
        write_series(tmp_path, vol, g, transfer_syntax="jpeg-magic")
    with pytest.raises(ConfigError, match="shape"):
        write_series(tmp_path, vol[:, :, :3], g)
    with pytest.raises(ConfigError, match="outside"):
        write_series(tmp_path, vol.astype(np.int32) + 5000, g)


# -- studies, determinism, ground truth -----------------------------------------------------------


def test_same_seed_same_bytes_different_seed_differs(tmp_path):
    kw = {"shape": TINY, "spacing": TINY_SPACING, "transfer_syntax": "rle"}
    make_study(tmp_path / "a", seed=11, **kw)
    make_study(tmp_path / "b", seed=11, **kw)
    make_study(tmp_path / "c", seed=12, **kw)
    a, b, c = (tree_bytes(tmp_path / x) for x in "abc")
    assert len([k for k in a if k.endswith(".dcm")]) == TINY[2]
    assert a == b
    assert a["ground_truth.json"] != c["ground_truth.json"]
    assert set(a.values()).isdisjoint(v for k, v in c.items() if k.endswith(".dcm"))


def test_study_refuses_to_mix_series(tmp_path):
    make_study(tmp_path, seed=1, shape=TINY, spacing=TINY_SPACING)
    with pytest.raises(ConfigError, match="overwrite"):
        make_study(tmp_path, seed=2, shape=TINY, spacing=TINY_SPACING)
    make_study(tmp_path, seed=2, shape=TINY, spacing=TINY_SPACING, overwrite=True)
    assert len(list((tmp_path / "dicom").glob("*.dcm"))) == TINY[2]


@pytest.mark.parametrize(
    "kind,kw",
    [
        (
            "chest_ct",
            {"lesions": [{"diameter_mm": 30.0, "lobe": "right lower lobe"}], "effusion": "left"},
        ),
        (
            "chest_ct",
            {"lesions": [{"radius_mm": 9.0, "center_ijk": (10, 14, 6)}], "patient_position": "HFP"},
        ),
        ("mr_sag", {"lesions": [{"diameter_mm": 16.0}]}),
    ],
)
def test_ground_truth_lesion_voxel_and_report(tmp_path, kind, kw):
    shape, spacing = (
        ((40, 36, 20), (10.0, 10.0, 12.0))
        if kind == "chest_ct"
        else ((32, 32, 12), (7.0, 7.0, 12.0))
    )
    truth = make_study(tmp_path, seed=7, kind=kind, shape=shape, spacing=spacing, **kw)
    assert truth == json.loads((tmp_path / "ground_truth.json").read_text())
    vol, dss = read_series(tmp_path / "dicom")
    # The recorded affine is the one the headers define (first slice position, IOP, spacing).
    iop = np.asarray(dss[0].ImageOrientationPatient, dtype=float)
    ps = [float(v) for v in dss[0].PixelSpacing]
    aff_lps = np.eye(4)
    aff_lps[:3, 0], aff_lps[:3, 1] = iop[:3] * ps[1], iop[3:] * ps[0]
    aff_lps[:3, 2] = np.cross(iop[:3], iop[3:]) * spacing[2]
    aff_lps[:3, 3] = [float(v) for v in dss[0].ImagePositionPatient]
    np.testing.assert_allclose(truth["affine_ras"], np.diag([-1, -1, 1, 1]) @ aff_lps, atol=1e-4)
    (les,) = truth["lesions"]
    expected = HU_LESION if kind == "chest_ct" else MR_LESION
    assert vol[tuple(les["center_voxel"])] == expected == les["value"]
    # Voxel, LPS and RAS centres agree through the recorded affine.
    aff = np.asarray(truth["affine_ras"])
    ras = aff[:3, :3] @ np.asarray(les["center_ijk"]) + aff[:3, 3]
    np.testing.assert_allclose(ras, les["center_ras_mm"], atol=1e-3)
    np.testing.assert_allclose(
        np.asarray(les["center_lps_mm"]) * [-1, -1, 1], les["center_ras_mm"], atol=1e-6
    )
    # The instance number named in the report is that of the slice through the centre.
    k = les["center_voxel"][2]
    assert int(dss[k].InstanceNumber) == les["instance_number"]
    report = (tmp_path / "report.txt").read_text()
    assert "FINDINGS:" in report and "IMPRESSION:" in report
    assert f"{les['diameter_mm']} mm" in report and les["location"] in report
    assert f"image {les['instance_number']}" in report
    if kind == "chest_ct" and "lobe" in kw["lesions"][0]:
        assert les["location"] == kw["lesions"][0]["lobe"]
        assert "left pleural effusion" in report and truth["labels"]["effusion"] == 1
    if kind == "mr_sag":
        assert dss[0].Modality == "MR" and [float(v) for v in dss[0].ImageOrientationPatient] == [
            0,
            1,
            0,
            0,
            0,
            -1,
        ]


def test_no_lesion_report(tmp_path):
    truth = make_study(
        tmp_path, seed=3, shape=TINY, spacing=TINY_SPACING, lesions=None, heart_scale=1.0,
        effusion=None, emphysema=False,
    )  # fmt: skip
    report = (tmp_path / "report.txt").read_text()
    assert "No focal lesion" in report and "No pleural effusion" in report
    assert truth["lesions"] == [] and not any(truth["labels"].values())


def test_lesion_parameters_are_checked(tmp_path):
    with pytest.raises(ConfigError, match="lobe"):
        make_study(
            tmp_path / "a",
            seed=1,
            shape=TINY,
            spacing=TINY_SPACING,
            lesions=[{"diameter_mm": 10, "lobe": "spleen"}],
        )
    with pytest.raises(ConfigError, match="unknown lesion keys"):
        make_study(tmp_path / "b", seed=1, shape=TINY, spacing=TINY_SPACING, lesions=[{"size": 3}])
    with pytest.raises(ConfigError, match="no room"):
        make_study(
            tmp_path / "c", seed=1, shape=TINY, spacing=TINY_SPACING, lesions=[{"diameter_mm": 100}]
        )
    with pytest.raises(ConfigError, match="kind"):
        make_study(tmp_path / "d", seed=1, kind="pet")


def test_make_cohort_mix(tmp_path):
    truths = make_cohort(tmp_path, 3, seed=5, shape=(24, 24, 8))
    assert [t["kind"] for t in truths] == ["chest_ct", "chest_ct", "mr_sag"]
    manifest = json.loads((tmp_path / "cohort.json").read_text())
    assert [c["case"] for c in manifest["cases"]] == ["case_0001", "case_0002", "case_0003"]
    for c in manifest["cases"]:
        assert (tmp_path / c["case"] / "report.txt").is_file()
        assert len(list((tmp_path / c["case"] / "dicom").glob("*.dcm"))) == 8
    assert len({t["dicom"]["study_instance_uid"] for t in truths}) == 3


# -- external validators ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def validation_studies(tmp_path_factory):
    root = tmp_path_factory.mktemp("synth_valid")
    studies = {
        "ct_explicit": make_study(root / "ct_explicit", seed=21, shape=TINY, spacing=TINY_SPACING),
        "ct_rle_signed_hfp": make_study(
            root / "ct_rle_signed_hfp", seed=22, shape=TINY, spacing=TINY_SPACING,
            transfer_syntax="rle", ct_pixel="signed", patient_position="HFP",
        ),
        "ct_jpegls_oblique": make_study(
            root / "ct_jpegls_oblique", seed=23, shape=TINY, spacing=TINY_SPACING,
            transfer_syntax="jpegls", oblique_deg=(15.0, 8.0), scramble_instance_numbers=True,
        ),
        "ct_j2k": make_study(root / "ct_j2k", seed=24, shape=TINY, spacing=TINY_SPACING, transfer_syntax="jpeg2000"),
        "mr_sag": make_study(root / "mr_sag", seed=25, kind="mr_sag", shape=(30, 26, 10), spacing=(8.0, 9.0, 14.0)),
    }  # fmt: skip
    return root, studies


@pytest.mark.skipif(
    shutil.which("dciodvfy") is None,
    reason="dciodvfy (dicom3tools) is not on PATH; apt-get install dicom3tools",
)
def test_dciodvfy_finds_no_errors(validation_studies):
    root, studies = validation_studies
    for name in studies:
        files = sorted((root / name / "dicom").glob("*.dcm"))
        for f in files[:: max(1, len(files) // 4)]:
            res = subprocess.run(["dciodvfy", str(f)], capture_output=True, text=True, timeout=60)
            out = res.stdout + res.stderr
            errors = [ln for ln in out.splitlines() if "Error" in ln]
            assert not errors, f"{name}/{f.name}: {errors}"
            assert ("CTImage" if name.startswith("ct") else "MRImage") in out


@pytest.mark.skipif(
    dcm2niix_exe() is None, reason="dcm2niix is not installed (pip install dcm2niix)"
)
def test_dcm2niix_geometry_oracle(validation_studies, tmp_path):
    import nibabel as nib
    from nibabel.orientations import io_orientation, ornt_transform

    root, studies = validation_studies
    exe = dcm2niix_exe()
    for name, truth in studies.items():
        out = tmp_path / name
        out.mkdir()
        res = subprocess.run(
            [exe, "-z", "n", "-b", "n", "-f", "vol", "-o", str(out), str(root / name / "dicom")],
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        niftis = sorted(out.glob("*.nii"))
        assert res.returncode == 0 and len(niftis) == 1, res.stdout + res.stderr
        img = nib.load(niftis[0])
        want = np.asarray(truth["affine_ras"])
        # dcm2niix may flip/permute axes; bring its image into our voxel order, then compare.
        xform = ornt_transform(io_orientation(img.affine), io_orientation(want))
        img = img.as_reoriented(xform)
        np.testing.assert_allclose(img.affine, want, atol=1e-3, err_msg=name)
        ours, _ = read_series(root / name / "dicom")
        np.testing.assert_array_equal(
            np.rint(np.asanyarray(img.dataobj, dtype=np.float64)), ours, err_msg=name
        )


# -- CLI ----------------------------------------------------------------------------------------


def test_cli_cohort_make(tmp_path):
    import typer
    from typer.testing import CliRunner

    from medfuse.cli.cohort import TransferSyntax, register
    from medfuse.synth.dicom_write import TRANSFER_SYNTAXES

    assert {t.value for t in TransferSyntax} == set(TRANSFER_SYNTAXES)

    app = typer.Typer()
    register(app)

    @app.command()
    def _other() -> None:  # a second command keeps typer from collapsing the group
        pass

    runner = CliRunner()
    res = runner.invoke(app, ["cohort", "make", "--help"])
    assert res.exit_code == 0 and "--transfer-syntax" in res.output
    res = runner.invoke(
        app,
        ["cohort", "make", "--n", "2", "--seed", "3", "--out", str(tmp_path), "--shape", "24,24,8"],
    )
    assert res.exit_code == 0, res.output
    assert (tmp_path / "case_0002" / "ground_truth.json").is_file()
    res = runner.invoke(
        app,
        [
            "cohort",
            "make",
            "--n",
            "1",
            "--seed",
            "3",
            "--out",
            str(tmp_path / "x"),
            "--shape",
            "24,24",
        ],
    )
    assert res.exit_code != 0


# -- committed samples ----------------------------------------------------------------------------

SAMPLE_ROOT = Path(__file__).resolve().parents[2] / "sample_cases"


@pytest.mark.skipif(
    not (SAMPLE_ROOT / "chest_ct_0001").is_dir(), reason="sample_cases/ not present"
)
def test_committed_samples_are_reproducible(tmp_path):
    """`medfuse cohort samples` rewrites sample_cases/ exactly (datasets compared element by
    element, so a new pydicom ImplementationVersionName alone does not fail this)."""
    from medfuse.synth.cohort import SAMPLES, make_samples

    make_samples(tmp_path)
    for name in SAMPLES:
        new, old = tmp_path / name, SAMPLE_ROOT / name
        for fname in ("report.txt", "ground_truth.json"):
            assert (new / fname).is_file() == (old / fname).is_file(), f"{name}/{fname}"
            if (old / fname).is_file():
                assert (new / fname).read_text() == (old / fname).read_text(), f"{name}/{fname}"
        assert (new / "report.txt").is_file() == SAMPLES[name].get("write_report", True)
        new_files = sorted(p.name for p in (new / "dicom").glob("*.dcm"))
        assert new_files == sorted(p.name for p in (old / "dicom").glob("*.dcm"))
        for f in new_files:
            a, b = pydicom.dcmread(new / "dicom" / f), pydicom.dcmread(old / "dicom" / f)
            assert a == b, f"{name}/{f}"
            assert a.file_meta.TransferSyntaxUID == b.file_meta.TransferSyntaxUID
