"""Every case of the bad-input corpus (``corpus.py``: several hundred broken DICOM studies,
reports and workflows generated from the sample cases) ends in a MedfuseError naming the file
and the reason, or in a volume / report the oracle proves correct (with the recorded warning the
case calls for) — never another exception, never a silently wrong volume. Each test prints the
count per outcome (``pytest -s`` shows it)."""

from __future__ import annotations

import pytest
from corpus import build_corpus, format_tally, judge, run_case, tally

#: the corpus must stay at least this large (the issue asks for 200 cases)
MINIMUM = {"dicom": 200, "report": 40, "workflow": 100}


@pytest.mark.parametrize("kind", ["dicom", "report", "workflow"])
def test_corpus(kind, tmp_path_factory):
    cases, refs = build_corpus(tmp_path_factory.mktemp(f"corpus_{kind}"), (kind,))
    assert len(cases) >= MINIMUM[kind]
    results = [(case, outcome, judge(case, outcome, refs)) for case in cases
               for outcome in [run_case(case)]]  # fmt: skip
    counts = tally(results)
    print(f"\nbad-input corpus, {format_tally(counts)}")
    for case, outcome, _ in results:
        if outcome.kind == "skipped":
            print(f"  skipped {case.name}: {outcome.detail}")
    violations = [f"{case.name}: {'; '.join(p)}" for case, _o, p in results if p]
    assert not violations, f"{len(violations)} violation(s):\n" + "\n".join(violations)
