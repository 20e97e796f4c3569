"""Fuzzing helpers shared by the short hypothesis tests (``test_fuzz.py``) and the long-run
harness (``fuzz_long.py``): byte mutators for DICOM files, random report inputs, random
workflow mappings / YAML, and the property each run must satisfy.

Every input must end in a :class:`~medfuse.errors.MedfuseError` that names a file and a reason,
or in a result that holds up:

* DICOM: a volume whose values and affine are finite, and in which every slice that comes from
  an *unmutated* file is exactly that file's slice of the reference volume, at the position its
  header gives (within :data:`POSITION_MM`; a mutated file may legitimately change its own
  slice's values, and a mutated first slice may move the origin within that tolerance). Fewer slices
  than the reference only with a warning that says why, or when the study records the mutated
  file as skipped (with its reason) or as another series.
* reports: a Report with non-empty text and no control characters left;
* workflows: a valid :class:`~medfuse.config.Workflow`.
"""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "DicomFuzzer",
    "check_report",
    "fuzz_report_once",
    "fuzz_workflow_once",
    "mutate",
    "random_report_input",
    "random_workflow",
]

#: how far (mm) a slice may lie from where its header puts it: the drift the reader accepts
#: without calling a stack sheared is 0.01 mm + 0.001 × slices × step
POSITION_MM = 0.05

INTERESTING = [b"\x00", b"\xff", b"\x7f", b"\x80", b"\\", b"-", b".", b"9", b"e", b" ", b"\xfe\xff",
               b"\xff\xff\xff\xff", b"\x00\x00\x00\x00", b"\xff\xff\xff\x7f", b"UN", b"SQ", b"OB",
               b"\xe0\x7f\x10\x00", b"\xfe\xff\x00\xe0", b"\xfe\xff\xdd\xe0", b"nan", b"inf",
               b"1e308", b"-0"]  # fmt: skip


# -- byte mutators ---------------------------------------------------------------------------------
def _offset(rng: random.Random, size: int, hot: int) -> int:
    """An offset, biased (3 in 4) towards the header ``[0, hot)``."""
    if size <= 0:
        return 0
    if hot > 0 and rng.random() < 0.75:
        return rng.randrange(min(hot, size))
    return rng.randrange(size)


def mutate(data: bytes, rng: random.Random, hot: int = 0) -> tuple[bytes, str]:
    """1–4 random mutations of ``data``; returns (bytes, a description of what was done)."""
    buf = bytearray(data)
    done = []
    for _ in range(rng.choice((1, 1, 1, 2, 3, 4))):
        kind = rng.choice(
            ("flip", "byte", "interesting", "truncate", "insert", "delete", "duplicate", "digits")
        )
        at = _offset(rng, len(buf), hot)
        if kind == "flip" and buf:
            buf[at] ^= 1 << rng.randrange(8)
        elif kind == "byte" and buf:
            buf[at] = rng.randrange(256)
        elif kind == "interesting":
            val = rng.choice(INTERESTING)
            buf[at : at + len(val)] = val
        elif kind == "truncate":
            del buf[at:]
        elif kind == "insert":
            buf[at:at] = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 64)))
        elif kind == "delete":
            del buf[at : at + rng.randrange(1, 64)]
        elif kind == "duplicate":
            n = rng.randrange(1, 256)
            buf[at:at] = buf[at : at + n]
        elif kind == "digits" and buf:  # rewrite a number inside a DS / IS value
            while at < len(buf) and not (48 <= buf[at] <= 57):
                at += 1
            if at < len(buf):
                buf[at] = rng.choice(b"0123456789.-e\\ ")
        done.append(f"{kind}@{at}")
    return bytes(buf), ",".join(done)


# -- DICOM ----------------------------------------------------------------------------------------------
class DicomFuzzer:
    """A copy of a base series in ``work``; :meth:`run` mutates one of its files (restored
    afterwards), reads the folder with ``read_study(...).load()`` and checks the property."""

    def __init__(
        self, base: Path, reference: Any, work: Path, order: list[str], n: int | None = None
    ):
        from medfuse.io.fastheader import read_fast_header

        self.base, self.folder = base, work
        self.order = order[:n]  # file names in slice order (the first n slices of the base)
        self.ref_array = reference.array[:, :, : len(self.order)]
        if work.exists():
            shutil.rmtree(work)
        work.mkdir(parents=True)
        for name in self.order:
            shutil.copyfile(base / name, work / name)
        self.original = {n: (base / n).read_bytes() for n in order}
        self.hot = {}
        for n in order:
            hdr = read_fast_header(base / n)
            at = self.original[n].rfind(b"\xe0\x7f\x10\x00")
            self.hot[n] = hdr.pixel_offset if hdr is not None and hdr.pixel_offset else max(at, 0)
        self.positions = {}  # RAS position of each file's first voxel
        import pydicom

        for n in order:
            ds = pydicom.dcmread(base / n, stop_before_pixels=True)
            self.positions[n] = np.array([float(v) for v in ds.ImagePositionPatient]) * [-1, -1, 1]

    def run(self, rng: random.Random) -> tuple[str, str]:
        """One fuzz case: (outcome, what was mutated). Raises AssertionError on a violation."""
        name = rng.choice(self.order)
        data, how = mutate(self.original[name], rng, self.hot[name] + 64)
        victim = self.folder / name
        victim.write_bytes(data)
        try:
            return self.check(name), f"{name}: {how}"
        except AssertionError as exc:
            raise AssertionError(f"{self.base.name}/{name} ({how}): {exc}") from None
        finally:
            victim.write_bytes(self.original[name])

    def check(self, mutated: str) -> str:
        from medfuse.errors import MedfuseError
        from medfuse.io.study import read_study

        try:
            study = read_study(self.folder)
            vol = study.load()
        except MedfuseError as exc:
            assert exc.path and str(exc.reason).strip(), f"error without file or reason: {exc!r}"
            return f"error:{type(exc).__name__}"
        # a mutated file that became another series, or was skipped, is recorded in the study
        recorded = any(Path(f).name == mutated for f, _r in study.skipped) or any(
            mutated in {Path(f).name for f in s.files} for s in study.series if not s.selected
        )
        problems = self.check_volume(vol, list(study.warnings), mutated, recorded)
        assert not problems, "; ".join(problems)
        return "volume"

    def check_volume(
        self, vol: Any, study_warnings: list[str], mutated: str, recorded: bool = False
    ) -> list[str]:
        if not np.all(np.isfinite(vol.array)):
            return ["non-finite voxel values"]
        aff = vol.affine
        if not np.all(np.isfinite(aff)) or abs(np.linalg.det(aff[:3, :3])) < 1e-9:
            return ["affine not finite or singular"]
        if vol.array.ndim != 3 or vol.array.shape[:2] != self.ref_array.shape[:2]:
            return [f"shape {vol.array.shape}, reference {self.ref_array.shape}"]
        inv = np.linalg.inv(aff)
        used = {Path(f).name for f in vol.source_files}
        problems = []
        for k_ref, name in enumerate(self.order):
            if name == mutated or name not in used:
                continue
            ijk = inv @ np.array([*self.positions[name], 1.0])
            k = round(float(ijk[2]))
            off = float(
                np.linalg.norm(aff[:3] @ np.array([0.0, 0.0, k, 1.0]) - self.positions[name])
            )
            # POSITION_MM: the reader's own tolerance (a mutated first slice may move the origin
            # within the sideways drift it accepts without calling the stack sheared)
            if off > POSITION_MM or not 0 <= k < vol.array.shape[2]:
                problems.append(f"{name} is {off:.3g} mm from slice {k} of the volume ({ijk[:3]})")
            elif not np.array_equal(vol.array[:, :, k], self.ref_array[:, :, k_ref]):
                problems.append(f"{name}: slice {k} differs from its reference slice")
        unmutated = [n for n in self.order if n != mutated]
        missing = [n for n in unmutated if n not in used]
        if missing:
            problems.append(f"unmutated file(s) {missing} left out of the volume")
        if vol.array.shape[2] < len(self.order) and not recorded:
            why = ("left out", "duplicate", "incompatible")
            if not any(w in x for x in [*vol.warnings, *study_warnings] for w in why):
                problems.append(f"{vol.array.shape[2]} of {len(self.order)} slices, no warning")
        if vol.array.shape[2] > len(self.order):
            problems.append(f"{vol.array.shape[2]} slices from {len(self.order)} files")
        return problems


# -- reports ------------------------------------------------------------------------------------------
_SNIPPETS = ["FINDINGS:", "IMPRESSION:", "No pleural effusion.", "Cardiomegaly.", "<p>", "</p>",
             "<script>alert(1)</script>", "&amp;", "&#0;", "\x00", "\r\n", "\u202e", "\u200f",
             "النتائج", "ממצאים", "所见", "😀", "\ufffd", "\t", "\x0b", "\x1b[31m", "{", "}", '"',
             ",", "\\", "no evidence of", "not", "?", "mm", "12", "cm", "\n\n\n"]  # fmt: skip


def random_report_input(rng: random.Random, good: str) -> tuple[Any, str]:
    """A report source for ``read_report``: (bytes | mapping | (suffix, bytes), description)."""
    kind = rng.choice(("mutated", "snippets", "random_bytes", "json", "fhir", "csv", "mapping"))
    if kind == "mutated":
        data, how = mutate(good.encode("utf-8"), rng)
        return ("txt", data), f"mutated report: {how}"
    if kind == "snippets":
        text = "".join(rng.choice(_SNIPPETS) + rng.choice(("", " ", "\n")) for _ in range(
            rng.randrange(0, 60)))  # fmt: skip
        return ("txt", text.encode("utf-8", "surrogatepass")), "snippets"
    if kind == "random_bytes":
        return ("txt", bytes(rng.randrange(256) for _ in range(rng.randrange(0, 600)))), "bytes"
    if kind == "json":
        obj = _random_json(rng, 4)
        text = json.dumps(obj)
        data, how = mutate(text.encode(), rng) if rng.random() < 0.5 else (text.encode(), "")
        return ("json", data), f"json {how}"
    if kind == "fhir":
        form: Any = [{"contentType": rng.choice(["text/plain", "application/pdf", 3]),
                      "data": rng.choice(["RklORElOR1M6IG5vIGVmZnVzaW9u", "!!", "", None, 7])}]  # fmt: skip
        obj = {"resourceType": "DiagnosticReport",
               "presentedForm": rng.choice([form, "x", [1], None, {}]),
               "text": rng.choice([{"div": "<div>ok</div>"}, "x", None]),
               "conclusion": rng.choice(["normal", None, ["a"], 3])}  # fmt: skip
        return ("json", json.dumps(obj).encode()), "fhir"
    if kind == "csv":
        header = rng.choice(["text", "report,id", "id;narrative", "", "a\tb"])
        rows = [rng.choice([good[:80], "", '"', "a,b", "\x00", "x" * 300]) for _ in range(
            rng.randrange(0, 3))]  # fmt: skip
        return ("csv", ("\n".join([header, *rows]) + "\n").encode("utf-8")), "csv"
    return _random_json(rng, 2, mapping=True), "mapping"


def _random_json(rng: random.Random, depth: int, mapping: bool = False) -> Any:
    keys = ["text", "report", "findings", "impression", "id", "resourceType", "x", ""]
    if mapping or (depth > 0 and rng.random() < 0.4):
        return {rng.choice(keys): _random_json(rng, depth - 1) for _ in range(rng.randrange(0, 4))}
    if depth > 0 and rng.random() < 0.2:
        return [_random_json(rng, depth - 1) for _ in range(rng.randrange(0, 3))]
    return rng.choice([None, True, 0, -1.5, 1e308, "", "FINDINGS: normal.", "\x00", "<b>x</b>",
                       "\u202eabc", "a" * 100])  # fmt: skip


def fuzz_report_once(rng: random.Random, good: str, work: Path, parse: bool) -> tuple[str, str]:
    """One report case: (outcome, description); AssertionError on a violation."""
    from medfuse.errors import MedfuseError
    from medfuse.io.reports import read_report

    source, how = random_report_input(rng, good)
    if isinstance(source, tuple):
        suffix, data = source
        if rng.random() < 0.3:
            src: Any = data
        else:
            src = work / f"r.{suffix}"
            src.write_bytes(data)
    else:
        src = source
    try:
        rep = read_report(src, parse=parse)
    except MedfuseError as exc:
        assert str(exc.reason).strip(), f"error without a reason: {exc!r}"
        if isinstance(src, Path):
            assert exc.path, f"error names no file: {exc!r}"
        return f"error:{type(exc).__name__}", how
    problems = check_report(rep)
    assert not problems, "; ".join(problems)
    return "report", how


def check_report(rep: Any) -> list[str]:
    problems = []
    if not rep.text.strip():
        problems.append("empty report text")
    bad = [c for c in rep.text if ord(c) < 32 and c not in "\n\t"]
    if bad:
        problems.append(f"control characters left: {bad[:3]}")
    return problems


# -- workflows ---------------------------------------------------------------------------------------
SCHEMA_KEYS = {
    "version": [1, 2, "1", None],
    "name": ["t", "a.b-c+d", "", "../x", "a" * 70, 5],
    "description": ["", "x", ["x"], None],
    "model": ["chest_ct_demo", "", "../../etc", 3, None, "x" * 2000],
    "input": {
        "modalities": [["CT"], ["MR", "CT"], ["PT"], "CT", []],
        "series": [None, "1.2.3", 7],
        "on_nonuniform": ["error", "warn", "x", True],
        "on_shear": ["affine", "error", 0],
        "on_bad_file": ["error", "skip", None],
        "max_volume_mib": [1, 16384, 0, -1, 10**9, "big", 1.5],
    },
    "reports": {
        "filenames": [["report.txt"], ["../x"], "report.txt", [""], ["a/b"], []],
        "folder": [None, "reports", 3],
        "csv": [None, "r.csv", []],
        "id_column": ["accession_number", "", 1],
        "text_column": [None, "text", 2],
        "required": [False, True, "yes", 2],
    },
    "explain": {
        "methods": [[], ["gradcam"], ["eval"], "gradcam", [1], ["gradcam", "occlusion"]],
        "labels": ["positive", None, ["a"], 3, "all"],
        "params": [{}, {"occlusion": {"levels": 2}}, {"x": 1}, [], {"a": {"b": [1]}}],
    },
    "export": {
        "formats": [["json"], ["json", "json"], ["xml"], "json", [], ["../json"]],
        "include_phi": [False, True, "maybe", None],
        "saliency_labels": [None, ["a"], "a", 1],
        "saliency_method": [None, "gradcam", 3],
    },
    "run": {
        "workers": [1, 2, 0, 65, "x", 1.5],
        "threads": [None, 1, 0, 257],
        "device": ["auto", "cpu", "cuda:1", "cuda; rm -rf /", "tpu", 0],
    },
}
_JUNK = [None, True, 0, -1, 1e308, float("nan"), "", "x", "\x00", [], {}, [1, [2, [3]]],
         {"k": {"k": {"k": 1}}}, "!!python/object:os.system", "\u202e", b"bytes"]  # fmt: skip


def random_workflow(rng: random.Random, keys: dict[str, Any] = SCHEMA_KEYS, depth: int = 0) -> Any:
    """A random mapping shaped like a workflow: schema keys with good or bad values, some
    missing, some unknown keys, some junk in place of a section."""
    if depth and rng.random() < 0.1:
        return rng.choice(_JUNK)
    out: dict[Any, Any] = {}
    for key, choices in keys.items():
        if depth == 0 and key in ("name", "model") and rng.random() < 0.9:
            out[key] = choices[0] if rng.random() < 0.8 else rng.choice(choices)
            continue
        if rng.random() < 0.5:
            continue
        if isinstance(choices, dict):
            out[key] = random_workflow(rng, choices, depth + 1)
        else:
            out[key] = rng.choice(choices) if rng.random() < 0.85 else rng.choice(_JUNK)
    for _ in range(rng.choice((0, 0, 0, 1, 2))):
        out[rng.choice(["modle", "extra", "__class__", "base_dir", 1, None, "input.x"])] = (
            rng.choice(_JUNK)
        )
    return out


def fuzz_workflow_once(rng: random.Random, work: Path) -> tuple[str, str]:
    """One workflow case (a mapping, or a YAML file made from one and perhaps mutated)."""
    import yaml

    from medfuse.config import Workflow, load_workflow
    from medfuse.errors import ConfigError

    data = random_workflow(rng)
    src: Any = data
    how = "mapping"
    if rng.random() < 0.3:
        try:
            text = yaml.safe_dump(data, allow_unicode=True).encode("utf-8")
        except yaml.YAMLError:
            text = b"name: x\nmodel: y\n"
        if rng.random() < 0.5:
            text, how = mutate(text, rng)
            how = f"yaml {how}"
        else:
            how = "yaml"
        src = work / "wf.yaml"
        src.write_bytes(text)
    try:
        wf = load_workflow(src)
    except ConfigError as exc:
        assert str(exc.reason).strip(), f"error without a reason: {exc!r}"
        if isinstance(src, Path):
            assert exc.path, f"error names no file: {exc!r}"
        return "error:ConfigError", how
    assert isinstance(wf, Workflow)
    return "valid", how


def base_series(root: Path) -> tuple[dict[str, Path], dict[str, Any], dict[str, list[str]]]:
    """The corpus' base series (from the sample cases), their reference volumes and orders."""
    from corpus import make_bases, reference_volumes

    bases = make_bases(root)
    refs = reference_volumes(bases)
    orders = {n: json.loads((p.parent / f"{n}.order").read_text()) for n, p in bases.items()}
    return bases, refs, orders
