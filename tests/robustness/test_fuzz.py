"""Short, seeded fuzzing in CI (hypothesis drives the random source of ``fuzzing.py``): byte-mutated
DICOM series through ``read_study(...).load()``, random report inputs through ``read_report``,
random mappings and YAML through ``load_workflow``. Each example must end in a MedfuseError
naming a file and a reason, or in a result that holds up (see ``fuzzing.py``). The long run
(``fuzz_long.py``, 100,000 cases) uses the same checks; ``docs/security.md`` has its numbers."""

from __future__ import annotations

import random
import tempfile
from pathlib import Path

import pytest
from fuzzing import DicomFuzzer, base_series, fuzz_report_once, fuzz_workflow_once
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

REPO = Path(__file__).resolve().parents[2]
GOOD_REPORT = (REPO / "sample_cases" / "chest_ct_0001" / "report.txt").read_text()


def seeded(n: int) -> settings:
    return settings(
        max_examples=n,
        derandomize=True,  # the same examples on every run: CI is reproducible
        database=None,
        deadline=None,
        suppress_health_check=list(HealthCheck),
    )


# a few hundred examples in all (the long run does the 100,000)
N_DICOM, N_REPORT, N_PARSED, N_WORKFLOW = 160, 120, 15, 160


@pytest.fixture(scope="module")
def work() -> Path:
    return Path(tempfile.mkdtemp(prefix="medfuse-fuzz-"))


@pytest.fixture(scope="module")
def fuzzers(work) -> list[DicomFuzzer]:
    bases, refs, orders = base_series(work / "corpus")
    return [DicomFuzzer(bases[n], refs[n], work / f"f_{n}", orders[n], 4) for n in sorted(bases)]


def test_read_study_on_mutated_files(fuzzers):
    seen: dict[str, int] = {}

    @seeded(N_DICOM)
    @given(st.randoms(use_true_random=False), st.integers(0, len(fuzzers) - 1))
    def run(rng: random.Random, which: int) -> None:
        outcome, _how = fuzzers[which].run(rng)
        seen[outcome] = seen.get(outcome, 0) + 1

    run()
    print(f"\nDICOM fuzz: {sum(seen.values())} examples: {seen}")
    assert seen.get("volume") and len(seen) > 1  # both kinds of outcome were exercised


def test_read_report_on_random_input(work):
    seen: dict[str, int] = {}

    @seeded(N_REPORT)
    @given(st.randoms(use_true_random=False))
    def run(rng: random.Random) -> None:
        outcome, _how = fuzz_report_once(rng, GOOD_REPORT, work, parse=False)
        seen[outcome] = seen.get(outcome, 0) + 1

    run()
    print(f"\nreport fuzz: {sum(seen.values())} examples: {seen}")
    assert seen.get("report") and len(seen) > 1


def test_parse_random_report_text(work):
    """The text pipeline (sections, sentences, negation) on hostile text."""
    import medfuse

    @seeded(N_PARSED)
    @given(st.text(st.characters(codec="utf-8"), min_size=1, max_size=400))
    def run(text: str) -> None:
        try:
            rep = medfuse.read_report(text.encode("utf-8", "surrogatepass"))
        except medfuse.MedfuseError as exc:
            assert str(exc.reason).strip()
        else:
            assert rep.text.strip()
            assert all(ord(c) >= 32 or c in "\n\t" for c in rep.text)

    run()


def test_load_workflow_on_random_mappings(work):
    seen: dict[str, int] = {}

    @seeded(N_WORKFLOW)
    @given(st.randoms(use_true_random=False))
    def run(rng: random.Random) -> None:
        outcome, _how = fuzz_workflow_once(rng, work)
        seen[outcome] = seen.get(outcome, 0) + 1

    run()
    print(f"\nworkflow fuzz: {sum(seen.values())} examples: {seen}")
    assert seen.get("error:ConfigError")
