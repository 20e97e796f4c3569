"""The DICOM exporters on real sample cases: ``dicom_sr`` (Comprehensive 3D SR, TID 1500) and
``dicom_saliency`` (Parametric Maps), read back with highdicom / pydicom, validated with
dciodvfy, geometry checked against the source series."""

from __future__ import annotations

import copy
import dataclasses
import io
import logging
import shutil
import subprocess
from pathlib import Path

import highdicom as hd
import jpeg_ls
import numpy as np
import pydicom
import pytest

import medfuse
from medfuse.errors import ConfigError, ExportError
from medfuse.explain.explanation import Explanation, Saliency
from medfuse.export import ExportContext, ExportOptions, dicom_saliency, dicom_sr, source
from medfuse.io.geometry import LPS_TO_RAS
from medfuse.io.volumes import read_nifti
from medfuse.prediction import FindingPrediction, Prediction
from medfuse.registry import exporters
from medfuse.types import Case, Volume

SAMPLES = Path(__file__).resolve().parents[2] / "sample_cases"
CT = SAMPLES / "chest_ct_0001"
FORMATS = ["dicom_sr", "dicom_saliency"]
MULTI = ["emphysema", "suspected_malignancy", "pneumonia"]


# -- fixtures (one prediction per case for the whole module) ---------------------------------------
@pytest.fixture(scope="module")
def model():
    return medfuse.load_model("chest_ct_demo")


@pytest.fixture(scope="module")
def study():
    return medfuse.read_study(CT)


@pytest.fixture(scope="module")
def report():
    return medfuse.read_report(CT / "report.txt")


@pytest.fixture(scope="module")
def pred(model, study, report) -> Prediction:
    return medfuse.predict(model, (study, report), explain=["gradcam"])


@pytest.fixture(scope="module")
def exported(pred, tmp_path_factory) -> dict[str, list[Path]]:
    return medfuse.export(pred, tmp_path_factory.mktemp("dicom"), formats=FORMATS)


@pytest.fixture(scope="module")
def sources(pred) -> list[pydicom.Dataset]:
    return [pydicom.dcmread(f, stop_before_pixels=True) for f in pred.case.volume.source_files]


@pytest.fixture(scope="module")
def sr(exported):
    (path,) = exported["dicom_sr"]
    return hd.sr.srread(path)


def _items(node, value_type: str | None = None):
    """Every content item under ``node`` (depth first)."""
    for item in node.get("ContentSequence", []):
        if value_type is None or item.ValueType == value_type:
            yield item
        yield from _items(item, value_type)


def _name(item) -> str:
    return item.ConceptNameCodeSequence[0].CodeValue


def _evidence_uids(ds) -> set[tuple[str, str]]:
    return {
        (ref.ReferencedSOPClassUID, ref.ReferencedSOPInstanceUID)
        for study in ds.CurrentRequestedProcedureEvidenceSequence
        for series in study.ReferencedSeriesSequence
        for ref in series.ReferencedSOPSequence
    }


def _dciodvfy_errors(path: Path) -> list[str]:
    exe = shutil.which("dciodvfy")
    if exe is None:
        pytest.skip("dciodvfy (dicom3tools) is not on PATH: DICOM validation not run")
    run = subprocess.run([exe, str(path)], capture_output=True, text=True, timeout=60)
    lines = (run.stdout + run.stderr).splitlines()
    return [line for line in lines if line.startswith("Error")]


def _pm_volumes(path: Path) -> dict[str, tuple[np.ndarray, np.ndarray, list[str]]]:
    """Parametric map read back with pydicom: LUTLabel -> (RAS affine rebuilt from the per-frame
    plane positions and the shared orientation / spacing, values as nibabel [i, j, k], the
    source SOP instance each frame derives from). Values go through the real-world value
    mapping."""
    ds = pydicom.dcmread(path)
    hd.pm.ParametricMap.from_dataset(ds)  # highdicom accepts it as a Parametric Map
    shared = ds.SharedFunctionalGroupsSequence[0]
    iop = np.array(shared.PlaneOrientationSequence[0].ImageOrientationPatient, float)
    spacing = np.array(shared.PixelMeasuresSequence[0].PixelSpacing, float)
    pixels = ds.pixel_array.reshape(int(ds.NumberOfFrames), ds.Rows, ds.Columns)
    frames: dict[str, list] = {}
    for n, item in enumerate(ds.PerFrameFunctionalGroupsSequence):
        rwvm = item.get("RealWorldValueMappingSequence") or shared.RealWorldValueMappingSequence
        ipp = np.array(item.PlanePositionSequence[0].ImagePositionPatient, float)
        src = item.DerivationImageSequence[0].SourceImageSequence[0].ReferencedSOPInstanceUID
        real = pixels[n] * float(rwvm[0].RealWorldValueSlope) + float(
            rwvm[0].RealWorldValueIntercept
        )
        frames.setdefault(rwvm[0].LUTLabel, []).append((ipp, real, src))
    normal = np.cross(iop[:3], iop[3:])
    out = {}
    for label, items in frames.items():
        items.sort(key=lambda t: float(t[0] @ normal))
        pos = np.array([t[0] for t in items])
        lps = np.eye(4)
        lps[:3, 0] = iop[:3] * spacing[1]  # along a row: column spacing
        lps[:3, 1] = iop[3:] * spacing[0]  # down a column: row spacing
        lps[:3, 2] = (pos[-1] - pos[0]) / max(len(pos) - 1, 1)
        lps[:3, 3] = pos[0]
        values = np.stack([t[1].T for t in items], axis=-1)
        out[label] = (LPS_TO_RAS @ lps, values, [t[2] for t in items])
    return out


def _assert_within_a_step(values: np.ndarray, raw: np.ndarray) -> None:
    """Read-back values equal the raw map within half a stored step (16 bits over its range;
    0.6 for the float32 rounding of the conversion)."""
    raw = np.asarray(raw, np.float64)
    step = (raw.max() - raw.min()) / dicom_saliency.STORED_MAX
    np.testing.assert_allclose(values, raw, rtol=0, atol=0.6 * step + 1e-12)


# -- registration ------------------------------------------------------------------------------------
def test_formats_are_registered():
    assert {"dicom_sr", "dicom_saliency", "fhir"} <= set(exporters.names())


# -- SR ----------------------------------------------------------------------------------------------
def test_sr_is_in_the_source_study_as_a_new_series(sr, sources, pred):
    src = sources[0]
    assert sr.SOPClassUID == "1.2.840.10008.5.1.4.1.1.88.34"  # Comprehensive 3D SR
    assert sr.StudyInstanceUID == src.StudyInstanceUID == pred.study_instance_uid
    assert sr.SeriesInstanceUID not in {s.SeriesInstanceUID for s in sources}
    assert sr.SOPInstanceUID not in {s.SOPInstanceUID for s in sources}
    assert sr.PatientName == src.PatientName and sr.PatientID == src.PatientID
    assert sr.AccessionNumber == src.AccessionNumber
    assert sr.Modality == "SR"
    assert sr.SeriesNumber == dicom_sr.SERIES_NUMBER
    assert (sr.PreliminaryFlag, sr.CompletionFlag, sr.VerificationFlag) == (
        "PRELIMINARY",
        "PARTIAL",
        "UNVERIFIED",
    )
    assert "not for clinical use" in sr.SeriesDescription
    assert sr.CodingSchemeIdentificationSequence[0].CodingSchemeDesignator == "99MEDFUSE"


def test_sr_has_every_finding_with_its_probability_and_decision(sr, pred):
    groups = {g.tracking_identifier: g for g in sr.content.get_image_measurement_groups()}
    assert set(groups) == {*pred.labels, "risk"}
    for f in pred.findings:
        g = groups[f.label]
        assert g.finding_type.value == dicom_sr.finding_code(f.label)[0]
        values = {m.name.value: m for m in g.get_measurements()}
        prob = values[dicom_sr.PROBABILITY[0]]
        assert prob.value == pytest.approx(f.probability, abs=1e-6)
        assert prob.unit.value == "{probability}"
        assert values[dicom_sr.THRESHOLD[0]].value == pytest.approx(f.threshold, abs=1e-6)
        (decision,) = g.get_qualitative_evaluations()
        expected = dicom_sr.POSITIVE if f.positive else dicom_sr.NEGATIVE
        assert decision.value.value == expected[0]
    assert any(f.positive for f in pred.findings)  # both decisions are exercised
    risk, *percentile = groups["risk"].get_measurements()
    assert risk.value == pytest.approx(pred.risk.score, abs=1e-6)
    assert risk.name.value == dicom_sr.risk_code(pred.risk.kind)[0]
    if pred.risk.percentile is None:
        assert percentile == []
    else:  # the card holds the validation cases' risk scores
        (pct,) = percentile
        assert pct.name.value == dicom_sr.RISK_PERCENTILE[0]
        assert pct.value == pytest.approx(pred.risk.percentile, abs=0.01)


def test_sr_identifies_the_algorithm_and_the_observer_device(sr, pred):
    sha = pred.model["sha256"]
    params = [i.TextValue for i in _items(sr, "TEXT") if _name(i) == "111002"]
    names = {i.TextValue for i in _items(sr, "TEXT") if _name(i) == "111001"}
    versions = {i.TextValue for i in _items(sr, "TEXT") if _name(i) == "111003"}
    assert f"weights_sha256={sha}" in params
    assert names == {pred.model["name"]} and versions == {pred.model["version"]}
    (device,) = [c for c in sr.content.get_observer_contexts() if c.observer_type.value == "121007"]
    uid_items = [i for i in _items(sr, "UIDREF") if _name(i) == "121012"]  # Device Observer UID
    assert uid_items and device is not None


def test_sr_references_every_source_instance(sr, sources):
    expected = {(s.SOPClassUID, s.SOPInstanceUID) for s in sources}
    assert len(expected) == 48
    assert _evidence_uids(sr) == expected
    library = {
        (
            i.ReferencedSOPSequence[0].ReferencedSOPClassUID,
            i.ReferencedSOPSequence[0].ReferencedSOPInstanceUID,
        )
        for i in _items(sr, "IMAGE")
    }
    assert library == expected
    (series,) = sr.CurrentRequestedProcedureEvidenceSequence[0].ReferencedSeriesSequence
    assert series.SeriesInstanceUID == sources[0].SeriesInstanceUID


def test_sr_carries_the_disclaimer(sr):
    texts = [i.TextValue for i in _items(sr, "TEXT") if _name(i) == "121106"]
    assert any("not for clinical use" in t for t in texts)


def test_sr_validates_with_dciodvfy(exported):
    (path,) = exported["dicom_sr"]
    assert _dciodvfy_errors(path) == []


def test_reexport_gives_the_same_uids(pred, exported, tmp_path):
    again = medfuse.export(pred, tmp_path, formats=FORMATS)
    for fmt in FORMATS:
        for a, b in zip(exported[fmt], again[fmt], strict=True):
            da, db = pydicom.dcmread(a), pydicom.dcmread(b)
            assert (da.SeriesInstanceUID, da.SOPInstanceUID) == (
                db.SeriesInstanceUID,
                db.SOPInstanceUID,
            )


def test_rle_source_sr(model):
    """chest_ct_0002 is RLE-compressed: the SR needs its headers only."""
    case = SAMPLES / "chest_ct_0002"
    pred = medfuse.predict(
        model, (medfuse.read_study(case), medfuse.read_report(case / "report.txt"))
    )
    sources = [pydicom.dcmread(f, stop_before_pixels=True) for f in pred.case.volume.source_files]
    assert sources[0].file_meta.TransferSyntaxUID == pydicom.uid.RLELossless
    sr = dicom_sr.build_sr(pred, ExportOptions())
    assert sr.StudyInstanceUID == sources[0].StudyInstanceUID
    assert _evidence_uids(sr) == {(s.SOPClassUID, s.SOPInstanceUID) for s in sources}


def test_sr_equals_highdicoms_own_build(pred, sources):
    """``build_sr`` adds the Image Library after highdicom has built the document: the file
    must be the one highdicom writes when given the whole content tree, byte for byte."""
    doc = dicom_sr.build_sr(pred, ExportOptions())
    root = pydicom.Dataset()
    for kw in ("ConceptNameCodeSequence", "ContentTemplateSequence", "ValueType"):
        root[kw] = doc[kw]
    root.ContinuityOfContent, root.ContentSequence = doc.ContinuityOfContent, doc.ContentSequence
    names = [item.ConceptNameCodeSequence[0].CodeMeaning for item in root.ContentSequence]
    assert names[-3:] == ["Image Library", "Imaging Measurements", "Qualitative Evaluations"]
    direct = hd.sr.Comprehensive3DSR(
        evidence=sources,
        content=root,
        series_instance_uid=doc.SeriesInstanceUID,
        series_number=doc.SeriesNumber,
        sop_instance_uid=doc.SOPInstanceUID,
        instance_number=doc.InstanceNumber,
        manufacturer=doc.Manufacturer,
        is_complete=False,
        is_final=False,
        is_verified=False,
        series_description=doc.SeriesDescription,
        coding_schemes=[
            hd.coding_schemes.CodingSchemeIdentificationItem(
                dicom_sr.PRIVATE_SCHEME, name=dicom_sr.PRIVATE_SCHEME_NAME
            )
        ],
        manufacturer_model_name=doc.ManufacturerModelName,
        software_versions=doc.SoftwareVersions,
        device_serial_number=doc.DeviceSerialNumber,
    )
    direct.PreliminaryFlag = "PRELIMINARY"
    for kw in ("ContentDate", "ContentTime", "InstanceCreationDate", "InstanceCreationTime"):
        doc[kw] = direct[kw]  # the clock at each build
    for ours, theirs in zip(
        doc.ContributingEquipmentSequence, direct.ContributingEquipmentSequence, strict=True
    ):
        if "ContributionDateTime" in theirs:
            ours.ContributionDateTime = theirs.ContributionDateTime
    written = []
    for ds in (doc, direct):
        buf = io.BytesIO()
        ds.save_as(buf, enforce_file_format=True)
        written.append(buf.getvalue())
    assert written[0] == written[1]


# -- Parametric Map ---------------------------------------------------------------------------------
def test_saliency_map_overlays_the_source(pred, exported, sources):
    paths = exported["dicom_saliency"]
    maps = {s.label: s for s in medfuse.export.saliency_maps(pred, ExportOptions())}
    assert [p.name for p in paths] == [f"{label}.dcm" for label in maps]
    by_position = {
        tuple(np.round(np.array(s.ImagePositionPatient, float), 3)): s.SOPInstanceUID
        for s in sources
    }
    for path in paths:
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        assert ds.SOPClassUID == "1.2.840.10008.5.1.4.1.1.30"  # Parametric Map
        assert ds.StudyInstanceUID == sources[0].StudyInstanceUID
        assert ds.FrameOfReferenceUID == sources[0].FrameOfReferenceUID
        assert ds.SeriesInstanceUID not in {s.SeriesInstanceUID for s in sources}
        assert ds.PatientID == sources[0].PatientID
        full = pydicom.dcmread(path)
        assert (full.BitsAllocated, full.PixelRepresentation) == (16, 0) and "PixelData" in full
        assert (ds.Rows, ds.Columns, int(ds.NumberOfFrames)) == (88, 112, 48)
        ((lut, (affine, values, derived)),) = _pm_volumes(path).items()
        sal = maps[path.stem]
        assert lut == dicom_saliency.lut_label(sal.label)
        np.testing.assert_allclose(affine, sal.original.affine, atol=1e-3)
        np.testing.assert_allclose(affine, pred.case.volume.affine, atol=1e-3)
        _assert_within_a_step(values, sal.original.array)
        # each frame derives from the source slice at the same position
        positions = [affine @ np.array([0, 0, k, 1.0]) for k in range(values.shape[2])]
        lps = [tuple(np.round((LPS_TO_RAS @ p)[:3], 3)) for p in positions]
        assert derived == [by_position[p] for p in lps]
        rwvm = ds.SharedFunctionalGroupsSequence[0].RealWorldValueMappingSequence[0]
        assert rwvm.LUTExplanation == f"{sal.method} saliency: {sal.label}"
        assert rwvm.QuantityDefinitionSequence[0].ConceptCodeSequence[0].CodeValue == "130404"
        assert "not for clinical use" in ds.SeriesDescription
        assert _dciodvfy_errors(path) == []


def test_several_labels_one_series(pred, tmp_path):
    paths = medfuse.export(
        pred, tmp_path, formats=["dicom_saliency"], options={"saliency_labels": MULTI}
    )["dicom_saliency"]
    assert [p.name for p in paths] == [f"{label}.dcm" for label in MULTI]
    dss = [pydicom.dcmread(p) for p in paths]
    assert len({d.SeriesInstanceUID for d in dss}) == 1
    assert len({d.SOPInstanceUID for d in dss}) == 3
    assert [int(d.InstanceNumber) for d in dss] == [1, 2, 3]
    for label, path in zip(MULTI, paths, strict=True):
        ((lut, (_, values, _)),) = _pm_volumes(path).items()
        assert lut == label[:16]
        _assert_within_a_step(values, pred.explanation.get_saliency(label).original.array)
    assert _dciodvfy_errors(paths[-1]) == []  # a retargeted instance


#: set per build (clock times, a new UID per instance; pixels: a buffer, compared once written)
_PER_BUILD = {
    "InstanceCreationTime",
    "ContentTime",
    "ContributionDateTime",
    "DimensionOrganizationUID",
    "PixelData",
    # recomputed by pydicom on every write; highdicom sets it at build time, a saved copy not
    "FileMetaInformationGroupLength",
}


def _differences(a, b, where: str = "") -> list[str]:
    """Keywords (with their item path) whose values differ between datasets ``a`` and ``b``."""
    out = [f"{where}{e.keyword}" for e in b if e.tag not in a]
    for e in a:
        if e.keyword in _PER_BUILD:
            continue
        if e.tag not in b:
            out.append(f"{where}{e.keyword}")
        elif e.VR == "SQ":
            f = b[e.tag].value
            if len(e.value) != len(f):
                out.append(f"{where}{e.keyword}")
            for i, (u, v) in enumerate(zip(e.value, f, strict=False)):
                out += _differences(u, v, f"{where}{e.keyword}[{i}].")
        elif e.value != b[e.tag].value:
            out.append(f"{where}{e.keyword}")
    return out


@pytest.mark.parametrize("compression", ["jpeg-ls", "none"])
def test_retargeted_parametric_map_equals_highdicoms_own(pred, compression):
    """The second and later maps of an export are the first one with what differs replaced:
    the result must be what highdicom builds for that label directly."""
    first, second = (pred.explanation.get_saliency(label) for label in MULTI[:2])
    opts = ExportOptions(dicom_saliency_compression=compression)
    series = "1.2.826.0.1.3680043.10.511.3.1"
    pm = dicom_saliency.build_parametric_map(pred, first, opts, series_instance_uid=series)
    dicom_saliency.retarget_parametric_map(pm, pred, second, instance_number=2)
    direct = dicom_saliency.build_parametric_map(
        pred, second, opts, series_instance_uid=series, instance_number=2
    )
    _assert_same_instance(pm, direct)


def _assert_same_instance(pm, direct):
    assert _differences(pm, direct) == []
    assert _differences(pm.file_meta, direct.file_meta) == []
    written = []
    for ds in (pm, direct):  # the retargeted map's pixels are a buffer over the map
        buf = io.BytesIO()
        ds.save_as(buf, enforce_file_format=True)
        written.append(pydicom.dcmread(io.BytesIO(buf.getvalue())).PixelData)
    assert written[0] == written[1], "different pixel data"


@pytest.mark.parametrize("compression", ["jpeg-ls", "none"])
def test_maps_written_with_frame_groups_encoded_once_are_pydicoms_files(pred, compression):
    """The exporter encodes the per-frame functional groups once per study and writes the
    bytes into every map: each file is the one ``save_as`` writes, byte for byte, the second
    map's with the first map's encoding."""
    first, second = (pred.explanation.get_saliency(label) for label in MULTI[:2])
    opts = ExportOptions(dicom_saliency_compression=compression)
    series = "1.2.826.0.1.3680043.10.511.3.1"
    pm = dicom_saliency.build_parametric_map(pred, first, opts, series_instance_uid=series)
    groups = dicom_saliency.encoded_frame_groups(pm)
    for sal in (first, second):
        if sal is second:
            dicom_saliency.retarget_parametric_map(pm, pred, second, instance_number=2)
        ours, theirs = io.BytesIO(), io.BytesIO()
        dicom_saliency.save_map(pm, ours, groups)
        pm.save_as(theirs, enforce_file_format=True)
        assert ours.getvalue() == theirs.getvalue()
        assert pydicom.dcmread(io.BytesIO(ours.getvalue())).InstanceNumber == (sal is second) + 1


@pytest.mark.parametrize("compression", ["jpeg-ls", "none"])
def test_prepared_parametric_map_equals_highdicoms_own(pred, compression):
    """A map built from the source series alone, before the prediction (what ``medfuse run``
    does while the model runs), retargeted to the first label: what highdicom builds for that
    label directly. It is taken once, and only for the same volume, model and options."""
    first = pred.explanation.get_saliency(MULTI[0])
    opts = ExportOptions(dicom_saliency_compression=compression)
    series = "1.2.826.0.1.3680043.10.511.3.1"

    def prepared(volume, model):
        ctx = ExportContext(opts, volume=volume, model=model)
        ctx.prepared["dicom_saliency"] = dicom_saliency.prepare(ctx)
        return ctx

    other_model = prepared(pred.case.volume, dict(pred.model, sha256="0" * 64))
    assert dicom_saliency._take_template(pred, opts, other_model) is None
    copy = dataclasses.replace(pred.case.volume)  # the same series, another volume object
    assert dicom_saliency._take_template(pred, opts, prepared(copy, pred.model)) is None
    ctx = prepared(pred.case.volume, pred.model)
    part = dicom_saliency._take_template(pred, opts, ctx)
    assert part is not None and dicom_saliency._take_template(pred, opts, ctx) is None
    pm = part.pm
    assert part.frame_groups == dicom_saliency.encoded_frame_groups(pm)
    dicom_saliency.retarget_parametric_map(
        pm, pred, first, instance_number=1, series_instance_uid=series
    )
    direct = dicom_saliency.build_parametric_map(pred, first, opts, series_instance_uid=series)
    _assert_same_instance(pm, direct)


def test_map_on_the_source_grid_takes_its_geometry_from_the_sources(pred, sources, monkeypatch):
    """When every frame lies on a source instance, highdicom is not given the planes' geometry
    (it would match each frame against every source, and then use the sources' own): the map is
    the one built with the geometry given, element for element and pixel for pixel."""
    sal = pred.explanation.get_saliency(MULTI[0])
    opts = ExportOptions()
    series = "1.2.826.0.1.3680043.10.511.3.1"
    geom = dicom_saliency.plane_geometry(sal.original.affine, int(sal.original.shape[2]))
    shape = tuple(sal.original.shape[1::-1])
    assert dicom_saliency._frames_on_sources(sources, geom, shape)
    fast = dicom_saliency.build_parametric_map(pred, sal, opts, series_instance_uid=series)
    monkeypatch.setattr(dicom_saliency, "_frames_on_sources", lambda *args: False)
    given = dicom_saliency.build_parametric_map(pred, sal, opts, series_instance_uid=series)
    _assert_same_instance(fast, given)


def test_frames_off_the_sources_are_given_their_geometry(pred, sources):
    """A grid that is not the sources' own (shifted, resampled, fewer slices, another frame
    size, a source without geometry) is given to highdicom as computed."""
    sal = pred.explanation.get_saliency(MULTI[0])
    affine, n = sal.original.affine, int(sal.original.shape[2])
    shape = tuple(sal.original.shape[1::-1])
    on = dicom_saliency._frames_on_sources
    geom = dicom_saliency.plane_geometry(affine, n)
    shifted = affine.copy()
    shifted[:3, 3] += [0.0, 0.0, 0.01]  # 0.01 mm: highdicom would match it, it is not the same
    finer = affine @ np.diag([0.5, 1.0, 1.0, 1.0])
    assert not on(sources, dicom_saliency.plane_geometry(shifted, n), shape)
    assert not on(sources, dicom_saliency.plane_geometry(finer, n), shape)
    assert not on(sources[:-1], geom, shape)
    assert not on(sources, geom, (shape[0], shape[1] + 1))
    bare = [copy.deepcopy(ds) for ds in sources]
    del bare[3].ImagePositionPatient
    assert not on(bare, geom, shape)


def _dcmtk_decoded(path: Path, tmp_path: Path) -> bytes | None:
    """PixelData of ``path`` decompressed by dcmtk's ``dcmdjpls`` (None without dcmtk)."""
    exe = shutil.which("dcmdjpls")
    if exe is None:
        return None
    out = tmp_path / f"{path.stem}_dcmtk.dcm"
    run = subprocess.run([exe, str(path), str(out)], capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    return pydicom.dcmread(out).PixelData


def test_jpeg_ls_parametric_maps_store_the_uncompressed_values(pred, tmp_path):
    """The default JPEG-LS Lossless maps (the first built by highdicom, the others retargeted)
    decode, with pydicom, CharLS and dcmtk alike, to exactly the PixelData of the same maps
    written uncompressed; they validate and read back with highdicom."""
    opts = {"saliency_labels": MULTI}
    jls = medfuse.export(pred, tmp_path / "jls", formats=["dicom_saliency"], options=opts)
    raw = medfuse.export(
        pred,
        tmp_path / "raw",
        formats=["dicom_saliency"],
        options={**opts, "dicom_saliency_compression": "none"},
    )
    for a, b in zip(jls["dicom_saliency"], raw["dicom_saliency"], strict=True):
        da, db = pydicom.dcmread(a), pydicom.dcmread(b)
        assert da.file_meta.TransferSyntaxUID == pydicom.uid.JPEGLSLossless
        assert db.file_meta.TransferSyntaxUID == pydicom.uid.ExplicitVRLittleEndian
        assert (da.BitsAllocated, da.BitsStored, da.PixelRepresentation) == (16, 16, 0)
        assert da.LossyImageCompression == "00"
        n = int(da.NumberOfFrames)
        fragments = list(pydicom.encaps.generate_frames(da.PixelData, number_of_frames=n))
        assert len(fragments) == n == int(db.NumberOfFrames)
        expected = np.frombuffer(db.PixelData, "<u2").reshape(n, db.Rows, db.Columns)
        decoded = np.stack([jpeg_ls.decode(np.frombuffer(f, np.uint8)) for f in fragments])
        np.testing.assert_array_equal(decoded, expected)  # CharLS
        np.testing.assert_array_equal(da.pixel_array, db.pixel_array)  # pydicom's decoders
        hd.pm.ParametricMap.from_dataset(da)
        dcmtk = _dcmtk_decoded(a, tmp_path)
        if dcmtk is not None:
            assert dcmtk == db.PixelData
        # a diffuse map (emphysema: the whole lung) compresses least, about 2.7x
        assert a.stat().st_size < b.stat().st_size / 2
        assert _dciodvfy_errors(a) == []


def test_jpeg_ls_frames_are_pydicoms_codestream():
    """medfuse's threaded CharLS calls write the codestream that pydicom's pyjpegls encoder
    (which highdicom uses) writes for the same frame, byte for byte: a smooth map, a constant
    frame, noise (compressed larger than the input) and an odd size; and it runs without the
    GIL (else frames would be encoded one at a time)."""
    from highdicom.frame import encode_frame

    from medfuse.export import _jpegls

    assert _jpegls.parallel()
    rng = np.random.default_rng(3)
    y, x = np.mgrid[0:96, 0:128]
    frames = [
        np.round(65535 * np.exp(-((x - 70.0) ** 2 + (y - 40.0) ** 2) / 900)).astype(np.uint16),
        np.zeros((96, 128), np.uint16),
        rng.integers(0, 65536, (64, 80), dtype=np.uint16),
        rng.integers(0, 300, (37, 53), dtype=np.uint16),
    ]
    ours = _jpegls.encode_frames(lambda i: frames[i], range(len(frames)), workers=2)
    for frame, data in zip(frames, ours, strict=True):
        assert data == encode_frame(frame, pydicom.uid.JPEGLSLossless, 16, 16, "MONOCHROME2", 0)
        np.testing.assert_array_equal(jpeg_ls.decode(np.frombuffer(data, np.uint8)), frame)


def test_parametric_map_compression_option_is_checked():
    with pytest.raises(ConfigError, match="dicom_saliency_compression"):
        ExportOptions(dicom_saliency_compression="jpeg2000")
    with pytest.raises(ConfigError, match="dicom_saliency_compression"):
        ExportOptions.from_mapping({"dicom_saliency_compression": "zip"})
    assert ExportOptions().dicom_saliency_compression == "jpeg-ls"
    from medfuse.config import load_workflow

    wf = {"name": "pm", "model": "chest_ct_demo", "export": {"dicom_saliency_compression": "none"}}
    assert load_workflow(wf).export.options().dicom_saliency_compression == "none"
    with pytest.raises(ConfigError, match="dicom_saliency_compression"):
        load_workflow({**wf, "export": {"dicom_saliency_compression": "jpeg2000"}})


def test_sagittal_mr_parametric_map(tmp_path):
    """A real sagittal MR series (slice normal to the patient's right): the map built on its grid
    lands on its slices. The map is hand-made (the MR intensities scaled to [0, 1]): no model
    for MR ships with medfuse."""
    mr_study = medfuse.read_study(SAMPLES / "mr_sag_0001")
    vol = mr_study.volume
    geom = dicom_saliency.plane_geometry(vol.affine, vol.shape[2])
    src = {
        tuple(np.round(np.array(d.ImagePositionPatient, float), 3)): d
        for d in (pydicom.dcmread(f, stop_before_pixels=True) for f in vol.source_files)
    }
    assert {tuple(np.round(p, 3)) for p in geom["positions"]} == set(src)
    first = next(iter(src.values()))
    np.testing.assert_allclose(
        geom["orientation"], np.array(first.ImageOrientationPatient, float), atol=1e-6
    )
    np.testing.assert_allclose(
        geom["pixel_spacing"], np.array(first.PixelSpacing, float), atol=1e-6
    )

    arr = np.asarray(vol.array, np.float32)
    arr = (arr - arr.min()) / (arr.max() - arr.min())
    sal = Saliency(
        "gradcam", "lesion", np.zeros((2, 2, 2), np.float32), np.eye(4), Volume(arr, vol.affine)
    )
    expl = Explanation(
        ["lesion"],
        ["gradcam"],
        {"lesion": 0.9},
        {"lesion": 2.2},
        saliency={"lesion": {"gradcam": sal}},
    )
    pred = Prediction(
        key="mr-sag",
        findings=[FindingPrediction("lesion", 0.9, 0.5, True)],
        risk=None,
        modalities_used=("image",),
        model={"name": "hand-made", "version": "0", "sha256": "0" * 64},
        study_instance_uid=vol.study_instance_uid,
        series_instance_uid=vol.series_instance_uid,
        explanation=expl,
        created="2026-01-01T00:00:00+00:00",
        case=Case(volume=vol, study=mr_study, key="mr-sag"),
    )
    (path,) = medfuse.export(pred, tmp_path, formats=["dicom_saliency"])["dicom_saliency"]
    ((_, (affine, values, _)),) = _pm_volumes(path).items()
    np.testing.assert_allclose(affine, vol.affine, atol=1e-3)
    _assert_within_a_step(values, arr)
    assert _dciodvfy_errors(path) == []


# -- image-only and report-only ---------------------------------------------------------------------
def test_image_only_prediction_exports_both(model, study, tmp_path):
    pred = medfuse.predict(model, (study, None), explain=["gradcam"])
    assert pred.modalities_used == ("image",)
    out = medfuse.export(pred, tmp_path, formats=FORMATS)
    (path,) = out["dicom_sr"]
    sr = hd.sr.srread(path)
    groups = {g.tracking_identifier for g in sr.content.get_image_measurement_groups()}
    assessable = {f.label for f in pred.findings if f.assessable}
    assert groups >= assessable  # a finding not assessable without the report has no group
    assert not groups & {f.label for f in pred.not_assessable}
    assert pred.not_assessable  # the chest model's report-only labels
    comments = " ".join(i.TextValue for i in _items(sr, "TEXT") if _name(i) == "121106")
    assert "image-only" in comments
    for f in pred.not_assessable:
        assert f"Not assessable, left out: {f.label}" in comments
    assert out["dicom_saliency"]
    for p in out["dicom_saliency"]:
        assert _dciodvfy_errors(p) == []


def test_report_only_prediction_is_skipped_with_a_reason(model, report, tmp_path, caplog):
    pred = medfuse.predict(model, (None, report))
    with caplog.at_level(logging.WARNING, logger="medfuse.export.source"):
        out = medfuse.export(pred, tmp_path, formats=FORMATS)
    assert out == {"dicom_sr": [], "dicom_saliency": []}
    assert list(tmp_path.iterdir()) == []
    assert "report-only" in caplog.text and "dicom_sr" in caplog.text
    assert "report-only" in source.dicom_source_problem(pred)
    with pytest.raises(ExportError, match="no DICOM source: report-only"):
        ExportContext.for_prediction(pred, ExportOptions()).source_datasets()


def test_nifti_source_is_skipped(pred, tmp_path, caplog):
    """A volume read from NIfTI has no DICOM instances to reference."""
    nii = tmp_path / "ct.nii.gz"
    pred.case.volume.save(nii)
    vol = read_nifti(nii)
    other = Prediction(
        key="nifti",
        findings=pred.findings,
        risk=pred.risk,
        modalities_used=("image",),
        model=pred.model,
        explanation=pred.explanation,
        case=Case(volume=vol, key="nifti"),
    )
    with caplog.at_level(logging.WARNING, logger="medfuse.export.source"):
        assert dicom_sr.export_dicom_sr(other, tmp_path / "out", ExportOptions()) == []
    assert "not from DICOM" in caplog.text
