"""Coverage-guided fuzzing with atheris (libFuzzer) — long runs outside CI, not collected by pytest.

    pip install -e ".[fuzz]"                                   # atheris
    .venv/bin/python tests/robustness/atheris_fuzz.py dicom -runs=100000 -max_len=200000
    .venv/bin/python tests/robustness/atheris_fuzz.py report -runs=100000
    .venv/bin/python tests/robustness/atheris_fuzz.py workflow -max_total_time=600

The target's input bytes become, for ``dicom``, one slice of a small genuine series (the middle
file of the explicit-VR base of ``fuzzing.base_series``; the seed corpus is its original bytes),
read with ``read_study(...).load()``; for ``report``, a report file (``.txt``, or ``.json`` when
the bytes start with ``{``) read with ``read_report``; for ``workflow``, a workflow YAML file
read with ``load_workflow``. The property is ``fuzzing.py``'s: a ``MedfuseError`` naming the
file and the reason, or a correct volume / a clean report / a valid workflow. Anything else —
another exception, a failed property, a Rust panic — is a crash that libFuzzer reports with
the input it saved (``crash-<sha1>``). Arguments after the target go to libFuzzer.
"""

from __future__ import annotations

import logging
import sys
import tempfile
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

TARGETS = ("dicom", "report", "workflow")


def _dicom_target(work: Path, corpus: Path):
    from fuzzing import DicomFuzzer, base_series

    bases, refs, orders = base_series(work / "corpus")
    name = sorted(bases)[0]
    fuzzer = DicomFuzzer(bases[name], refs[name], work / "series", orders[name], 4)
    victim_name = fuzzer.order[len(fuzzer.order) // 2]
    victim = fuzzer.folder / victim_name
    (corpus / "seed.dcm").write_bytes(fuzzer.original[victim_name])

    def one(data: bytes) -> None:
        victim.write_bytes(data)
        try:
            fuzzer.check(victim_name)
        finally:
            victim.write_bytes(fuzzer.original[victim_name])

    return one


def _report_target(work: Path, corpus: Path):
    from fuzzing import check_report

    from medfuse.errors import MedfuseError
    from medfuse.io.reports import read_report

    good = Path(__file__).resolve().parents[2] / "sample_cases" / "chest_ct_0001" / "report.txt"
    (corpus / "seed.txt").write_bytes(good.read_bytes())

    def one(data: bytes) -> None:
        path = work / ("r.json" if data[:1] == b"{" else "r.txt")
        path.write_bytes(data)
        try:
            rep = read_report(path, parse=False)
        except MedfuseError as exc:
            assert exc.path and str(exc.reason).strip(), f"error without file or reason: {exc!r}"
            return
        problems = check_report(rep)
        assert not problems, "; ".join(problems)

    return one


def _workflow_target(work: Path, corpus: Path):
    from medfuse.config import load_workflow
    from medfuse.errors import ConfigError

    shipped = Path(__file__).resolve().parents[2] / "workflows" / "chest_ct_triage.yaml"
    (corpus / "seed.yaml").write_bytes(shipped.read_bytes())
    path = work / "wf.yaml"

    def one(data: bytes) -> None:
        path.write_bytes(data)
        try:
            load_workflow(path)
        except ConfigError as exc:
            assert exc.path and str(exc.reason).strip(), f"error without file or reason: {exc!r}"

    return one


def main(argv: list[str]) -> None:
    if not argv or argv[0] not in TARGETS:
        sys.exit(f"usage: atheris_fuzz.py {{{'|'.join(TARGETS)}}} [libFuzzer options]\n\n{__doc__}")
    try:
        import atheris
    except ImportError:
        sys.exit('atheris is not installed: pip install -e ".[fuzz]"')
    logging.disable(logging.CRITICAL)
    warnings.simplefilter("ignore")
    target, rest = argv[0], argv[1:]
    work = Path(tempfile.mkdtemp(prefix=f"medfuse-atheris-{target}-"))
    corpus = work / "seed_corpus"
    corpus.mkdir()
    make = {"dicom": _dicom_target, "report": _report_target, "workflow": _workflow_target}
    # coverage feedback from medfuse and the parsers it drives: every module they import while
    # the target is built and first run on its seed (medfuse imports lazily) is instrumented
    with atheris.instrument_imports(include=["medfuse", "pydicom", "yaml", "pydantic"]):
        one = make[target](work, corpus)
        one(next(corpus.iterdir()).read_bytes())
    atheris.Setup([sys.argv[0], *rest, str(corpus)], one)
    atheris.Fuzz()


if __name__ == "__main__":
    main(sys.argv[1:])
