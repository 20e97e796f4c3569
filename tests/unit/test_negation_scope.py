"""Negation scope, issue 29: the seven error classes found on independently annotated sentences.

Each case is (class, sentence, target phrase, expected status). The target is put into
``doc.ents`` in place of the lexicon's mentions (:func:`medfuse.text.pipeline.target_status`),
as the sentences were scored; ``benchmarks/negation.py`` prints negation P/R/F1 on these same
sentences beside plain negspacy. The sentences were written for these tests (none is taken
from an annotated corpus); each class also holds controls that must keep their status.

Classes:
1. a negation word inside the target is part of it, not a cue;
2. "was not" / "were not" before the target keep their "not";
3. "removed" / "resolved" reach only their own clause;
4. negspacy's clinical terminations ("etiology of", "source of", ...) end a negation's scope;
5. triggers match across runs of whitespace (line wraps);
6. a negation whose scope holds an uncertainty cue wins;
7. triggers both systems lacked ("X was negative", "no further episodes of").
"""

from __future__ import annotations

import pytest

from medfuse.text.pipeline import parse_report, target_status

# fmt: off
CASES: list[tuple[int, str, str, str]] = [
    # 1 - the cue inside the target
    (1, "The patient reports no appetite for two days.", "no appetite", "present"),
    (1, "He complains of not sleeping well at night.", "not sleeping well", "present"),
    (1, "Mother says the child cannot swallow solid food.", "cannot swallow", "present"),
    (1, "Exam is notable for absence of breath sounds on the left.", "absence of breath sounds", "present"),
    (1, "She was found to have no light perception in the right eye.", "no light perception", "present"),
    (1, "Auscultation revealed absent bowel sounds.", "absent bowel sounds", "present"),
    (1, "The patient has never-ending headaches.", "never-ending headaches", "present"),
    (1, "He denies not sleeping well.", "not sleeping well", "absent"),  # control: cue outside
    # 2 - "was not" / "were not" before the target
    (2, "She was not lightheaded.", "lightheaded", "absent"),
    (2, "The patient was not dyspneic at rest.", "dyspneic", "absent"),
    (2, "His legs were not edematous.", "edematous", "absent"),
    (2, "The pain was not associated with nausea.", "nausea", "absent"),
    (2, "The lesions were not tender to palpation.", "tender", "absent"),
    (2, "He was not febrile with the first dose of antibiotics.", "febrile", "absent"),
    (2, "The nodule was not seen on the lateral view, effusion is present.", "effusion", "present"),
    (2, "The nodule was not seen on the lateral view.", "nodule", "absent"),
    # 3 - "removed" / "resolved" in another clause
    (3, "A polyp was found in the sigmoid colon and removed.", "polyp", "present"),
    (3, "Her fever resolved and she developed a productive cough.", "productive cough", "present"),
    (3, "Symptoms resolved and a new rash appeared on the trunk.", "rash", "present"),
    (3, "Her abdominal pain resolved and nausea developed overnight.", "nausea", "present"),
    (3, "A foreign body was seen on the film and removed in the emergency department.", "foreign body", "present"),
    (3, "A skin tag was noted and subsequently removed.", "skin tag", "present"),
    (3, "The chest tube has been removed.", "chest tube", "absent"),  # controls: own clause
    (3, "Resolved right lower lobe pneumonia.", "pneumonia", "absent"),
    (3, "Infiltrates and venous engorgement have resolved.", "Infiltrates", "absent"),
    (3, "Resolved effusion and pneumothorax.", "pneumothorax", "absent"),
    # 4 - clinical termination terms
    (4, "No clear etiology of the patient's anemia was found.", "anemia", "present"),
    (4, "Workup did not reveal a source of her fever.", "fever", "present"),
    (4, "There is no evidence of infection as the cause of her leukocytosis.", "leukocytosis", "present"),
    (4, "Without a clear reason for the syncope, she was admitted.", "syncope", "present"),
    (4, "She denies trauma as the origin of the bruising.", "bruising", "present"),
    (4, "No fever, etiology of the rash unclear.", "rash", "present"),
    (4, "No pneumothorax secondary to line placement.", "pneumothorax", "absent"),  # controls
    (4, "Opacity possibly secondary to pneumonia.", "pneumonia", "uncertain"),
    # 5 - whitespace inside a trigger
    (5, "Negative   for DVT.", "DVT", "absent"),
    (5, "The lungs are free  of consolidation.", "consolidation", "absent"),
    (5, "Ultrasound negative\nfor deep venous thrombosis.", "deep venous thrombosis", "absent"),
    (5, "CT shows absence   of pulmonary embolism.", "pulmonary embolism", "absent"),
    (5, "Pulmonary embolism was  ruled out.", "Pulmonary embolism", "absent"),
    (5, "Pneumothorax is no\nlonger seen.", "Pneumothorax", "absent"),
    (5, "Cultures were negative.\n\nFor pneumonia, start antibiotics.", "pneumonia", "present"),
    # 6 - negation over an uncertainty cue
    (6, "No findings suggesting osteomyelitis.", "osteomyelitis", "absent"),
    (6, "There is no evidence suggestive of pneumonia.", "pneumonia", "absent"),
    (6, "The mass is not suspicious for malignancy.", "malignancy", "absent"),
    (6, "Without signs suggestive of infection.", "infection", "absent"),
    (6, "She denies symptoms suggestive of angina.", "angina", "absent"),
    (6, "No features concerning for metastatic disease.", "metastatic disease", "absent"),
    (6, "No opacities concerning for pneumonia.", "pneumonia", "absent"),
    (6, "No pneumothorax, possible small effusion.", "small effusion", "uncertain"),  # control
    # 7 - triggers missing in both systems
    (7, "The workup for pulmonary embolism was negative.", "pulmonary embolism", "absent"),
    (7, "Blood cultures were negative.", "Blood cultures", "absent"),
    (7, "Urine toxicology screen was negative.", "Urine toxicology screen", "absent"),
    (7, "No further episodes of chest pain.", "chest pain", "absent"),
    (7, "She reports no further episodes of syncope since admission.", "syncope", "absent"),
    (7, "No recurrence of the pleural effusion.", "pleural effusion", "absent"),
    (7, "Stool guaiac came back negative.", "Stool guaiac", "absent"),
    (7, "Gram negative rods grew in the sputum.", "Gram negative rods", "present"),  # control
]
# fmt: on


def _id(case: tuple[int, str, str, str]) -> str:
    return f"class{case[0]}-{case[2]}"


def test_every_class_has_at_least_five_sentences():
    for cls in range(1, 8):
        assert sum(1 for c in CASES if c[0] == cls) >= 5, cls


@pytest.mark.parametrize("case", CASES, ids=[_id(c) for c in CASES])
def test_target_status(case):
    _, text, target, expected = case
    status, _, cue = target_status(text, target)
    assert status == expected, (text, target, cue)


# -- the same rules with the lexicon's own mentions -------------------------------------------------
@pytest.mark.parametrize(
    ("text", "code", "expected"),
    [
        ("The heart is not enlarged.", "cardiomegaly", "absent"),  # the lexicon's <NOT> slot
        ("The cardiac silhouette is enlarged.", "cardiomegaly", "present"),
        ("Pneumothorax was not seen.", "pneumothorax", "absent"),
        ("The CT was negative for pneumonia.", "pneumonia", "absent"),
        ("Negative   for pneumothorax.", "pneumothorax", "absent"),
        ("No\nevidence of pneumothorax.", "pneumothorax", "absent"),
        ("The chest tube was placed and removed.", "support_devices", "present"),
        (
            "In the interval, infiltrates and venous engorgement have resolved.",
            "lung_opacity",
            "absent",
        ),
        ("No findings suggesting pneumonia.", "pneumonia", "absent"),
        ("No further episodes of pneumonia.", "pneumonia", "absent"),
        ("Opacity possibly secondary to pneumonia.", "pneumonia", "uncertain"),
    ],
)
def test_rules_with_lexicon_mentions(text, code, expected):
    got = [f.status.value for f in parse_report(text).findings if f.code == code]
    assert got == [expected], (
        text,
        [(f.code, f.status.value, f.cue) for f in parse_report(text).findings],
    )


def test_cue_inside_a_mention_reaches_no_other_mention():
    # "absent" inside the target is part of it; the effusion after it is untouched
    status, _, _ = target_status("Absent breath sounds and a pleural effusion.", "pleural effusion")
    assert status == "present"


def test_target_by_offsets_and_missing_target():
    from medfuse.errors import ReportError

    text = "No pneumothorax."
    assert target_status(text, (3, 15))[0] == "absent"
    with pytest.raises(ReportError, match="not in the text"):
        target_status(text, "effusion")


def test_whitespace_match_does_not_join_sentences():
    r = parse_report("Findings negative.\n\nFor comparison, pneumothorax on the left.")
    assert [f.status.value for f in r.findings if f.code == "pneumothorax"] == ["present"]


def test_a_two_way_cue_inside_a_following_cue_does_not_reach_forward():
    # "was removed" keeps no preceding "removed": the pneumothorax after it is present
    r = parse_report("The chest tube was removed, small pneumothorax persists.")
    assert [(f.code, f.status.value) for f in r.findings] == [
        ("support_devices", "absent"),
        ("pneumothorax", "present"),
    ]
