"""The de-identification corpus (issue 26): copies of the sample cases and of the real CT / MR
series in ``../shared/data`` whose headers are edited with pydicom as de-identification
pipelines and vendors leave them, each run through ``medfuse run`` (:func:`run_workflow`) with
all seven exporters, each output checked.

Case kinds (:data:`KINDS`), per base series (:data:`BASES`):

* ``as_is``: the series unchanged (the vendor variants of the real data: Siemens mosaics, one
  JPEG Lossless, one JPEG 2000, one a 4D time series of two volumes, Philips enhanced
  multi-frame, prone sagittal MR, the lung CT);
* ``basic_profile``: DICOM PS3.15 Table E.1-1, Basic Application Level Confidentiality Profile:
  PatientName / PatientID replaced (D), the Type 2 identifiers emptied (Z), the identifying
  attributes removed (X, :data:`medfuse.export.deid.REMOVE`, private elements included),
  instance UIDs replaced consistently (U), PatientIdentityRemoved / DeidentificationMethod set;
* ``type2_deleted``: every Type 2 attribute of :data:`TYPE2` deleted instead of emptied;
* ``deleted_<keyword>``: one patient, study, series, equipment or frame-of-reference attribute
  of :data:`ALONE` deleted alone (only where the base has it);
* ``private_removed``: every private element removed;
* ``dates_shifted``: every DA / DT value moved back by :data:`SHIFT_DAYS` days;
* ``uids_remapped``: every instance UID replaced by a new one, consistently across the series
  (the file meta's MediaStorageSOPInstanceUID too);
* ``uids_inconsistent_<study|series|frame>``: the StudyInstanceUID, SeriesInstanceUID or
  FrameOfReferenceUID replaced by a different UID in every slice: a clear error or a split
  (never a study lost to an unexpected exception, never a wrong output).

:func:`run_corpus` runs a list of cases (one ``run_workflow`` per workflow and mode: the model
is loaded once) and returns one :class:`CaseResult` per case; :func:`problems` lists what is
wrong with a result. ``benchmarks/deid_corpus.py`` runs every case and prints the table; the
test suite runs :func:`default_cases`.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import shutil
import subprocess
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pydicom
from corpus import lenient

REPO = Path(__file__).resolve().parents[2]
SAMPLES = REPO / "sample_cases"
SHARED_DICOM = REPO.parent / "shared" / "data" / "dicom"
ALL_FORMATS = ("json", "html", "pdf", "dicom_sr", "dicom_saliency", "nifti", "fhir")

#: base series: name -> (folder, workflow kind, real data?)
BASES: dict[str, tuple[Path, str, bool]] = {
    "chest_ct_0001": (SAMPLES / "chest_ct_0001", "chest", False),
    "chest_ct_0002": (SAMPLES / "chest_ct_0002", "chest", False),
    "chest_ct_0003": (SAMPLES / "chest_ct_0003", "chest", False),
    "mr_sag_0001": (SAMPLES / "mr_sag_0001", "mr", False),
    "lung_ct": (SHARED_DICOM / "lung_ct_dev" / "Lung_Dx-A0002" / "series3_ThoraxRoutine_B40f", "chest", True),
    "sag_t1_prone_HFP": (SHARED_DICOM / "orientation" / "sag_t1_prone_HFP" / "dicom", "mr", True),
    "ts_jpeg_lossless": (SHARED_DICOM / "orientation" / "ts_jpeg_lossless" / "dicom", "mr", True),
    "ts_jpeg2000": (SHARED_DICOM / "orientation" / "ts_jpeg2000" / "dicom", "mr", True),
    "enhanced_philips": (SHARED_DICOM / "orientation" / "enhanced_philips_fieldmap" / "dicom", "mr", True),
    "mosaic_4d": (SHARED_DICOM / "orientation" / "cor_oblique_mosaic" / "dicom", "mr", True),
}  # fmt: skip

#: workflow kind -> (model, input modality, the label explained: one Grad-CAM map per study)
WORKFLOWS = {
    "chest": ("chest_ct_demo", "CT", "pleural_effusion"),
    "mr": ("brain_mr_demo", "MR", "focal_lesion"),
}

#: Type 2 attributes of the CT / MR image IODs (Patient, General Study, General Series, General
#: Equipment, Frame of Reference, General Image, Image Plane, CT / MR Image modules)
TYPE2 = (
    "PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyDate", "StudyTime",
    "ReferringPhysicianName", "StudyID", "AccessionNumber", "SeriesNumber", "Laterality",
    "Manufacturer", "PositionReferenceIndicator", "InstanceNumber", "PatientOrientation",
    "ContentDate", "ContentTime", "SliceThickness", "KVP", "AcquisitionNumber", "EchoTime",
    "EchoTrainLength", "ContrastBolusAgent",
)  # fmt: skip
#: attributes deleted alone (patient, study, series, equipment, frame of reference, image)
ALONE = (
    "PatientName", "PatientID", "PatientBirthDate", "PatientSex", "PatientAge", "PatientSize",
    "PatientWeight", "StudyDate", "StudyTime", "StudyID", "AccessionNumber",
    "ReferringPhysicianName", "StudyDescription", "SeriesDate", "SeriesTime", "SeriesNumber",
    "SeriesDescription", "BodyPartExamined", "ProtocolName", "Manufacturer",
    "ManufacturerModelName", "InstitutionName", "InstitutionAddress", "StationName",
    "InstitutionalDepartmentName", "DeviceSerialNumber", "SoftwareVersions",
    "FrameOfReferenceUID", "PositionReferenceIndicator", "SliceThickness", "SpecificCharacterSet",
    "AcquisitionDate", "ContentDate", "InstanceNumber",
)  # fmt: skip
#: the attributes ``default_cases`` deletes alone (the full list is for the benchmark): the
#: issue's birth date and the Type 1 attribute a parametric map needs (``type2_deleted`` takes
#: the Type 2 ones away together)
ALONE_DEFAULT = ("PatientBirthDate", "FrameOfReferenceUID")
#: PS3.15 Table E.1-1 actions of the basic profile for the attributes it replaces or empties
PROFILE_DUMMY = {"PatientName": "ANONYMOUS", "PatientID": "ANON0001"}
PROFILE_EMPTY = (
    "PatientBirthDate", "PatientSex", "AccessionNumber", "StudyID", "ReferringPhysicianName",
    "StudyDate", "StudyTime", "ContentDate", "ContentTime",
)  # fmt: skip
UID_KEYWORDS = ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID", "FrameOfReferenceUID")
SHIFT_DAYS = 3652
KINDS = (
    "as_is", "basic_profile", "type2_deleted", "private_removed", "dates_shifted",
    "uids_remapped", "uids_inconsistent_study", "uids_inconsistent_series",
    "uids_inconsistent_frame",
)  # fmt: skip
#: kinds whose study may end in a clear error or be split instead of being predicted whole
INCONSISTENT = ("uids_inconsistent_study", "uids_inconsistent_series", "uids_inconsistent_frame")
#: Siemens mosaics: un-tiled with the private CSA image header, which the basic profile removes
MOSAIC_BASES = ("ts_jpeg_lossless", "ts_jpeg2000", "mosaic_4d")


def expected_error(case: Case) -> str | None:
    """Why the case may end in a clear error (or, for the inconsistent UIDs, with the DICOM
    outputs refused with a clear reason) instead of every output: None for every other case."""
    if case.kind in INCONSISTENT:
        return "UIDs inconsistent across the slices: a clear error or a split"
    if case.base in MOSAIC_BASES and case.kind in ("basic_profile", "private_removed"):
        return "a Siemens mosaic is un-tiled with its private CSA image header, removed here"
    return None


@dataclass(frozen=True)
class Case:
    base: str
    kind: str  # one of KINDS, or "deleted_<keyword>"

    @property
    def name(self) -> str:
        return f"{self.base}__{self.kind}"

    @property
    def workflow(self) -> str:
        return BASES[self.base][1]


#: export modes: the options each run uses
MODES = {
    "plain": {},
    "phi": {"include_phi": True},  # the header values read into JSON / HTML / PDF / FHIR
    "deid": {"deidentify": True},  # the DICOM outputs de-identified by medfuse
}


@dataclass
class CaseResult:
    case: Case
    mode: str
    status: str  # ok | partial | error | missing
    reason: str = ""
    error_type: str = ""
    outputs: list[str] = field(default_factory=list)
    failed: dict[str, Any] = field(default_factory=dict)  # format -> {error_type, reason}
    formats_written: list[str] = field(default_factory=list)
    dciodvfy_errors: int = 0
    checks: list[str] = field(default_factory=list)  # what is wrong with the outputs

    @property
    def lost(self) -> bool:
        """The study gave no prediction although it should have (a clear error is allowed only
        where :func:`expected_error` says so)."""
        if self.status in ("ok", "partial"):
            return False
        return not (expected_error(self.case) is not None and self.clear)

    @property
    def clear(self) -> bool:
        """Every error is a clear one: a MedfuseError subclass naming the reason, not an
        internal error."""
        errors = [(self.error_type, self.reason)] if self.status == "error" else []
        errors += [(v.get("error_type", ""), v.get("reason", "")) for v in self.failed.values()]
        return all(
            t not in ("", "Exception") and "internal error" not in r and "Error: " not in r
            for t, r in errors
        )


# -- building the corpus --------------------------------------------------------------------------
def available_bases(real: bool = True) -> list[str]:
    return [
        b for b, (path, _k, is_real) in BASES.items() if path.is_dir() and (real or not is_real)
    ]


def _dicom_files(folder: Path) -> list[Path]:
    files = []
    for p in sorted(folder.rglob("*")):
        if p.is_file():
            with p.open("rb") as fh:
                head = fh.read(132)
            if head[128:132] == b"DICM":
                files.append(p)
    return files


def _first_header(base: str) -> pydicom.Dataset:
    return pydicom.dcmread(_dicom_files(BASES[base][0])[0], stop_before_pixels=True)


def cases_for(
    base: str, kinds: tuple[str, ...] = KINDS, alone: tuple[str, ...] = ALONE
) -> list[Case]:
    """The cases of one base (single-file bases have no inconsistent-UID cases; an attribute
    is deleted alone only where the base has it)."""
    n_files = len(_dicom_files(BASES[base][0]))
    header = _first_header(base)
    out = [Case(base, k) for k in kinds if not (k in INCONSISTENT and n_files < 2)]
    out += [Case(base, f"deleted_{kw}") for kw in alone if kw in header]
    return out


def all_cases() -> list[Case]:
    """Every case of every base present (``benchmarks/deid_corpus.py``)."""
    return [c for b in available_bases() for c in cases_for(b)]


def default_cases(real: bool = True) -> list[Case]:
    """The test suite's subset (the benchmark runs :func:`all_cases`): every kind but ``as_is``
    and the deletions of :data:`ALONE_DEFAULT` on ``chest_ct_0001``, the basic profile on
    ``mr_sag_0001``; each real series as it is (the vendor variants), the Philips enhanced
    multi-frame with its Type 2 attributes deleted and the prone sagittal MR under the basic
    profile."""
    cases = cases_for("chest_ct_0001", KINDS[1:], ALONE_DEFAULT)
    cases.append(Case("mr_sag_0001", "basic_profile"))
    for base in available_bases(real):
        if BASES[base][2]:
            cases.append(Case(base, "as_is"))
    present = set(available_bases(real))
    cases += [c for c in (Case("enhanced_philips", "type2_deleted"),
                          Case("sag_t1_prone_HFP", "basic_profile")) if c.base in present]  # fmt: skip
    return cases


def deid_cases(real: bool = True) -> list[Case]:
    """The cases the test suite also runs with ``--deidentify``."""
    cases = [Case("chest_ct_0001", "basic_profile"), Case("chest_ct_0001", "type2_deleted")]
    if "enhanced_philips" in available_bases(real):
        cases.append(Case("enhanced_philips", "type2_deleted"))
    return cases


def _new_uid() -> str:
    return f"2.25.{uuid.uuid4().int}"


def _shift(value: str, vr: str) -> str:
    text = str(value).strip()
    if len(text) < 8 or not text[:8].isdigit():
        return text
    day = dt.date(int(text[:4]), int(text[4:6]), int(text[6:8])) - dt.timedelta(days=SHIFT_DAYS)
    return day.strftime("%Y%m%d") + text[8:]


def _basic_profile(ds: pydicom.Dataset, uids: dict[str, str]) -> None:
    from medfuse.export.deid import REMOVE

    def walk(item: pydicom.Dataset) -> None:
        for elem in list(item):
            if elem.tag.is_private or elem.keyword in REMOVE:
                del item[elem.tag]
            elif elem.VR == "SQ":
                for sub in elem.value:
                    walk(sub)
            elif elem.VR == "UI" and elem.keyword.endswith("UID") and elem.value:
                values = list(elem.value) if elem.VM > 1 else [elem.value]
                new = [
                    v
                    if str(v).startswith("1.2.840.10008.")
                    else uids.setdefault(str(v), _new_uid())
                    for v in values
                ]
                elem.value = new if elem.VM > 1 else new[0]

    walk(ds)
    for kw, value in PROFILE_DUMMY.items():
        setattr(ds, kw, value)
    for kw in PROFILE_EMPTY:
        if kw in ds:
            setattr(ds, kw, "")
    ds.PatientIdentityRemoved = "YES"
    ds.DeidentificationMethod = "DICOM PS3.15 Basic Application Level Confidentiality Profile"


def _edit_for(case: Case, shared: dict[str, Any]) -> Callable[[pydicom.Dataset], None]:
    """The edit of one slice of the case's series (``shared``: state kept across slices)."""
    kind = case.kind

    def edit(ds: pydicom.Dataset) -> None:
        if kind == "as_is":
            return
        if kind == "basic_profile":
            _basic_profile(ds, shared.setdefault("uids", {}))
        elif kind == "type2_deleted":
            for kw in TYPE2:
                if kw in ds:
                    delattr(ds, kw)
        elif kind.startswith("deleted_"):
            kw = kind[len("deleted_") :]
            if kw in ds:
                delattr(ds, kw)
        elif kind == "private_removed":
            ds.remove_private_tags()
        elif kind == "dates_shifted":
            for elem in ds.iterall():
                if elem.VR in ("DA", "DT") and elem.value and elem.VM == 1:
                    elem.value = _shift(elem.value, elem.VR)
        elif kind == "uids_remapped":
            uids = shared.setdefault("uids", {})
            for elem in ds.iterall():
                remap = elem.keyword in (*UID_KEYWORDS, "ReferencedSOPInstanceUID")
                if remap and elem.VR == "UI" and elem.value and elem.VM == 1:
                    elem.value = uids.setdefault(str(elem.value), _new_uid())
        elif kind in INCONSISTENT:
            kw = {
                "uids_inconsistent_study": "StudyInstanceUID",
                "uids_inconsistent_series": "SeriesInstanceUID",
                "uids_inconsistent_frame": "FrameOfReferenceUID",
            }[kind]
            if kw in ds:
                setattr(ds, kw, _new_uid())  # a different one in every slice
        else:
            raise ValueError(f"unknown case kind {kind!r}")
        if "SOPInstanceUID" in ds and ds.file_meta.get("MediaStorageSOPInstanceUID"):
            ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID

    return edit


def build_case(case: Case, root: Path) -> Path:
    """Write the case's study folder under ``root`` (the base copied, its DICOM files edited;
    the report, if any, copied with it). Returns the folder."""
    src = BASES[case.base][0]
    dst = root / case.name
    if dst.exists():
        shutil.rmtree(dst)
    if (src / "dicom").is_dir():  # a sample case: dicom/ + report.txt + ground_truth.json
        shutil.copytree(src, dst, ignore=shutil.ignore_patterns("ground_truth.json"))
    else:
        shutil.copytree(src, dst / "dicom")
    shared: dict[str, Any] = {}
    with lenient():
        for path in _dicom_files(dst):
            ds = pydicom.dcmread(path)
            _edit_for(case, shared)(ds)
            ds.save_as(path, enforce_file_format=False)
    return dst


# -- running and checking -------------------------------------------------------------------------
def _workflow(kind: str, mode: str, explain: tuple[str, ...]) -> Any:
    from medfuse.config import load_workflow

    model, modality, label = WORKFLOWS[kind]
    return load_workflow(
        {
            "name": f"deid_corpus_{kind}",
            "model": model,
            "input": {"modalities": [modality], "on_nonuniform": "warn"},
            "explain": {"methods": list(explain), "labels": [label]},
            "export": {"formats": list(ALL_FORMATS), **MODES[mode]},
            "run": {"workers": 1},
        }
    )


def run_corpus(
    cases: list[Case],
    root: Path,
    *,
    mode: str = "phi",
    explain: tuple[str, ...] = ("gradcam",),
    dciodvfy: str | None = None,
) -> list[CaseResult]:
    """Build ``cases`` under ``root`` and run them with the export options of ``mode``
    (:data:`MODES`): one ``run_workflow`` per workflow kind (a folder of studies; the model
    loaded once). Every output of every study is checked (:func:`check_outputs`)."""
    from medfuse.workflows import run_workflow

    results = []
    for kind in sorted({c.workflow for c in cases}):
        group = [c for c in cases if c.workflow == kind]
        studies = root / f"{mode}_{kind}_in"
        studies.mkdir(parents=True, exist_ok=True)
        for case in group:
            build_case(case, studies)
        wf = _workflow(kind, mode, explain)
        out = root / f"{mode}_{kind}_out"
        summary = run_workflow(wf, [studies], out)
        results += _results(group, summary.records, out, mode, dciodvfy)
    return results


def _results(
    cases: list[Case], records: list[dict], out: Path, mode: str, dciodvfy: str | None
) -> list[CaseResult]:
    by_name = {Path(r["input"]).name: r for r in records}
    results = []
    for case in cases:
        rec = by_name.get(case.name)
        if rec is None:
            results.append(CaseResult(case, mode, "missing", "no status record"))
            continue
        result = CaseResult(
            case,
            mode,
            rec["status"],
            rec.get("reason", ""),
            rec.get("error_type", ""),
            list(rec.get("outputs", [])),
            dict(rec.get("failed") or {}),
        )
        if rec["status"] in ("ok", "partial"):
            check_outputs(result, out / rec["key"], dciodvfy)
        results.append(result)
    return results


def check_run(root: Path, mode: str, dciodvfy: str | None) -> list[CaseResult]:
    """The results of a corpus run kept under ``root`` (``run_corpus``'s folder), from its
    status lines and outputs, without running it again."""
    from medfuse.workflows import read_status

    results = []
    for out in sorted(root.glob(f"{mode}_*_out")):
        records = list(read_status(out).values())
        cases = []
        for rec in records:
            base, _, kind = Path(rec["input"]).name.partition("__")
            cases.append(Case(base, kind))
        results += _results(cases, records, out, mode, dciodvfy)
    return results


#: the file(s) each format writes
FORMAT_FILES: dict[str, Callable[[str], bool]] = {
    "json": lambda p: p == "prediction.json",
    "html": lambda p: p == "report.html",
    "pdf": lambda p: p == "report.pdf",
    "dicom_sr": lambda p: p == "sr.dcm",
    "dicom_saliency": lambda p: p.startswith("saliency/") and p.endswith(".dcm"),
    "nifti": lambda p: p == "saliency/saliency.nii.gz",
    "fhir": lambda p: p == "fhir.json",
}


def dciodvfy_errors(exe: str, path: Path) -> list[str]:
    run = subprocess.run([exe, str(path)], capture_output=True, text=True, timeout=120)
    return [line for line in (run.stdout + run.stderr).splitlines() if line.startswith("Error")]


def check_outputs(result: CaseResult, folder: Path, dciodvfy: str | None) -> None:
    """Every format wrote its file(s), each file parses, the DICOM ones pass dciodvfy, carry
    the Type 2 patient / study attributes (empty when the source lacks them) and no "None"."""
    import nibabel as nib
    from fhir.resources.R4B.bundle import Bundle
    from pypdf import PdfReader

    from medfuse.export.source import TYPE2_COPIED

    problems = result.checks
    outputs = result.outputs
    result.formats_written = [f for f in ALL_FORMATS if any(FORMAT_FILES[f](p) for p in outputs)]
    problems += [f"{f}: nothing written" for f in ALL_FORMATS if f not in result.formats_written]
    for rel in outputs:
        path = folder / rel
        if not path.is_file():
            problems.append(f"{rel}: listed but absent")
            continue
        try:
            if rel.endswith(".json"):
                doc = json.loads(path.read_text())
                if rel == "fhir.json":
                    Bundle.model_validate(doc)
                if re.search(r'"None"|: None\b', path.read_text()):
                    problems.append(f"{rel}: writes None")
            elif rel.endswith(".html"):
                text = path.read_text()
                HTMLParser().feed(text)
                if "<html" not in text.lower():
                    problems.append(f"{rel}: not an HTML document")
            elif rel.endswith(".pdf"):
                if len(PdfReader(path).pages) < 1:
                    problems.append(f"{rel}: no page")
            elif rel.endswith(".nii.gz"):
                if nib.load(path).get_fdata().size == 0:
                    problems.append(f"{rel}: empty")
            elif rel.endswith(".dcm"):
                ds = pydicom.dcmread(path)
                for kw in TYPE2_COPIED:
                    if kw not in ds:
                        problems.append(f"{rel}: Type 2 {kw} missing")
                if dciodvfy is not None:
                    errors = dciodvfy_errors(dciodvfy, path)
                    result.dciodvfy_errors += len(errors)
                    problems += [f"{rel}: dciodvfy {e}" for e in errors[:3]]
        except Exception as exc:  # any failure to parse an output is the finding
            problems.append(f"{rel}: does not parse ({type(exc).__name__}: {exc})")


def problems(result: CaseResult) -> list[str]:
    """What is wrong with a case's outcome (empty: as required)."""
    if result.lost:
        return [f"study lost ({result.status}): {result.reason}"]
    out = list(result.checks)
    if result.status == "partial":
        if expected_error(result.case) is None or not result.clear:
            out.append(f"partial: {result.reason}")
        else:  # the formats refused with a clear reason wrote nothing, as they should
            out = [c for c in out if not any(c == f"{f}: nothing written" for f in result.failed)]
    elif result.status == "error" and not result.clear:
        out.append(f"unclear error: {result.reason}")
    return out


def table(results: list[CaseResult]) -> str:
    """The corpus table: one row per case and mode, then the totals."""
    lines = [
        f"{'case':58} {'mode':5} {'status':8} {'outputs':>7} {'formats':>7} {'dciodvfy':>8}  lost"
    ]
    for r in results:
        lines.append(
            f"{r.case.name:58} {r.mode:5} {r.status:8} "
            f"{len(r.outputs):7d} {len(r.formats_written):5d}/7 {r.dciodvfy_errors:8d}  "
            f"{'LOST' if r.lost else '-'}"
        )
    lines.append(summary_line(results))
    return "\n".join(lines)


def summary_line(results: list[CaseResult]) -> str:
    cases = {r.case for r in results}
    split = sum(1 for r in results if r.status == "error" and not r.lost)
    bad = sum(1 for r in results if problems(r))
    return (
        f"{len(cases)} corpus cases, {len(results)} runs: "
        f"{sum(r.status == 'ok' for r in results)} ok, "
        f"{sum(r.status == 'partial' for r in results)} partial, "
        f"{split} clear errors where expected, "
        f"outputs written {sum(len(r.outputs) for r in results)}, "
        f"dciodvfy errors {sum(r.dciodvfy_errors for r in results)}, "
        f"runs with problems {bad}, "
        f"studies lost {sum(r.lost for r in results)}"
    )
