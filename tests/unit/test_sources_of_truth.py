"""One source of truth for each fact (issue 24): the places that read a fact read the one
definition of it, and nothing else spells it."""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path

import medfuse
from medfuse import disclaimer
from medfuse.explain.methods import DEFAULT_METHODS, method_needs, saliency_methods
from medfuse.models.labels import CHEST_CT_LABEL_SOURCES, CHEST_CT_LABELS
from medfuse.registry import explainers, image_encoders, text_encoders

REPO = Path(__file__).resolve().parents[2]
PKG = REPO / "medfuse"


def test_version_is_the_package_metadata_version():
    from medfuse._version import __version__

    pyproject = (REPO / "pyproject.toml").read_text()
    declared = re.search(r'^version = "([^"]+)"', pyproject, re.MULTILINE)
    assert declared and medfuse.__version__ == __version__ == declared.group(1)


def test_chest_ct_labels_are_the_shipped_models_and_the_cohorts():
    card = json.loads((PKG / "assets" / "models" / "chest_ct_demo" / "card.json").read_text())
    assert list(CHEST_CT_LABELS) == card["labels"]
    assert card["training_data"]["label_sources"] == CHEST_CT_LABEL_SOURCES
    from medfuse.models.model import preset_spec
    from medfuse.train.cohort import FUSION_LABELS, LABEL_SOURCES

    assert FUSION_LABELS is CHEST_CT_LABELS and LABEL_SOURCES is CHEST_CT_LABEL_SOURCES
    heads = preset_spec("chest_ct_fusion")["heads"]
    assert heads["diagnosis"]["kwargs"]["labels"] == list(CHEST_CT_LABELS)


def test_one_default_list_of_explanation_methods():
    from medfuse.config import ExplainSection, workflow_schema

    assert ExplainSection().methods is DEFAULT_METHODS
    schema = workflow_schema()["$defs"]["ExplainSection"]["properties"]["methods"]
    assert schema["default"] == list(DEFAULT_METHODS)
    doc = json.loads((REPO / "docs" / "workflow.schema.json").read_text())
    assert doc["$defs"]["ExplainSection"]["properties"]["methods"]["default"] == list(
        DEFAULT_METHODS
    )
    assert set(DEFAULT_METHODS) <= set(explainers.names())


def test_registry_entries_carry_their_metadata():
    assert saliency_methods() == {
        "gradcam",
        "gradcam++",
        "hirescam",
        "layercam",
        "occlusion",
        "integrated_gradients",
    }
    assert method_needs("integrated_gradients_text") == "report"
    assert method_needs("modality_shapley") is None
    for name in image_encoders.names():
        assert image_encoders.metadata(name).get("tiny"), name
    for name in ("transformer", "bilstm", "ngram", "findings"):
        assert text_encoders.metadata(name).get("tiny"), name
    assert text_encoders.metadata("hf_local") == {}  # an entry without metadata: empty


def test_one_not_for_clinical_use_wording():
    from medfuse.export import content, source
    from medfuse.models.card import ModelCard

    assert ModelCard(name="x").not_for_clinical_use == disclaimer.MODEL_CARD_STATEMENT
    assert content.DISCLAIMER == disclaimer.REPORT_SYNTHETIC
    assert content.DISCLAIMER_GENERIC == disclaimer.REPORT_GENERIC
    assert source.NOT_FOR_CLINICAL_USE == disclaimer.SHORT
    for text in (disclaimer.REPORT_SYNTHETIC, disclaimer.REPORT_GENERIC, disclaimer.SHORT):
        assert disclaimer.NOT_FOR_CLINICAL_USE in text
    # no other module spells it in a string it writes (docstrings may mention it)
    spelled = []
    for path in PKG.rglob("*.py"):
        if path.name == "disclaimer.py":
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        docs = {
            id(n.body[0].value)
            for n in ast.walk(tree)
            if isinstance(n, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
            and n.body
            and isinstance(n.body[0], ast.Expr)
        }
        spelled += [
            f"{path.relative_to(REPO)}:{n.lineno}"
            for n in ast.walk(tree)
            if isinstance(n, ast.Constant)
            and isinstance(n.value, str)
            and id(n) not in docs
            and "clinical use" in n.value.lower()
        ]
    assert not spelled, spelled


def test_one_json_view_of_an_explanation():
    """prediction.json's "explanation" is Explanation.to_dict, for the assessable labels."""
    import numpy as np

    from medfuse.explain.explanation import Explanation, ModalityContribution, TokenAttribution
    from medfuse.prediction import NOT_ASSESSABLE, FindingPrediction, Prediction

    text = "Smoker. No effusion."
    expl = Explanation(
        labels=["smoking_history", "dyspnea"],
        methods=["integrated_gradients_text", "modality_shapley"],
        probabilities={"smoking_history": 0.9, "dyspnea": 0.2},
        logits={"smoking_history": 2.2, "dyspnea": -1.4},
        report_text=text,
    )
    for label in expl.labels:
        expl.modality[label] = ModalityContribution(label, 0.1, 2.0, 2.2, 0.1, 0.3, 2.1)
        expl.tokens[label] = {
            "integrated_gradients_text": TokenAttribution(
                "integrated_gradients_text", label, ["Smoker"], [(0, 6)], np.array([1.0])
            )
        }
    findings = [
        FindingPrediction("smoking_history", 0.9, 0.5, True, "report"),
        FindingPrediction("dyspnea", 0.2, 0.5, None, "report", NOT_ASSESSABLE, "no report"),
    ]
    pred = Prediction("k", findings, None, ("report",), {}, explanation=expl)
    view = pred.to_dict()["explanation"]
    assert view == expl.to_dict(labels=["smoking_history"])
    entry = view["labels"]["smoking_history"]
    assert entry["modality_contribution"] == expl.modality["smoking_history"].to_dict()
    assert entry["top_report_phrases"][0]["text"].startswith("Smoker")
