"""Geometry against every real QA series in ../shared/data that has a dcm2niix reference NIfTI.

World space is what must agree: voxel order may differ from dcm2niix's, so both images are
brought to the closest canonical (RAS) orientation before comparing affine and voxels.
"""

from __future__ import annotations

import csv
import json

import nibabel as nib
import numpy as np
import pytest

import medfuse
from medfuse.cli.main import main as cli

CASES = [
    "lung_ct_dev/Lung_Dx-A0002/series3",
    "sag_t1_prone_HFP",
    "cor_oblique_mosaic",
    "ts_jpeg_lossless",
    "ts_jpeg2000",
    "enhanced_philips_fieldmap/e1",
    "enhanced_philips_fieldmap/e2_fieldmaphz",
]


def _canonical(array, affine):
    return nib.as_closest_canonical(nib.Nifti1Image(np.asarray(array, dtype="f8"), affine))


def _assert_matches_reference(array, affine, ref_path):
    a = _canonical(array, affine)
    b = nib.as_closest_canonical(nib.load(ref_path))
    np.testing.assert_allclose(a.affine, b.affine, atol=1e-3)
    assert a.shape == b.shape
    np.testing.assert_allclose(a.get_fdata(), b.get_fdata(), rtol=1e-4, atol=1e-2)


def _load(shared_data, exp, name):
    study = medfuse.read_study(shared_data / exp["dicom_dir"])
    if name.endswith("e2_fieldmaphz"):  # the field-map frames are the second part of the series
        part = next(s for s in study.series if "FIELD_MAP" in s.image_type)
        return study, study.load(part)
    return study, study.volume


@pytest.mark.shared_data
@pytest.mark.parametrize("name", CASES)
def test_read_study_matches_dcm2niix(shared_data, expected_geometry, name):
    exp = expected_geometry[name]
    _, vol = _load(shared_data, exp, name)
    _assert_matches_reference(vol.array, vol.affine, shared_data / exp["ref"])
    np.testing.assert_allclose(sorted(vol.spacing), sorted(exp["zooms_mm"]), atol=1e-3)
    assert sorted(vol.shape) == sorted(exp["shape"])


@pytest.mark.shared_data
@pytest.mark.parametrize("name", CASES)
def test_convert_cli_matches_dcm2niix(shared_data, expected_geometry, name, tmp_path):
    exp = expected_geometry[name]
    out = tmp_path / "vol.nii.gz"
    assert cli(["convert", str(shared_data / exp["dicom_dir"]), str(out)]) == 0
    written = sorted(tmp_path.glob("*.nii.gz"))
    if name.startswith("enhanced_philips_fieldmap"):
        # one file per image type, as dcm2niix writes e1 / e2
        assert [p.name for p in written] == ["vol_field_map.nii.gz", "vol_m.nii.gz"]
        out = tmp_path / ("vol_field_map.nii.gz" if name.endswith("fieldmaphz") else "vol_m.nii.gz")
    img = nib.load(out)
    _assert_matches_reference(img.get_fdata(), img.affine, shared_data / exp["ref"])
    side = json.loads(out.with_name(out.name.replace(".nii.gz", ".json")).read_text())
    assert side["orientation"] == "".join(nib.aff2axcodes(img.affine))


@pytest.mark.shared_data
def test_lung_ct_facts(shared_data, expected_geometry):
    exp = expected_geometry["lung_ct_dev/Lung_Dx-A0002/series3"]
    study = medfuse.read_study(shared_data / exp["dicom_dir"])
    vol = study.volume
    assert vol.modality == "CT" and vol.units == "HU" and vol.array.dtype == np.float32
    assert vol.shape == (512, 512, 30)
    np.testing.assert_allclose(vol.spacing, (0.646484375, 0.646484375, 8.0), atol=1e-6)
    # k runs inferior -> superior whatever the file order (1-01.dcm is the most superior slice)
    assert vol.affine[2, 2] > 0 and vol.voxel_to_world([0, 0, 0])[2] == pytest.approx(80.0)
    assert vol.voxel_to_world([0, 0, 29])[2] == pytest.approx(312.0)
    assert vol.array.min() == -1024 and vol.array.max() == 1548
    # air outside the body, in a corner of the field of view, is about -1000 HU
    assert -1030 <= float(np.median(vol.array[:20, :20, :])) <= -950
    assert study.study_instance_uid and vol.series_instance_uid


@pytest.mark.shared_data
def test_lung_ct_tumour_boxes_land_on_the_mass(shared_data):
    """The annotated tumour boxes, placed by SOPInstanceUID, fall in the right perihilar region
    and hold soft-tissue-ish values (mean HU -291 … -164 per the data README)."""
    case = shared_data / "dicom/lung_ct_dev/Lung_Dx-A0002"
    vol = medfuse.read_volume(case / "series3_ThoraxRoutine_B40f")
    import pydicom

    z_of_uid = {}
    for f in vol.source_files:
        ds = pydicom.dcmread(f, stop_before_pixels=True)
        z_of_uid[str(ds.SOPInstanceUID)] = float(ds.ImagePositionPatient[2])
    with open(case / "tumour_boxes.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 10
    means = []
    for r in rows:
        z = z_of_uid[r["sop_instance_uid"]]
        k = round(float(vol.world_to_voxel([0, 0, z])[2]))
        assert k == int(r["k_sorted_inferior_to_superior"])
        c0, c1 = int(r["xmin_col"]), int(r["xmax_col"])
        r0, r1 = int(r["ymin_row"]), int(r["ymax_row"])
        box = vol.array[c0 : c1 + 1, r0 : r1 + 1, k]  # i = DICOM column, j = DICOM row
        means.append(float(box.mean()))
        ras = vol.voxel_to_world([[c0, r0, k], [c1, r1, k]])
        assert ras[:, 0].min() > 20 and ras[:, 0].max() < 105  # patient right (R > 0)
        assert 175 <= ras[0, 2] <= 249
    assert all(-300 <= m <= -150 for m in means), means


@pytest.mark.shared_data
@pytest.mark.parametrize("name", CASES)
def test_preprocessing_resamples_as_monais_eager_steps(shared_data, expected_geometry, name,
                                                       eager_monai):  # fmt: skip
    """On every real series (each a Fortran-ordered slice stack, oblique and prone ones
    included), the lazy resampling of :func:`medfuse.transforms.preprocess` gives the grid of
    MONAI's eager Orientation then Spacing, with the model affine to 1e-9 mm and the values to
    1e-5 of the series' range (float32 rounding of the sampling coordinates)."""
    from medfuse.transforms import PreprocessingConfig, preprocess

    _, vol = _load(shared_data, expected_geometry[name], name)
    first = vol.array if vol.array.ndim == 3 else vol.array[..., 0]  # a mosaic series is 4D
    assert first.flags.f_contiguous
    vol = medfuse.types.Volume(first, vol.affine, modality="MR")
    cfg = PreprocessingConfig(spacing=(2.0, 2.0, 2.0), modality="MR", mr_normalization="none")
    x, rec = preprocess(vol, cfg)
    want = eager_monai(vol, cfg.spacing)
    assert tuple(x.shape) == tuple(want.shape)
    np.testing.assert_allclose(rec.model_affine, want.affine.numpy(), rtol=0, atol=1e-9)
    span = float(first.max() - first.min())
    np.testing.assert_allclose(x.numpy(), want.numpy(), rtol=0, atol=1e-5 * span)
