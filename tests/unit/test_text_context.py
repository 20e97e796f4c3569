"""Negation, uncertainty and history of finding mentions: one case per trigger, plus radiology
sentences where the nearest cue, windows, pseudo-triggers and terminations matter."""

from __future__ import annotations

import pytest

from medfuse.text import context as C
from medfuse.text.pipeline import parse_report
from medfuse.types import FindingStatus


def statuses(text: str, code: str) -> list[str]:
    return [f.status.value for f in parse_report(text).findings if f.code == code]


def only(text: str, code: str = "pneumothorax") -> str:
    got = statuses(text, code)
    assert len(got) == 1, (text, got)
    return got[0]


# -- every trigger of every family, in the simplest sentence --------------------------------------
@pytest.mark.parametrize("trigger", C.NEGATION_PRECEDING)
def test_each_preceding_negation(trigger):
    assert only(f"{trigger} pneumothorax.") == "absent"


@pytest.mark.parametrize("trigger", C.NEGATION_FOLLOWING + C.NEGATION_FOLLOWING_NEAR)
def test_each_following_negation(trigger):
    assert only(f"Pneumothorax {trigger}.") == "absent"


@pytest.mark.parametrize("trigger", C.UNCERTAINTY_PRECEDING)
def test_each_preceding_uncertainty(trigger):
    assert only(f"{trigger} pneumothorax.") == "uncertain"


@pytest.mark.parametrize("trigger", C.UNCERTAINTY_FOLLOWING + C.UNCERTAINTY_FOLLOWING_NEAR)
def test_each_following_uncertainty(trigger):
    assert only(f"Pneumothorax {trigger}.") == "uncertain"


@pytest.mark.parametrize("trigger", C.PSEUDO)
def test_each_pseudo_trigger_keeps_present(trigger):
    assert only(f"{trigger} pneumothorax.") == "present"


@pytest.mark.parametrize("trigger", C.HISTORICAL_PRECEDING)
def test_each_historical_trigger(trigger):
    f = parse_report(f"{trigger} pneumonia.").findings[0]
    assert f.historical and f.status is FindingStatus.PRESENT


def test_termsets_keep_negspacy_and_move_ambiguous_ones():
    ts = C.radiology_termset()
    assert set(ts) == {
        "pseudo_negations",
        "preceding_negations",
        "following_negations",
        "termination",
    }
    assert "no evidence of" in ts["preceding_negations"]  # from negspacy en_clinical
    assert "rule out" not in ts["preceding_negations"] and "rule out" in C.UNCERTAINTY_PRECEDING
    assert "versus" not in ts["preceding_negations"] and "versus" in C.UNCERTAINTY_PRECEDING
    assert "free" not in ts["following_negations"]


# -- the radiology triggers named in the issue ----------------------------------------------------
@pytest.mark.parametrize(
    ("text", "code", "expected"),
    [
        ("Pneumothorax is not seen.", "pneumothorax", "absent"),
        ("No evidence of pneumothorax.", "pneumothorax", "absent"),
        ("Negative for pleural effusion.", "pleural_effusion", "absent"),
        ("The lungs are free of consolidation.", "consolidation", "absent"),
        ("The right lower lobe pneumonia has resolved.", "pneumonia", "absent"),
        ("Resolved right lower lobe pneumonia.", "pneumonia", "absent"),
        ("Small apical pneumothorax cannot be excluded.", "pneumothorax", "uncertain"),
        ("Basilar opacity may represent atelectasis.", "atelectasis", "uncertain"),
        ("Left lower lobe opacity suspicious for pneumonia.", "pneumonia", "uncertain"),
        ("No change in the small left pleural effusion.", "pleural_effusion", "present"),
        ("Not only cardiomegaly but also edema.", "cardiomegaly", "present"),
        ("Cannot exclude pneumonia.", "pneumonia", "uncertain"),
        ("Rule out pneumonia.", "pneumonia", "uncertain"),
        ("Interval removal of the right chest tube.", "support_devices", "absent"),
        ("The nasogastric tube has been removed.", "support_devices", "absent"),
        ("Heart size is not enlarged.", "cardiomegaly", "absent"),
        ("The cardiac silhouette is mildly enlarged.", "cardiomegaly", "present"),
        ("Pulmonary vascular congestion within normal limits.", "edema", "absent"),
    ],
)
def test_issue_triggers(text, code, expected):
    assert statuses(text, code) == [expected]


# -- scope: which mentions a cue reaches ----------------------------------------------------------
def test_negation_covers_a_list():
    r = parse_report("No focal consolidation, pleural effusion, or pneumothorax.")
    assert {f.code: f.status.value for f in r.findings} == {
        "consolidation": "absent",
        "pleural_effusion": "absent",
        "pneumothorax": "absent",
    }


def test_negation_stops_at_sentence_and_termination():
    r = parse_report("No pneumothorax. Small effusion.")
    assert [f.status.value for f in r.findings] == ["absent", "present"]
    r = parse_report("No pneumothorax; there is a small effusion.")
    assert [f.status.value for f in r.findings] == ["absent", "present"]
    r = parse_report("No pneumothorax but there is cardiomegaly.")
    assert [f.status.value for f in r.findings] == ["absent", "present"]


def test_mention_before_a_negation_is_untouched():
    r = parse_report("Cardiomegaly without pulmonary edema.")
    assert [(f.code, f.status.value) for f in r.findings] == [
        ("cardiomegaly", "present"),
        ("edema", "absent"),
    ]


def test_nearest_cue_wins():
    r = parse_report("No pneumothorax, possible small effusion.")
    assert [f.status.value for f in r.findings] == ["absent", "uncertain"]
    # "to suggest" after a negation keeps the negation
    assert only("No focal opacity to suggest pneumonia.", "pneumonia") == "absent"
    assert only("Findings suggest pneumonia.", "pneumonia") == "uncertain"


def test_versus_reaches_both_sides_but_not_far():
    r = parse_report("Right basilar opacity, may represent atelectasis versus pneumonia.")
    got = {f.code: f.status.value for f in r.findings}
    assert got == {"lung_opacity": "present", "atelectasis": "uncertain", "pneumonia": "uncertain"}


def test_following_cues_have_a_window():
    text = "Pneumothorax was noted on the outside radiograph of the chest, not seen now."
    assert only(text) == "present"
    assert only("Pneumothorax on the left is not seen.") == "absent"


def test_history_needs_no_punctuation_between():
    r = parse_report("Compared to prior, no pneumothorax.")
    assert not r.findings[0].historical
    r = parse_report("Prior right rib fractures.")
    assert r.findings[0].historical


def test_history_and_negation_combine():
    f = parse_report("Previously seen nodule is no longer seen.").findings[0]
    assert f.historical and f.status is FindingStatus.ABSENT and f.cue == "is no longer seen"


def test_cue_recorded():
    f = parse_report("No evidence of pleural effusion.").findings[0]
    assert f.cue == "No evidence of"
    assert parse_report("Pleural effusion.").findings[0].cue == ""


def test_custom_windows_config(monkeypatch):
    from medfuse.text.pipeline import get_pipeline

    nlp = get_pipeline()
    ctx = nlp.get_pipe("medfuse_context")
    monkeypatch.setitem(ctx.windows, ("neg", "fol"), 0)
    assert (
        parse_report("Pneumothorax on the left is not seen.", nlp=nlp).findings[0].status.value
        == "present"
    )


def test_candidate_lookup_equals_brute_force(monkeypatch):
    """The logarithmic cue lookup must decide exactly as scanning every cue of the chunk."""
    texts = [
        "No focal consolidation, suspicious pulmonary opacity, large pleural effusion, or pneumothorax.",
        "Possible a b c d e f g h pneumonia, no effusion, heart is not enlarged versus edema?",
        "History of pneumonia, previously seen nodule is no longer seen, pneumothorax cannot be excluded.",
        "Cardiomegaly with mild bibasilar infiltrates versus atelectasis; no change in the effusion.",
        "There is no pleural line to suggest pneumothorax or blunting to suggest large pleural effusion.",
    ]
    fast = [[(f.status, f.historical, f.cue) for f in parse_report(t).findings] for t in texts]
    monkeypatch.setattr(C.RadiologyContext, "_candidates", lambda self, ent, local, index: local)
    slow = [[(f.status, f.historical, f.cue) for f in parse_report(t).findings] for t in texts]
    assert fast == slow


@pytest.mark.parametrize(
    "text",
    [
        ")" * 20000,
        "(" * 5000 + "pneumothorax" + ")" * 5000,
        "no pneumothorax " * 6000,
        "No pneumothorax (PTX). PTX. " * 3000,
    ],
    ids=["closing-brackets", "nested-brackets", "one-long-sentence", "many-abbreviations"],
)
def test_pathological_text_is_parsed_whole(text):
    """Pathological text parses to a report of the whole text (no recursion error, nothing
    dropped). That it stays linear in time is measured by ``benchmarks/complexity.py``, not by
    a time limit here."""
    report = parse_report(text)
    assert report.text == text and report.sentences


def test_negspacy_clinical_terminations_are_kept_for_negation_only():
    from negspacy.termsets import termset

    ts = C.radiology_termset()
    assert set(termset("en_clinical").get_patterns()["termination"]) <= set(ts["termination"])
    assert "etiology of" in C.NEGATION_TERMINATION and "etiology of" not in C.TERMINATION
    assert only("No clear etiology of pneumothorax.") == "present"  # ends the negation
    assert statuses("Opacity possibly secondary to pneumonia.", "pneumonia") == ["uncertain"]


def test_clause_bound_cues_have_their_own_labels():
    from medfuse.text.pipeline import get_pipeline

    ctx = get_pipeline().get_pipe("medfuse_context")
    doc = get_pipeline()("The chest tube was removed. Resolved pneumonia.")
    bound = {(c.text, c.direction) for c in ctx.cues(doc) if c.bound}
    assert bound == {("was removed", "fol"), ("Resolved", "pre"), ("Resolved", "fol")}
    assert all(C.CLAUSE_BOUND_WORDS & set(c.text.lower().split()) for c in ctx.cues(doc) if c.bound)
