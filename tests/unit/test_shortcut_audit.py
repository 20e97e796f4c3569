"""The shortcut audit (benchmarks/shortcut_audit.py, issue 23): it finds the shortcuts of the
old report grammars and of a planted one, and finds none in grammars 3 and 4."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

BENCH = Path(__file__).resolve().parents[2] / "benchmarks" / "shortcut_audit.py"


@pytest.fixture(scope="module")
def sa():
    spec = importlib.util.spec_from_file_location("shortcut_audit_bench", BENCH)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def chest3(sa):
    return sa.chest_reports(1200, seed=1, grammar=3)


def _flagged(flags) -> set[tuple[str, str]]:
    return {(f.label, f.token) for f in flags}


def test_grammars_3_and_4_have_no_shortcut(sa, chest3):
    cohorts = (chest3, sa.chest_reports(1200, seed=1, grammar=4), sa.mr_reports(800, 1, 3))
    for texts, y, labels in cohorts:
        flags, _, probe = sa.audit(texts, y, labels)
        assert flags == [], [(f.label, f.token, round(f.mi_bits, 4)) for f in flags]
        assert max(probe.values()) <= sa.PROBE_FLAG, probe


def test_the_old_grammars_shortcuts_are_found(sa):
    flags, _, probe = sa.audit(*sa.chest_reports(1200, seed=1, grammar=2))
    found = _flagged(flags)
    # "Active smoker (40 pack-years)": the brackets of one phrasing said "smoker"
    assert {("smoking_history", "("), ("smoking_history", ")")} <= found
    assert probe["smoking_history"] > sa.PROBE_FLAG
    flags, _, probe = sa.audit(*sa.mr_reports(800, seed=1, grammar=2))
    found = _flagged(flags)
    # "Routine examination." was written only when no headache was mentioned
    assert ("headache", "routine") in found
    assert ("focal_lesion", "series") in found  # image references only beside a lesion
    assert probe["headache"] > sa.PROBE_FLAG


def test_a_planted_shortcut_is_found(sa, chest3):
    texts, y, labels = chest3
    j = labels.index("dyspnea")
    rng = np.random.default_rng(0)
    planted = [  # a page reference written into 60 % of the dyspnea reports only
        t + "\nSee page 7." if y[i, j] and rng.random() < 0.6 else t for i, t in enumerate(texts)
    ]
    flags, _, probe = sa.audit(planted, y, labels)
    found = _flagged(flags)
    assert {("dyspnea", "page"), ("dyspnea", "7"), ("dyspnea", "see")} <= found
    kinds = {f.token: f.kind for f in flags if f.label == "dyspnea"}
    assert kinds["7"] == "number" and kinds["page"] == "word"
    assert probe["dyspnea"] > sa.PROBE_FLAG


def test_tokens_and_kinds(sa):
    text = "Active smoker (40 pack-years).\nSynthetic report for medfuse case 00012; not real."
    assert sa.tokens(text) == {"active", "smoker", "(", "40", "pack", "-", "years", ")", "."}
    assert [sa.kind(t) for t in ("40", "(", "series", "smoker")] == [
        "number",
        "punctuation",
        "image reference",
        "word",
    ]
    assert sa.mutual_information(np.array([0, 1, 0, 1]), np.array([0, 1, 0, 1])) == 1.0


def test_shortcut_phrases(sa):
    for text in ("(", "18", "and", "(series 1,", ", the", "34)."):
        assert sa.is_shortcut_phrase(text), text
    for text in ("Smoker, screening.", "18 mm solid", "Headache.", "pack-years"):
        assert not sa.is_shortcut_phrase(text), text
    # a phrase of the technique line is template whatever its words: no finding is stated there
    technique = "TECHNIQUE: Axial CT images of the chest ... reconstructed at 5 mm."
    assert sa.is_shortcut_phrase("at 5 mm.", technique)
    assert not sa.is_shortcut_phrase("18 mm solid", "There is an 18 mm solid pulmonary nodule.")
