"""predict(): calibrated findings, risk, explicit missing modality, prediction.json schema."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import numpy as np
import pytest

import medfuse
from medfuse.errors import ConfigError, InputError
from medfuse.prediction import PREDICTION_SCHEMA_VERSION, Prediction

REPO = Path(__file__).resolve().parents[2]
SAMPLE_CASES = REPO / "sample_cases"

SCHEMA = json.loads((REPO / "docs" / "prediction.schema.json").read_text())


def _valid(doc: dict) -> None:
    jsonschema.validate(doc, SCHEMA, cls=jsonschema.Draft202012Validator)


@pytest.fixture(scope="module")
def model():
    return medfuse.load_model("chest_ct_demo")


@pytest.fixture(scope="module")
def study():
    return medfuse.read_study(SAMPLE_CASES / "chest_ct_0002")


@pytest.fixture(scope="module")
def report():
    return medfuse.read_report(SAMPLE_CASES / "chest_ct_0002" / "report.txt")


@pytest.fixture(scope="module")
def full(model, study, report) -> Prediction:
    return medfuse.predict(model, (study, report), explain=["gradcam", "modality_shapley"])


def test_findings_are_calibrated_and_thresholded_by_the_card(model, full):
    card = model.card
    assert full.labels == list(card.labels)
    for f, t in zip(full.findings, card.thresholds, strict=True):
        assert 0.0 <= f.probability <= 1.0
        assert f.threshold == pytest.approx(t)
        assert f.positive == (f.probability >= f.threshold)
        assert f.evidence == card.training_data["label_sources"][f.label]
    # the same numbers as the model's own calibrated forward pass
    batch = model.prepare(volumes=[full.case.volume], reports=[full.case.report])
    probs = model.eval().predict_proba(**batch)[0].numpy()
    np.testing.assert_allclose([f.probability for f in full.findings], probs, atol=1e-6)


def test_prediction_document_matches_the_schema(full, study):
    doc = full.to_dict()
    _valid(doc)
    assert doc["schema_version"] == PREDICTION_SCHEMA_VERSION
    assert doc["modalities_used"] == ["image", "report"]
    assert doc["study_instance_uid"] == study.study_instance_uid
    assert doc["series_instance_uid"] == study.volume.series_instance_uid
    assert doc["model"]["sha256"] == medfuse.load_model("chest_ct_demo").card.weights_sha256
    assert doc["risk"]["kind"] == "cox" and "hazard" in doc["risk"]["meaning"]
    assert doc["preprocessing"]["steps"], "the preprocessing record is in the output"
    per_label = doc["explanation"]["labels"]
    assert set(per_label) == set(full.labels)
    for label, entry in per_label.items():
        if full.finding(label).evidence == "report":  # no image map for a report-only label
            assert "saliency" not in entry
        else:
            for peak in entry["saliency"]["peaks"]:
                ras, lps = peak["ras_mm"], peak["lps_mm"]
                assert lps == [-ras[0], -ras[1], ras[2]]
                assert isinstance(peak["instance_number"], int)
            assert entry["saliency"]["peak"] == entry["saliency"]["peaks"][0]
        c = entry["modality_contribution"]
        assert sum(c["fractions"].values()) == pytest.approx(1.0, abs=1e-3)
    json.dumps(doc, allow_nan=False)  # strict JSON


def test_saliency_peaks_are_source_voxels_with_their_instance_numbers(full, study):
    import pydicom

    vol = study.volume
    numbers = {}
    for f in vol.source_files:
        ds = pydicom.dcmread(f, stop_before_pixels=True)
        k = round(float(vol.world_to_voxel(np.array([-1, -1, 1]) * ds.ImagePositionPatient)[2]))
        numbers[k] = int(ds.InstanceNumber)
    doc = full.to_dict()["explanation"]["labels"]
    for label in full.labels:
        if full.finding(label).evidence == "report":
            continue
        sal = full.explanation.get_saliency(label, "gradcam")
        assert sal.original.shape == vol.shape[:3]
        np.testing.assert_allclose(sal.original.affine, vol.affine, atol=1e-6)
        arr = sal.original.array
        peaks = doc[label]["saliency"]["peaks"]
        assert 1 <= len(peaks) <= 3
        for peak in peaks:  # inside the source volume, on a voxel, above half the maximum
            ijk = vol.world_to_voxel(np.asarray(peak["ras_mm"]))
            np.testing.assert_allclose(ijk, peak["voxel_original"], atol=0.06)
            assert arr[tuple(peak["voxel_original"])] >= 0.45 * arr.max()
            assert peak["instance_number"] == numbers[peak["voxel_original"][2]]


def test_a_flat_map_has_no_peak(full):
    from medfuse.explain.explanation import Saliency
    from medfuse.explain.render import saliency_peaks

    sal = full.explanation.get_saliency("lung_lesion", "gradcam")
    flat = Saliency("gradcam", "lung_lesion", np.zeros_like(sal.model), sal.model_affine)
    assert saliency_peaks(flat) == []


def test_missing_report_is_explicit(model, study):
    pred = medfuse.predict(model, study)
    assert pred.modalities_used == ("image",)
    assert any("image-only" in w for w in pred.warnings)
    assert pred.explanation is None
    _valid(pred.to_dict())


def test_report_only_prediction(model, report):
    pred = medfuse.predict(model, report)
    assert pred.modalities_used == ("report",)
    assert any("report-only" in w for w in pred.warnings)
    assert pred.series_instance_uid is None and pred.preprocessing is None
    _valid(pred.to_dict())


def test_a_missing_modality_changes_the_prediction(model, study, report, full):
    """The model's learned missing-report token is used, not an empty report."""
    image_only = medfuse.predict(model, study)
    report_only = medfuse.predict(model, report)
    p = np.array([f.probability for f in full.findings])
    assert not np.allclose(p, [f.probability for f in image_only.findings])
    assert not np.allclose(p, [f.probability for f in report_only.findings])


def test_wrong_modality_is_refused(model):
    mr = medfuse.read_study(SAMPLE_CASES / "mr_sag_0001")
    with pytest.raises(InputError, match="reads CT images; this volume is MR") as exc:
        medfuse.predict(model, mr)
    assert exc.value.path is not None


def test_bad_inputs_are_config_errors(model):
    with pytest.raises(ConfigError, match="expected a Case"):
        medfuse.predict(model, 42)
    with pytest.raises(ConfigError, match="nothing to predict"):
        medfuse.predict(model, (None, None))


def test_repr_names_model_and_modalities(full):
    text = repr(full)
    assert "chest_ct_demo" in text and "image+report" in text


def test_explain_only_the_positive_findings(model, study, report, full):
    pred = medfuse.predict(model, (study, report), explain=["gradcam"], labels="positive")
    expected = [f.label for f in full.findings if f.positive] or [
        max(full.findings, key=lambda f: f.probability).label
    ]
    assert pred.explanation.labels == expected


def test_saliency_nifti_round_trip(full, tmp_path):
    import nibabel as nib

    from medfuse.export import ExportOptions

    labels = full.labels[:2]
    medfuse.export(full, tmp_path, ["nifti"], ExportOptions(saliency_labels=labels))
    img = nib.load(tmp_path / "saliency" / "saliency.nii.gz")
    meta = json.loads((tmp_path / "saliency" / "saliency.json").read_text())
    assert meta["labels"] == labels and img.get_data_dtype() == np.int16
    data = np.asarray(img.dataobj, dtype=np.float32)
    for i, label in enumerate(labels):
        ref = full.explanation.get_saliency(label).original
        np.testing.assert_allclose(img.affine, ref.affine, atol=1e-4)
        raw = data[..., i] * meta["scale"][i]
        np.testing.assert_allclose(raw, ref.array, atol=meta["scale"][i] / 30000)
