"""The report parser: tokenizer, sections, sentences, abbreviations, findings, spans, labels."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from medfuse.errors import ConfigError
from medfuse.text.labels import report_labels
from medfuse.text.lexicon import FINDING_CODES, compile_pattern, load_lexicon
from medfuse.text.pipeline import get_pipeline, parse_report, parse_reports
from medfuse.text.sections import BODY, find_sections
from medfuse.types import Finding, FindingStatus, Report

STRUCTURED = (
    "INDICATION: r/o pneumonia.\n"
    "COMPARISON: None.\n"
    "TECHNIQUE: PA and lateral views.\n"
    "FINDINGS: The heart is mildly enlarged. No pneumothorax or pleural effusion.\n"
    "IMPRESSION: 1. Cardiomegaly. 2. No acute disease."
)


def sentences(report: Report) -> list[str]:
    return [report.text[a:b] for a, b in report.sentences]


# -- nothing is downloaded, no model package needed ----------------------------------------------
def test_pipeline_is_blank_english_with_scispacy_parts():
    nlp = get_pipeline()
    assert nlp.lang == "en"
    assert nlp.pipe_names == [
        "medfuse_sections",
        "medfuse_abbreviations",
        "entity_ruler",
        "medfuse_findings",
        "medfuse_context",
    ]
    assert get_pipeline() is nlp  # built once


def test_tokenizer_splits_word_slash_word_only():
    nlp = get_pipeline()
    toks = [t.text for t in nlp.make_doc("atelectasis/scarring r/o h/o s/p w/o 1.5 cm air-space")]
    assert toks == [
        "atelectasis",
        "/",
        "scarring",
        "r/o",
        "h/o",
        "s/p",
        "w/o",
        "1.5",
        "cm",
        "air-space",
    ]


# -- sections ------------------------------------------------------------------------------------
def test_sections_standard_headers():
    r = parse_report(STRUCTURED)
    assert list(r.sections) == ["INDICATION", "COMPARISON", "TECHNIQUE", "FINDINGS", "IMPRESSION"]
    assert r.sections["COMPARISON"] == "None."
    assert r.sections["IMPRESSION"] == "1. Cardiomegaly. 2. No acute disease."
    names = [s[0] for s in r.section_spans]
    assert names == list(r.sections)
    assert r.section_spans[0][1] == 0 and r.section_spans[-1][2] == len(STRUCTURED)


@pytest.mark.parametrize(
    ("header", "name"),
    [
        ("Reason for exam", "INDICATION"),
        ("CLINICAL HISTORY", "HISTORY"),
        ("History", "HISTORY"),
        ("Comparison", "COMPARISON"),
        ("Technique", "TECHNIQUE"),
        ("Findings", "FINDINGS"),
        ("Impression", "IMPRESSION"),
        ("CONCLUSION", "IMPRESSION"),
        ("Recommendations", "RECOMMENDATION"),
    ],
)
def test_section_aliases(header, name):
    spans = find_sections(f"{header}: text here.\n")
    assert [s.name for s in spans] == [name]


def test_sections_without_headers_is_body():
    r = parse_report("Heart is normal. Lungs are clear.")
    assert list(r.sections) == [BODY]
    assert r.findings == []


def test_text_before_first_header_is_body():
    spans = find_sections("Chest two views.\nFINDINGS: clear.")
    assert [s.name for s in spans] == [BODY, "FINDINGS"]


def test_inline_capital_headers_in_flattened_report():
    text = "EXAM: chest. FINDINGS: No effusion. IMPRESSION: Normal."
    assert [s.name for s in find_sections(text)] == ["TECHNIQUE", "FINDINGS", "IMPRESSION"]


def test_bare_header_lines_and_unknown_capital_headers():
    text = "FINDINGS\nNo effusion.\n\nIMPRESSION\nNormal chest.\nADDITIONAL NOTE: none"
    spans = find_sections(text)
    assert [s.name for s in spans] == ["FINDINGS", "IMPRESSION", "ADDITIONAL NOTE"]


def test_lowercase_words_with_colon_are_not_headers():
    assert [s.name for s in find_sections("Heart: normal.\nNote: lungs clear.")] == [BODY]


def test_repeated_sections_are_joined():
    r = parse_report("FINDINGS: A effusion.\nFINDINGS: B nodule.")
    assert r.sections["FINDINGS"] == "A effusion.\nB nodule."


def test_finding_sections_and_context_sections_do_not_label():
    r = parse_report(STRUCTURED)
    by_code = {f.code: f for f in r.findings}
    assert by_code["pneumonia"].section == "INDICATION"
    assert by_code["pneumonia"].status is FindingStatus.UNCERTAIN
    labels = r.labels()
    assert labels["pneumonia"] is None  # the indication's question is not a finding
    assert labels["cardiomegaly"] == 1
    assert labels["pneumothorax"] == 0 and labels["pleural_effusion"] == 0


# -- sentences -----------------------------------------------------------------------------------
def test_sentences_skip_headers_and_keep_list_markers():
    r = parse_report(STRUCTURED)
    assert sentences(r) == [
        "r/o pneumonia.",
        "None.",
        "PA and lateral views.",
        "The heart is mildly enlarged.",
        "No pneumothorax or pleural effusion.",
        "1. Cardiomegaly.",
        "2. No acute disease.",
    ]


def test_sentences_decimals_abbreviations_and_lines():
    text = "A 1.5 cm nodule, e.g. granuloma. Dr. Smith was called.\nNo effusion\nLungs clear"
    assert sentences(parse_report(text)) == [
        "A 1.5 cm nodule, e.g. granuloma.",
        "Dr. Smith was called.",
        "No effusion",
        "Lungs clear",
    ]


def test_hard_wrapped_lines_continue_the_sentence():
    text = "There is no pleural effusion or\npneumothorax. The heart is\nnormal in size."
    assert sentences(parse_report(text)) == [
        "There is no pleural effusion or\npneumothorax.",
        "The heart is\nnormal in size.",
    ]
    f = parse_report(text).findings
    assert [x.status.value for x in f] == ["absent", "absent"]


def test_blank_line_and_bullets_start_sentences():
    text = "Lungs are clear\n\nno effusion\n- small nodule"
    assert sentences(parse_report(text)) == ["Lungs are clear", "no effusion", "- small nodule"]


def test_findings_know_their_sentence():
    r = parse_report(STRUCTURED)
    for f in r.findings:
        a, b = r.sentences[f.sentence]
        assert a <= f.start and f.end <= b


# -- abbreviations -------------------------------------------------------------------------------
def test_abbreviation_of_a_finding_is_a_finding():
    text = "Bilateral ground-glass opacities (GGO). The GGO are unchanged. No PTX."
    r = parse_report(text)
    assert r.abbreviations == {"GGO": "ground-glass opacities"}
    ggo = [f for f in r.findings if f.text == "GGO"]
    assert len(ggo) == 2 and all(f.code == "lung_opacity" for f in ggo)
    assert ggo[0].term.startswith("abbreviation:")
    ptx = [f for f in r.findings if f.text == "PTX"]
    assert ptx[0].code == "pneumothorax" and ptx[0].status is FindingStatus.ABSENT


def test_abbreviation_of_a_non_finding_adds_nothing():
    r = parse_report("Chronic obstructive pulmonary disease (COPD). COPD is stable.")
    assert r.abbreviations == {"COPD": "Chronic obstructive pulmonary disease"}
    assert r.findings == []


# -- lexicon matching ----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "code"),
    [
        ("Mild cardiomegaly.", "cardiomegaly"),
        ("The heart size is mildly to moderately enlarged.", "cardiomegaly"),
        ("Enlarged cardiac silhouette.", "cardiomegaly"),
        ("Patchy airspace disease.", "lung_opacity"),
        ("Right upper lobe infiltrate.", "lung_opacity"),
        ("5 mm pulmonary nodule.", "nodule"),
        ("Large hilar mass.", "mass"),
        ("Interstitial pulmonary edema.", "edema"),
        ("Mild pulmonary vascular congestion.", "edema"),
        ("Lingular consolidation.", "consolidation"),
        ("Right lower lobe pneumonia.", "pneumonia"),
        ("Discoid atelectasis.", "atelectasis"),
        ("Collapse of the left lower lobe.", "atelectasis"),
        ("Small pneumothorax.", "pneumothorax"),
        ("Small pleural effusions.", "pleural_effusion"),
        ("Centrilobular emphysema.", "emphysema"),
        ("Healed rib fractures.", "fracture"),
        ("Right IJ catheter tip in the SVC.", "support_devices"),
        ("Left chest wall pacemaker leads intact.", "support_devices"),
        ("Endotracheal tube 4 cm above the carina.", "support_devices"),
    ],
)
def test_lexicon_codes(text, code):
    assert code in {f.code for f in parse_report(text).findings}


# issue 29: the phrasings real chest reports use for devices and for vascular / interstitial edema
@pytest.mark.parametrize(
    ("text", "code"),
    [
        ("Left chest wall electronic device.", "support_devices"),
        ("A spinal stimulator is seen.", "support_devices"),
        ("Neurostimulator overlying the lower thoracic spine.", "support_devices"),
        ("Right chest port tip in the SVC.", "support_devices"),
        ("Right chest XXXX tip in the SVC.", "support_devices"),  # de-identified device word
        ("Left chest XXXX with tip projecting over the lower SVC.", "support_devices"),
        ("Dual leads terminating in the right atrium and right ventricle.", "support_devices"),
        ("Cardiac XXXX generator over the left hemithorax.", "support_devices"),
        ("Overlying leads.", "support_devices"),
        ("IVC filter.", "support_devices"),
        ("Left humeral head bone anchors.", "support_devices"),
        ("Prosthetic right shoulder.", "support_devices"),
        ("Mild vascular prominence, suspicious for developing interstitial edema.", "edema"),
        ("Prominence of the central pulmonary vasculature.", "edema"),
        ("Increased lung vascularity.", "edema"),
        ("Pulmonary vascularity is mildly prominent.", "edema"),
        ("Pulmonary venous hypertension.", "edema"),
        ("Mild congestion without edema.", "edema"),
        ("Kerley B lines and peribronchial cuffing.", "edema"),
    ],
)
def test_lexicon_devices_and_edema_present(text, code):
    r = parse_report(text)
    assert r.labels()[code] == 1, [(f.code, f.text, f.status.value) for f in r.findings]


@pytest.mark.parametrize(
    "text",
    [
        "The tip of the scapula is unremarkable.",
        "Chronically increased interstitial lung markings.",  # not edema in IU's codes
        "Pulmonary vascularity is within normal limits.",
    ],
)
def test_lexicon_no_device_or_edema_label(text):
    labels = parse_report(text).labels()
    assert labels["support_devices"] != 1 and labels["edema"] != 1


def test_uncertain_edema_follows_the_policy():
    from medfuse.text.labels import apply_uncertain_policy, label_texts

    text = "Increased interstitial markings, suggesting mild pulmonary edema."
    assert label_texts([text], codes=("edema",)) == [{"edema": -1}]
    assert label_texts([text], codes=("edema",), uncertain="positive") == [{"edema": 1}]
    assert label_texts([text], codes=("edema",), uncertain="negative") == [{"edema": 0}]
    assert apply_uncertain_policy({"a": -1, "b": None, "c": 0}, "positive") == {
        "a": 1,
        "b": None,
        "c": 0,
    }


def test_label_texts_matches_report_labels_and_handles_missing_text():
    from medfuse.errors import ConfigError
    from medfuse.text.labels import label_texts
    from medfuse.text.lexicon import FINDING_CODES

    texts = ["No pneumothorax. Small left pleural effusion.", None, "  ", "Mild cardiomegaly."]
    got = label_texts(texts)
    assert len(got) == 4 and all(tuple(d) == FINDING_CODES for d in got)
    assert got[0] == report_labels(parse_report(texts[0]))
    assert got[0]["pneumothorax"] == 0 and got[0]["pleural_effusion"] == 1
    assert all(v is None for v in got[1].values()) and all(v is None for v in got[2].values())
    assert got[3]["cardiomegaly"] == 1 and got[3]["edema"] is None
    with pytest.raises(ConfigError, match="uncertain must be one of"):
        label_texts(texts, uncertain="maybe")
    with pytest.raises(ConfigError, match="unknown finding code"):
        label_texts(texts, codes=("cardiomegaly", "gout"))


@pytest.mark.parametrize(
    "text",
    [
        "Small pericardial effusion.",
        "Subcutaneous emphysema.",
        "Sternotomy wires.",
        "Surgical clips.",
    ],
)
def test_ignore_phrases_block_shorter_findings(text):
    assert parse_report(text).findings == []


def test_longest_match_wins():
    r = parse_report("Small left pleural effusion.")
    assert [(f.code, f.text) for f in r.findings] == [("pleural_effusion", "pleural effusion")]


def test_lexicon_loads_and_covers_every_code():
    lex = load_lexicon()
    assert set(lex.codes) == set(FINDING_CODES) - {"no_finding"}
    assert all(lex.labels[c] for c in lex.codes)
    assert lex.to_dict()["findings"]["cardiomegaly"]["phrases"][0] == "cardiomegaly"


def test_compile_pattern_notation():
    pat = compile_pattern("<H> size? is|appears _ enlarged+", {"H": ["Heart", "cardiac"]})
    assert pat == [
        {"LOWER": {"IN": ["heart", "cardiac"]}},
        {"LOWER": "size", "OP": "?"},
        {"LOWER": {"IN": ["is", "appears"]}},
        {},
        {"LOWER": "enlarged", "OP": "+"},
    ]
    with pytest.raises(ConfigError, match="undefined class"):
        compile_pattern("<NOPE> x", {})
    with pytest.raises(ConfigError, match="empty string"):
        compile_pattern("x? y*", {})


def test_bad_lexicon_files_name_the_file(tmp_path):
    bad = tmp_path / "lex.yaml"
    bad.write_text("findings: [1, 2]")
    with pytest.raises(ConfigError, match="lex.yaml"):
        load_lexicon(bad)
    bad.write_text("findings:\n  x:\n    patterns: ['<NOPE> y']\n")
    with pytest.raises(ConfigError, match=r"lex\.yaml.*undefined class"):
        load_lexicon(bad)
    with pytest.raises(ConfigError, match="not found"):
        load_lexicon(tmp_path / "missing.yaml")


def test_custom_lexicon_pipeline(tmp_path):
    lex = tmp_path / "lex.yaml"
    lex.write_text("findings:\n  granuloma:\n    phrases: [granuloma, granulomas]\n")
    nlp = get_pipeline(lex)
    r = parse_report("Calcified granuloma. No effusion.", nlp=nlp)
    assert [(f.code, f.status.value) for f in r.findings] == [("granuloma", "present")]


# -- spans ---------------------------------------------------------------------------------------
def test_spans_are_exact_offsets():
    text = "  FINDINGS:\tNo  pneumothorax.\n\nIMPRESSION:  Heart size is enlarged; small effusion (right)."
    r = parse_report(text)
    assert len(r.findings) == 3
    for f in r.findings:
        assert text[f.start : f.end] == f.text


_PIECES = [
    "No pneumothorax.",
    "Mild cardiomegaly.",
    "  ",
    "\n",
    "Possible small left pleural effusion.",
    "FINDINGS:",
    "IMPRESSION: ",
    "ground-glass opacities (GGO), GGO",
    "café-au-lait ✓",
    "atelectasis/scarring",
    "1.",
    "Heart is not enlarged.",
]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.sampled_from(_PIECES), min_size=1, max_size=12), st.text(max_size=20))
def test_spans_exact_for_any_text(pieces, noise):
    text = " ".join(pieces) + noise
    r = parse_report(text)
    for f in r.findings:
        assert text[f.start : f.end] == f.text
    for a, b in r.sentences:
        assert 0 <= a < b <= len(text) and text[a:b].strip()
    for _, a, b in r.section_spans:
        assert 0 <= a <= b <= len(text)


# -- labels --------------------------------------------------------------------------------------
def test_label_aggregation_priority():
    r = parse_report(
        "No pleural effusion. Possible pleural effusion. Pleural effusion on the right."
    )
    assert r.labels()["pleural_effusion"] == 1
    r = parse_report("No pleural effusion. Possible pleural effusion.")
    assert r.labels()["pleural_effusion"] == -1
    r = parse_report("No pleural effusion.")
    assert r.labels()["pleural_effusion"] == 0
    assert r.labels()["no_finding"] == 1


def test_no_finding_rule():
    assert parse_report("Possible pneumonia.").labels()["no_finding"] == 0
    assert parse_report("Mild cardiomegaly.").labels()["no_finding"] == 0
    assert parse_report("Lungs clear.").labels()["no_finding"] == 1
    assert list(parse_report("x").labels()) == list(FINDING_CODES)


def test_historical_mentions_do_not_label():
    r = parse_report("History of pneumonia. No effusion.")
    assert r.findings[0].historical
    assert r.labels()["pneumonia"] is None


def test_report_labels_subset_of_codes():
    r = Report(
        "x",
        findings=[Finding("edema", "x", 0, 1, FindingStatus.UNCERTAIN, section="FINDINGS")],
    )
    assert report_labels(r, codes=("edema", "no_finding")) == {"edema": -1, "no_finding": 0}


# -- batch parsing, truncation, round trip -------------------------------------------------------
def test_parse_reports_matches_single_parsing_in_order():
    texts = [STRUCTURED, "No effusion.", "Possible pneumonia.", "Lungs clear."] * 5
    batch = list(parse_reports(texts, sources=[f"r{i}" for i in range(len(texts))], batch_size=3))
    assert [r.source for r in batch] == [f"r{i}" for i in range(len(texts))]
    for r, t in zip(batch, texts, strict=True):
        single = parse_report(t)
        assert [f.to_dict() for f in r.findings] == [f.to_dict() for f in single.findings]
        assert r.sentences == single.sentences


def test_long_report_truncated_with_note():
    text = "No pneumothorax. " * 200
    r = parse_report(text, max_chars=500)
    assert r.text == text and r.truncated_at is not None and r.truncated_at <= 500
    assert r.encoder_text == text[: r.truncated_at]
    assert "only the first" in r.notes[0]
    assert all(f.end <= r.truncated_at for f in r.findings)
    assert parse_report("No effusion.").truncated_at is None


def test_report_dict_round_trip():
    r = parse_report(STRUCTURED, source="x.txt")
    d = r.to_dict()
    assert d["labels"]["cardiomegaly"] == 1
    back = Report.from_dict(d)
    assert back.to_dict() == d
    assert "findings:" in repr(r)


def test_finding_status_helpers():
    assert (
        FindingStatus.PRESENT.label == 1 and FindingStatus.from_label(-1) is FindingStatus.UNCERTAIN
    )
    with pytest.raises(ValueError):
        FindingStatus.from_label(3)
    f = Finding("edema", "edema", 0, 5, "absent")
    assert f.status is FindingStatus.ABSENT and f.label == 0
    with pytest.raises(ValueError):
        Finding("edema", "edema", 5, 1)


def test_parsed_docs_serialize_for_multiprocessing():
    """nlp.pipe(n_process=...) ships docs as bytes: everything the report needs must survive."""
    from spacy.tokens import Doc

    from medfuse.text.pipeline import doc_to_report

    nlp = get_pipeline()
    text = "FINDINGS: Ground-glass opacities (GGO). No PTX.\nIMPRESSION: GGO stable."
    doc = nlp(text)
    back = Doc(nlp.vocab).from_bytes(doc.to_bytes())
    assert doc_to_report(back).to_dict() == doc_to_report(doc).to_dict()
    assert doc_to_report(back).abbreviations == {"GGO": "Ground-glass opacities"}


def test_label_reports_uncertain_option(tmp_path):
    import csv

    from typer.testing import CliRunner

    from medfuse.cli.main import app

    src = tmp_path / "in.csv"
    src.write_text(
        "id,report\na,Possible right lower lobe pneumonia. No pneumothorax.\n", encoding="utf-8"
    )
    got = {}
    for policy in ("keep", "positive", "negative"):
        out = tmp_path / f"{policy}.csv"
        args = ["label-reports", str(src), "-t", "report", "--id-column", "id", "-o", str(out)]
        res = CliRunner().invoke(app, [*args, "--uncertain", policy])
        assert res.exit_code == 0, res.output
        with out.open(newline="", encoding="utf-8") as fh:
            row = next(csv.DictReader(fh))
        got[policy] = (row["pneumonia"], row["pneumothorax"], row["no_finding"])
    assert got == {
        "keep": ("-1", "0", "0"),
        "positive": ("1", "0", "0"),
        "negative": ("0", "0", "0"),
    }
    res = CliRunner().invoke(app, [*args, "--uncertain", "maybe"])
    assert res.exit_code != 0 and "--uncertain" in res.output


def test_finite_patterns_become_phrases():
    from medfuse.text.lexicon import compile_pattern, load_lexicon, pattern_phrases

    classes = {"SIDE": ["left", "right"]}
    assert pattern_phrases(compile_pattern("prosthetic <SIDE>? shoulder|hip", classes)) == [
        "prosthetic hip",
        "prosthetic left hip",
        "prosthetic left shoulder",
        "prosthetic right hip",
        "prosthetic right shoulder",
        "prosthetic shoulder",
    ]
    assert pattern_phrases(compile_pattern("a|b c*", classes)) is None  # * stays a pattern
    assert pattern_phrases(compile_pattern("a|b|c d|e|f", classes), limit=8) is None
    lex = load_lexicon()
    ids = {p["id"] for p in lex.ruler_patterns() if isinstance(p["pattern"], str)}
    assert (
        "prosthetic right|left|bilateral? shoulder|shoulders|humeral|humerus|hip|hips|knee|knees"
        in ids
    )
    # a pattern with a <NOT> slot keeps its negation ("heart is not enlarged" is absent)
    assert lex.own_negation_patterns() and all("<NOT>" in p for p in lex.own_negation_patterns())


def test_the_tokenizer_is_the_pipelines_and_splits_as_a_fresh_one():
    """get_tokenizer() is the default pipeline's tokenizer (built once per process) and splits
    text exactly as a tokenizer built on its own blank vocabulary does."""
    import threading
    from pathlib import Path

    import spacy

    from medfuse.text.pipeline import get_pipeline, get_tokenizer, make_tokenizer

    got: list = []
    threads = [threading.Thread(target=lambda: got.append(get_tokenizer())) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(t is get_pipeline().tokenizer for t in got)
    fresh = make_tokenizer(spacy.blank("en"))
    repo = Path(__file__).resolve().parents[2]
    texts = [p.read_text() for p in sorted(repo.glob("sample_cases/*/report.txt"))]
    texts += ["R/L lobe 3.5x2.1 cm, s/p CABG; no PTX (series 2, image 40)", "T2-weighted 5-mm"]
    for text in texts:
        assert [(t.text, t.idx) for t in get_tokenizer()(text)] == [
            (t.text, t.idx) for t in fresh(text)
        ]
