"""Privacy: a study full of PHI (written by the synth writer, the identifying tags set with
pydicom) through ``medfuse run`` with the shipped chest CT workflow (every explanation, every
export), logging at DEBUG and network sockets blocked:

* by default no PHI string appears in the logs, stdout / stderr, status.jsonl, prediction.json,
  report.html, the text of report.pdf, fhir.json or saliency.json, and no socket is opened;
* ``--include-phi`` puts them in the human-readable outputs; ``--deidentify`` makes the DICOM
  outputs (SR, parametric map) follow the PS3.15 basic profile with UIDs replaced consistently
  within the output set (dciodvfy: no errors; highdicom reads them back).
"""

from __future__ import annotations

import json
import logging
import shutil
import socket
import subprocess
from pathlib import Path

import numpy as np
import pydicom
import pytest

from medfuse.cli.main import main as cli

REPO = Path(__file__).resolve().parents[2]
WORKFLOW = REPO / "workflows" / "chest_ct_triage.yaml"

PHI = {
    "PatientName": "Qwertyuiop^Zyxwvut",
    "PatientID": "PID8675309XQ",
    "PatientBirthDate": "19470314",
    "PatientAddress": "742 Evergreen Terrace, Springfield",
    "PatientTelephoneNumbers": "555-0199-777",
    "OtherPatientIDs": "OPID99887",
    "AccessionNumber": "ACC55501ZZ",
    "InstitutionName": "Saint Elsewhere Qzxhospital",
    "InstitutionAddress": "1 Hospitalroad, Qzxtown",
    "ReferringPhysicianName": "Drqqq^Referrer",
}
#: what must not be found (parts of the values, as they might be printed)
NEEDLES = ["Qwertyuiop", "Zyxwvut", "8675309", "19470314", "1947-03-14", "Evergreen", "0199-777",
           "OPID99887", "ACC55501", "Elsewhere", "Qzxhospital", "Hospitalroad", "Qzxtown", "Drqqq"]  # fmt: skip


@pytest.fixture(scope="module")
def phi_study(tmp_path_factory) -> Path:
    from medfuse.synth.dicom_write import PatientInfo, write_series
    from medfuse.synth.geometry import make_geometry
    from medfuse.synth.phantom import chest_ct_phantom

    shape, spacing = (64, 56, 24), (6.0, 6.0, 10.0)
    g = make_geometry(shape, spacing, center_lps=(0.0, 0.0, -150.0))
    vol = chest_ct_phantom(shape, spacing, seed=11, geometry=g)
    study = tmp_path_factory.mktemp("phi") / "case_a"
    patient = PatientInfo(
        name=PHI["PatientName"], patient_id=PHI["PatientID"], accession=PHI["AccessionNumber"]
    )
    info = write_series(study / "dicom", vol, g, seed=11, patient=patient)
    for name in info["files"]:
        ds = pydicom.dcmread(study / "dicom" / name)
        for keyword, value in PHI.items():
            setattr(ds, keyword, value)
        del ds.PatientIdentityRemoved, ds.DeidentificationMethod  # a real patient's file
        ds.save_as(study / "dicom" / name)
    report = (REPO / "sample_cases" / "chest_ct_0002" / "report.txt").read_text()
    (study / "report.txt").write_text(report)
    return study


def _workflow(folder: Path, **changes) -> Path:
    """The shipped chest CT workflow (every explanation, every export; lung_lesion and
    smoking_history explained) with one torch thread (the test machines are shared) and
    ``changes`` (section -> keys)."""
    import yaml

    data = yaml.safe_load(WORKFLOW.read_text())
    data.setdefault("run", {})["threads"] = 1
    # an image finding is always explained, so every format has something to write whatever the
    # model calls positive on this phantom (report-only labels get no image map)
    data["explain"]["labels"] = ["lung_lesion", "smoking_history"]
    for section, keys in changes.items():
        data.setdefault(section, {}).update(keys)
    path = folder / "workflow.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def _pdf_text(path: Path) -> str:
    from pypdf import PdfReader

    return "\n".join(page.extract_text() or "" for page in PdfReader(path).pages)


def _texts(out: Path) -> dict[str, str]:
    """Every human-readable output (and status.jsonl) as text."""
    texts = {"status.jsonl": (out / "status.jsonl").read_text()}
    (folder,) = [p for p in out.iterdir() if p.is_dir() and not p.name.startswith(".")]
    for name in ("prediction.json", "report.html", "fhir.json", "saliency/saliency.json"):
        texts[name] = (folder / name).read_text()
    texts["report.pdf"] = _pdf_text(folder / "report.pdf")
    return texts


def _leaks(texts: dict[str, str]) -> list[str]:
    return [f"{needle!r} in {where}" for where, text in texts.items() for needle in NEEDLES
            if needle.lower() in text.lower()]  # fmt: skip


@pytest.fixture
def no_network(monkeypatch):
    """Creating any socket fails (the run must not need one)."""
    attempts = []

    class Blocked(socket.socket):
        def __init__(self, *args, **kwargs):
            attempts.append(args)
            raise OSError("network access is blocked in this test")

    monkeypatch.setattr(socket, "socket", Blocked)
    monkeypatch.setattr(socket, "create_connection", Blocked)
    return attempts


def test_no_phi_in_logs_or_outputs_by_default_and_no_network(
    phi_study, tmp_path, caplog, capsys, no_network
):
    caplog.set_level(logging.DEBUG)
    out = tmp_path / "out"
    wf = _workflow(tmp_path)
    rc = cli(["-vv", "run", str(wf), "-i", str(phi_study), "-o", str(out)])
    printed = capsys.readouterr()
    assert rc == 0, printed.out + printed.err
    assert no_network == [], "a socket was created"
    assert any(r.levelno == logging.DEBUG for r in caplog.records)  # DEBUG logging was on
    status = [json.loads(line) for line in (out / "status.jsonl").read_text().splitlines()]
    assert [r["status"] for r in status] == ["ok"]
    assert len(status[0]["outputs"]) >= 7  # every format wrote its file(s)
    texts = _texts(out)
    texts.update(logs=caplog.text, stdout=printed.out, stderr=printed.err)
    assert not _leaks(texts), _leaks(texts)
    key = status[0]["key"]
    assert key.startswith("study-") and key in texts["report.html"]
    # by default the DICOM outputs belong to the source study (documented): its identity is there
    sr = pydicom.dcmread(out / key / "sr.dcm")
    assert str(sr.PatientName) == PHI["PatientName"]


def test_include_phi_and_deidentify(phi_study, tmp_path, caplog, capsys):
    caplog.set_level(logging.DEBUG)
    out = tmp_path / "out"
    wf = _workflow(tmp_path, explain={"methods": ["gradcam"]})  # the map the DICOM outputs need
    rc = cli(["-vv", "run", str(wf), "-i", str(phi_study), "-o", str(out),
              "--include-phi", "--deidentify"])  # fmt: skip
    printed = capsys.readouterr()
    assert rc == 0, printed.out + printed.err
    folder = out / "case_a"  # readable key with --include-phi
    texts = _texts(out)
    for needle in ("Qwertyuiop", "PID8675309XQ", "ACC55501ZZ", "Elsewhere"):
        assert needle in texts["report.html"] and needle in texts["report.pdf"], needle
    assert "1947" in texts["report.html"] and "1947" in texts["report.pdf"]
    fhir = json.loads(texts["fhir.json"])
    patient = next(
        e["resource"] for e in fhir["entry"] if e["resource"]["resourceType"] == "Patient"
    )
    assert patient["birthDate"] == "1947-03-14" and "Qwertyuiop" in json.dumps(patient)
    assert "ACC55501ZZ" in texts["fhir.json"]
    assert not [n for n in NEEDLES if n in caplog.text + printed.out + printed.err]

    # the DICOM outputs are de-identified: no PHI, no source UID, consistent references
    source = pydicom.dcmread(next((phi_study / "dicom").iterdir()), stop_before_pixels=True)
    source_uids = _source_uids(phi_study)
    pms = sorted((folder / "saliency").glob("*.dcm"))
    dicoms = [folder / "sr.dcm", *pms]
    assert pms, "no parametric map was written"
    for path in dicoms:
        raw = path.read_bytes()
        assert not [n for n in NEEDLES if n.encode() in raw], path
        assert not [u for u in source_uids if u.encode() in raw], f"a source UID in {path}"
        ds = pydicom.dcmread(path)
        assert ds.PatientIdentityRemoved == "YES" and str(ds.PatientName) == "case_a"
        assert ds.DeidentificationMethodCodeSequence[0].CodeValue == "113100"
        assert ds.PatientBirthDate == "" and ds.AccessionNumber == "" and ds.StudyDate == ""
        assert "InstitutionName" not in str(ds) and not list(_private(ds))
        assert _dciodvfy_errors(path) == []
    import highdicom as hd

    sr = hd.sr.srread(folder / "sr.dcm")
    maps = [pydicom.dcmread(p) for p in pms]
    for pm in maps:
        hd.pm.ParametricMap.from_dataset(pm)
    study_uid = sr.StudyInstanceUID
    assert study_uid != source.StudyInstanceUID
    assert {pm.StudyInstanceUID for pm in maps} == {study_uid}
    doc = json.loads(texts["prediction.json"])
    assert doc["study_instance_uid"] == study_uid
    assert f"urn:oid:{study_uid}" in texts["fhir.json"]
    assert source.StudyInstanceUID not in texts["fhir.json"] + texts["prediction.json"]
    # the SR's evidence and image library name the instances the maps were derived from
    evidence = {
        ref.ReferencedSOPInstanceUID
        for st in sr.CurrentRequestedProcedureEvidenceSequence
        for se in st.ReferencedSeriesSequence
        for ref in se.ReferencedSOPSequence
    }
    (evidence_series,) = {
        se.SeriesInstanceUID
        for st in sr.CurrentRequestedProcedureEvidenceSequence
        for se in st.ReferencedSeriesSequence
    }
    library = {item.ReferencedSOPSequence[0].ReferencedSOPInstanceUID for item in _images(sr)}
    for pm in maps:
        derived = {
            f.DerivationImageSequence[0].SourceImageSequence[0].ReferencedSOPInstanceUID
            for f in pm.PerFrameFunctionalGroupsSequence
        }
        assert derived == evidence == library and len(evidence) == 24
        assert pm.ReferencedSeriesSequence[0].SeriesInstanceUID == evidence_series
        assert doc["series_instance_uid"] == evidence_series
    assert len({pm.FrameOfReferenceUID for pm in maps}) == 1
    assert maps[0].FrameOfReferenceUID != source.FrameOfReferenceUID
    # the geometry survives: the map's frames lie where the source slices are
    ipp = np.array(
        maps[0].PerFrameFunctionalGroupsSequence[0].PlanePositionSequence[0].ImagePositionPatient
    )
    positions = [
        np.array(pydicom.dcmread(f, stop_before_pixels=True).ImagePositionPatient, float)
        for f in (phi_study / "dicom").iterdir()
    ]
    assert min(np.linalg.norm(p - ipp) for p in positions) < 1e-3


def _source_uids(study: Path) -> set[str]:
    out = set()
    for f in (study / "dicom").iterdir():
        ds = pydicom.dcmread(f, stop_before_pixels=True)
        out |= {ds.SOPInstanceUID, ds.SeriesInstanceUID, ds.StudyInstanceUID}
        out.add(ds.FrameOfReferenceUID)
    return out


def _private(ds):
    for elem in ds.iterall():
        if elem.tag.is_private:
            yield elem


def _images(sr):
    """IMAGE content items anywhere in the SR content tree."""
    stack = list(sr.ContentSequence)
    while stack:
        item = stack.pop()
        if item.ValueType == "IMAGE":
            yield item
        stack.extend(item.get("ContentSequence", []))


def _dciodvfy_errors(path: Path) -> list[str]:
    exe = shutil.which("dciodvfy")
    if exe is None:
        return []  # validated where dicom3tools is installed (see test_export_dicom)
    run = subprocess.run([exe, str(path)], capture_output=True, text=True, timeout=120)
    return [line for line in (run.stdout + run.stderr).splitlines() if line.startswith("Error")]
