"""De-identified and vendor-variant DICOM through every output (issue 26): each case of the
de-identification corpus (``deid_corpus.py``: the sample cases and the real CT / MR series of
``../shared/data`` with their headers edited as the PS3.15 basic profile, Type 2 deletion, single
deletions, private-tag removal, date shifts and UID remapping leave them) goes through
``run_workflow`` with all seven exporters; every output exists and parses, the DICOM ones pass
dciodvfy with 0 errors, and no study is lost (only inconsistent UIDs, and a Siemens mosaic
stripped of its private CSA header, may end in a clear error). The test suite runs
``default_cases`` and ``deid_cases``; ``benchmarks/deid_corpus.py`` runs every case and prints the
table. ``pytest -s`` prints this run's table.
"""

from __future__ import annotations

import shutil

import pytest
from deid_corpus import (
    BASES,
    SHARED_DICOM,
    available_bases,
    default_cases,
    deid_cases,
    problems,
    run_corpus,
    summary_line,
    table,
)

pytestmark = pytest.mark.slow


def _dciodvfy() -> str:
    exe = shutil.which("dciodvfy")
    if exe is None:
        pytest.skip("dciodvfy (dicom3tools) is not on PATH: apt-get install dicom3tools")
    return exe


def _check(results) -> None:
    print("\n" + table(results))
    assert results
    bad = [f"{r.case.name} ({r.mode}): {'; '.join(problems(r))}" for r in results if problems(r)]
    assert not bad, f"{len(bad)} case(s) not as required:\n" + "\n".join(bad)
    assert sum(r.lost for r in results) == 0
    assert sum(r.dciodvfy_errors for r in results) == 0
    for r in results:  # every format of every predicted study wrote its file(s)
        if r.status == "ok":
            assert len(r.formats_written) == 7, r.case.name


@pytest.mark.parametrize("kind", ["chest", "mr"])
def test_deid_corpus(kind, tmp_path):
    real = SHARED_DICOM.is_dir()
    cases = [c for c in default_cases(real) if c.workflow == kind]
    results = run_corpus(cases, tmp_path, mode="phi", dciodvfy=_dciodvfy())
    print(summary_line(results))
    _check(results)
    # the vendor variants: each real series went through the whole workflow, every output made
    real_bases = {b for b in available_bases() if BASES[b][2] and BASES[b][1] == kind}
    as_is = {r.case.base for r in results if r.case.kind == "as_is" and r.status == "ok"}
    assert as_is == real_bases


def test_deid_corpus_deidentified_outputs(tmp_path):
    """The same edited headers with ``--deidentify``: medfuse's own PS3.15 de-identification of
    its DICOM outputs copes with what the source lacks."""
    results = run_corpus(
        deid_cases(SHARED_DICOM.is_dir()), tmp_path, mode="deid", dciodvfy=_dciodvfy()
    )
    _check(results)
