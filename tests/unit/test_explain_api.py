"""medfuse.explain end to end: the Explanation object, original-grid saliency, token spans,
occlusion budget, pictures and HTML."""

from __future__ import annotations

import gc

import numpy as np
import pytest
from _explain_common import octant_case, octant_model, octant_share, phantom_case, tiny_model

import medfuse
from medfuse.errors import ConfigError
from medfuse.explain import Explanation


@pytest.fixture(scope="module")
def expl() -> Explanation:
    case, _, _ = phantom_case()
    return medfuse.explain(
        tiny_model(),
        case,
        labels=["lung_lesion", "pleural_effusion"],
        methods=["gradcam", "integrated_gradients_text", "attention", "modality_shapley"],
    )


def test_public_api_is_callable_both_ways():
    import medfuse.explain as pkg

    assert callable(medfuse.explain) and callable(pkg)
    assert "explain" in dir(medfuse)


def test_explanation_contents(expl):
    assert expl.labels == ["lung_lesion", "pleural_effusion"]
    assert set(expl.probabilities) == {"lung_lesion", "pleural_effusion"}
    assert expl.modalities_used == ("image", "report")
    assert set(expl.saliency["lung_lesion"]) == {"gradcam", "attention"}
    assert set(expl.tokens["lung_lesion"]) == {"integrated_gradients_text", "attention"}
    assert "text_to_image" in expl.attention and "image_to_text" in expl.attention
    methods = {r.method for r in expl.runs}
    assert methods == set(expl.methods)
    assert all(r.runtime_s >= 0 and isinstance(r.params, dict) for r in expl.runs)
    d = expl.to_dict()  # the one JSON view (prediction.json's "explanation")
    assert d["methods"] == expl.methods and set(d["labels"]) == {"lung_lesion", "pleural_effusion"}
    entry = d["labels"]["lung_lesion"]
    assert entry["saliency"]["method"] == "gradcam" and entry["token_method"]
    assert set(entry["modality_contribution"]) >= {"image", "report", "interaction", "fractions"}
    assert "saliency" not in expl.to_dict(image_maps=set())["labels"]["lung_lesion"]
    assert list(expl.to_dict(labels=["pleural_effusion"])["labels"]) == ["pleural_effusion"]
    import json

    json.dumps(d)


def test_saliency_on_original_grid_has_source_affine(expl):
    case, _, _ = phantom_case()
    sal = expl.saliency["lung_lesion"]["gradcam"]
    assert sal.original is not None
    assert sal.original.shape == case.volume.shape
    np.testing.assert_allclose(sal.original.affine, case.volume.affine)
    assert np.isfinite(sal.original.array).all()
    # every original voxel carries the model-grid value at the same place in mm
    rec = expl.record
    rng = np.random.default_rng(0)
    ijk = np.stack([rng.integers(0, n, 50) for n in case.volume.shape], 1)
    m = np.rint(rec.map_to_model(ijk)).astype(int)
    inside = np.all((m >= 1) & (m < np.asarray(sal.model.shape) - 1), 1)
    assert inside.sum() > 10
    got = sal.original.array[tuple(ijk[inside].T)]
    offsets = [np.array(d) - 1 for d in np.ndindex(3, 3, 3)]
    near = np.stack([sal.model[tuple((m[inside] + d).T)] for d in offsets])
    assert np.all((got >= near.min(0) - 1e-5) & (got <= near.max(0) + 1e-5))


def test_token_attributions_map_to_report_spans(expl):
    case, _, _ = phantom_case()
    text = case.report.text
    attr = expl.tokens["lung_lesion"]["integrated_gradients_text"]
    assert len(attr.tokens) == len(attr.spans) == len(attr.scores)
    spans = attr.span_scores()
    assert spans and all(0 <= s < e <= len(text) for s, e, _ in spans)
    words = {text[s:e].lower() for s, e, _ in spans}
    assert {"mass", "effusion"} <= {w for x in words for w in x.split()}
    assert attr.char_scores(len(text)).shape == (len(text),)


def test_pictures_and_html(expl):
    png = expl.figure_png("lung_lesion", "gradcam")
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000
    assert expl.figure_png("lung_lesion", "gradcam") is png  # rendered once (HTML and PDF share it)
    assert expl.figure_png("lung_lesion", "gradcam", dpi=50) != png
    html = expl._repr_html_()
    assert "<img" in html and "data:image/png;base64," in html
    assert "medfuse-report" in html


def test_report_html_escapes_text():
    from medfuse.explain.explanation import TokenAttribution
    from medfuse.explain.render import report_html

    text = "<script>alert(1)</script> mass & effusion"
    attr = TokenAttribution(
        "m", "lung_lesion", ["a", "b"], [(0, 8), (27, 31)], np.array([1.0, -0.5])
    )
    out = report_html(text, attr)
    assert "<script>" not in out and "&lt;script&gt;" in out and "&amp;" in out
    assert out.count("<span") == 2


def test_occlusion_budget_and_octant():
    expl = medfuse.explain(octant_model(), octant_case(), methods=["occlusion"])
    run = next(r for r in expl.runs if r.method == "occlusion")
    assert run.forward_passes <= 200
    assert run.params["max_passes_per_label"] == 161
    sal = expl.saliency["finding"]["occlusion"]
    assert octant_share(sal.model) > 0.95


def test_integrated_gradients_image_octant():
    expl = medfuse.explain(
        octant_model(),
        octant_case(),
        methods=["integrated_gradients"],
        params={"integrated_gradients": {"n_steps": 8}},
    )
    sal = expl.saliency["finding"]["integrated_gradients"]
    assert sal.signed and octant_share(sal.model) > 0.99


def test_methods_needing_a_missing_modality_are_skipped():
    case, _, _ = phantom_case()
    from medfuse.types import Case

    image_only = Case(case.volume)
    expl = medfuse.explain(
        tiny_model(),
        image_only,
        labels="lung_lesion",
        methods=["gradcam", "integrated_gradients_text"],
    )
    assert "gradcam" in expl.saliency["lung_lesion"]
    assert "lung_lesion" not in expl.tokens
    assert any(r.note.startswith("skipped") for r in expl.runs)
    assert expl.modalities_used == ("image",)


def test_bad_arguments():
    case, _, _ = phantom_case()
    with pytest.raises(ConfigError, match="unknown explanation method"):
        medfuse.explain(tiny_model(), case, methods=["nope"])
    with pytest.raises(ConfigError, match="unknown label"):
        medfuse.explain(tiny_model(), case, labels=["nope"], methods=["gradcam"])


def test_no_memory_growth_over_20_explanations():
    psutil = pytest.importorskip("psutil")
    model, case = octant_model(), octant_case()
    run = lambda: medfuse.explain(model, case, methods=["gradcam", "modality_shapley"])  # noqa: E731
    for _ in range(2):
        run()
    gc.collect()
    rss0 = psutil.Process().memory_info().rss
    for _ in range(20):
        run()
    gc.collect()
    grown = (psutil.Process().memory_info().rss - rss0) / 2**20
    assert grown < 40, f"RSS grew {grown:.1f} MiB over 20 explanations"


def test_report_phrases_only_where_the_report_carries_the_output():
    """A report that moves a label's output by under MIN_REPORT_SHARE gives it no phrases (the
    ranking of its words is noise), in the JSON view and in the exports' note; above it, the
    top phrases are listed."""
    from medfuse.explain.explanation import (
        MIN_REPORT_SHARE,
        ModalityContribution,
        TokenAttribution,
    )
    from medfuse.export.content import no_phrase_note

    text = "Smoker. Heart is enlarged."
    expl = Explanation(
        labels=["cardiomegaly", "smoking_history"],
        methods=["integrated_gradients_text", "modality_shapley"],
        probabilities={"cardiomegaly": 0.9, "smoking_history": 0.9},
        logits={"cardiomegaly": 2.2, "smoking_history": 2.2},
        report_text=text,
    )
    share = {"cardiomegaly": MIN_REPORT_SHARE / 2, "smoking_history": 0.8}
    for label, r in share.items():
        expl.modality[label] = ModalityContribution(label, 1 - r, r, 2.2, 1.2, 1.0, 1.0)
        expl.tokens[label] = {
            "integrated_gradients_text": TokenAttribution(
                "integrated_gradients_text", label, ["Smoker", "enlarged"], [(0, 6), (17, 25)],
                np.array([1.0, 0.5]),
            )
        }  # fmt: skip
    view = expl.to_dict()["labels"]
    assert view["cardiomegaly"]["top_report_phrases"] == []
    assert next(p["text"] for p in view["smoking_history"]["top_report_phrases"]) == "Smoker."
    assert expl.report_phrases("cardiomegaly") == []
    assert "5 % of this output" in no_phrase_note(expl, text, "cardiomegaly")
    note = no_phrase_note(expl, text, "smoking_history")
    assert note.startswith("Integrated gradients")
    assert "(the report's share of this output: 80 %):" in note
