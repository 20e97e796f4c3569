"""Synthetic fusion cohort: determinism, generative model, missingness, caching."""

from __future__ import annotations

import numpy as np
import pytest

from medfuse.errors import ConfigError
from medfuse.train.cohort import (
    FUSION_LABELS,
    LABEL_SOURCES,
    FusionCohortConfig,
    draw_case,
    load_fusion_cohort,
    make_fusion_cohort,
)


def test_cases_are_deterministic_and_seed_dependent():
    cfg = FusionCohortConfig(n=5, seed=7)
    a = [draw_case(cfg, i) for i in range(5)]
    b = [draw_case(cfg, i) for i in range(5)]
    assert a == b
    c = draw_case(FusionCohortConfig(n=5, seed=8), 0)
    assert c["report"] != a[0]["report"] or c["factors"] != a[0]["factors"]


def test_label_model_and_sources():
    cohort = make_fusion_cohort(n=800, seed=1, label_noise=0.0)
    assert set(LABEL_SOURCES) == set(FUSION_LABELS)
    assert {LABEL_SOURCES[k] for k in FUSION_LABELS} == {"image", "report", "both"}
    for case in cohort.cases:
        f, y = case["factors"], case["labels"]
        smoker = f["smoking"] != "never"
        assert y["pneumonia"] == int(f["consolidation"] and f["infection"])
        assert y["suspected_malignancy"] == int(f["lesion"] and (smoker or f["weight_loss"]))
        assert y["smoking_history"] == int(smoker)
        assert y["consolidation"] == int(f["consolidation"])
        assert y["lung_lesion"] == int(f["lesion"])
        assert y == case["labels_clean"]
    prev = cohort.label_matrix().mean(0)
    assert np.all(prev > 0.1) and np.all(prev < 0.6)
    assert 0.4 < cohort.events.mean() < 0.9
    # the history always carries the symptoms; image findings are rarely mentioned
    mentions = np.mean(
        ["mphysem" in c["report"] for c in cohort.cases if c["factors"]["emphysema"]]
    )
    assert mentions < 0.35


def test_grammar_4_writes_mm_without_a_lesion():
    """Grammar 4 writes slice thicknesses and vessel / node measurements in any report, so "mm"
    alone says nothing about a lesion (grammar 3 wrote it only in lesion sentences, and the demo
    model trained on it read "reconstructed at 5 mm." as lesion evidence)."""
    cfg = FusionCohortConfig(n=400, seed=3, report_missing=0.0, label_noise=0.0, grammar=4)
    cases = [draw_case(cfg, i) for i in range(400)]
    without = [c["report"] for c in cases if not c["factors"]["lesion"]]
    with_lesion = [c["report"] for c in cases if c["factors"]["lesion"]]
    rate = [np.mean([" mm" in r for r in reports]) for reports in (without, with_lesion)]
    assert rate[0] > 0.85 and abs(rate[0] - rate[1]) < 0.08, rate  # 2,000 reports: 0.950 / 0.963
    mentioned = [c for c in cases if c["factors"]["lesion"] and "nodule" in c["report"]]
    assert mentioned and any("Pleura: " in c["report"] for c in cases)
    # grammar 3 keeps its one technique line, without a thickness
    g3 = draw_case(FusionCohortConfig(n=1, seed=3, grammar=3), 0)["report"]
    assert "TECHNIQUE: Axial CT images of the chest without intravenous contrast." in g3
    assert " mm" not in g3.split("FINDINGS:")[0]


def test_noise_and_missingness_rates():
    cohort = make_fusion_cohort(
        n=1000, seed=2, label_noise=0.1, report_missing=0.2, image_missing=0.1
    )
    flips = (cohort.label_matrix() != cohort.label_matrix(clean=True)).mean()
    assert 0.07 < flips < 0.13
    rep, img = cohort.report_present(), cohort.image_present()
    assert 0.15 < 1 - rep.mean() < 0.25 and 0.06 < 1 - img.mean() < 0.14
    assert np.all(rep | img)
    assert all(r is None for r, p in zip(cohort.reports(), rep, strict=True) if not p)


def test_config_is_checked():
    with pytest.raises(ConfigError):
        FusionCohortConfig(label_noise=1.5)
    with pytest.raises(ConfigError):
        FusionCohortConfig.from_dict({"bogus": 1})
    with pytest.raises(ConfigError):
        FusionCohortConfig(shape=(8, 8, 8))


def test_volumes_show_the_image_findings():
    cohort = make_fusion_cohort(n=40, seed=3, shape=(32, 32, 24))
    cons = next(i for i, c in enumerate(cohort.cases) if c["factors"]["consolidation"])
    v = cohort.volume(cons)
    assert v.shape == (32, 32, 24) and v.modality == "CT"
    emph = [i for i, c in enumerate(cohort.cases) if c["factors"]["emphysema"]][:3]
    norm = [i for i, c in enumerate(cohort.cases) if not c["factors"]["emphysema"]][:3]

    def lung_mean(i: int) -> float:
        a = cohort.volume(i).array
        return float(a[(a < -700)].mean())

    assert max(lung_mean(i) for i in emph) < min(lung_mean(i) for i in norm)


def test_inputs_are_cached_on_disk(tmp_path):
    pre = {"spacing": [12.0, 12.0, 12.0], "spatial_size": [24, 16, 16], "modality": "CT",
           "ct_windows": ["lung"], "foreground_crop": True}  # fmt: skip
    c = make_fusion_cohort(n=4, seed=4, shape=(32, 32, 24), out_dir=tmp_path)
    x = c.inputs(pre)
    assert x.shape == (4, 1, 24, 16, 16) and x.dtype == np.float16
    assert len(list(tmp_path.glob("inputs_*.npy"))) == 1
    again = load_fusion_cohort(tmp_path)
    assert again.cases == c.cases
    np.testing.assert_array_equal(again.inputs(pre), x)


def test_a_cohort_of_another_grammar_version_is_drawn_again(tmp_path, caplog):
    import json

    make_fusion_cohort(n=3, seed=4, shape=(32, 32, 24), out_dir=tmp_path)
    path = tmp_path / "cohort.json"
    data = json.loads(path.read_text())
    for case in data["cases"]:
        case["report"] = "old grammar"
    path.write_text(json.dumps(data))
    with caplog.at_level("INFO", logger="medfuse.train.cohort"):
        make_fusion_cohort(n=3, seed=4, shape=(32, 32, 24), out_dir=tmp_path)
    assert "reusing" in caplog.text  # same version: the saved reports are kept
    data["grammar_version"] = 1
    path.write_text(json.dumps(data))
    fresh = make_fusion_cohort(n=3, seed=4, shape=(32, 32, 24), out_dir=tmp_path)
    assert "old grammar" not in {c["report"] for c in fresh.cases}
    assert load_fusion_cohort(tmp_path).current


def test_write_study_is_readable(tmp_path):
    import medfuse

    c = make_fusion_cohort(n=2, seed=5, shape=(32, 32, 16), report_missing=0.0, image_missing=0.0)
    folder = c.write_study(0, tmp_path / "s")
    vol = medfuse.read_study(folder / "dicom").volume
    np.testing.assert_array_equal(vol.array, c.volume(0).array)
    assert (folder / "report.txt").read_text() == c.cases[0]["report"]


def test_finding_masks_mark_the_painted_findings():
    cohort = make_fusion_cohort(n=30, seed=4, shape=(48, 48, 36))
    les = next(i for i, c in enumerate(cohort.cases) if c["factors"]["lesion"])
    cons = next(i for i, c in enumerate(cohort.cases) if c["factors"]["consolidation"])
    none = next(
        i
        for i, c in enumerate(cohort.cases)
        if not c["factors"]["lesion"] and not c["factors"]["consolidation"]
    )
    arr = cohort.volume(les).array
    m = cohort.finding_masks(les)
    assert m["lung_lesion"].shape == arr.shape and m["lung_lesion"].any()
    # lesion voxels carry exactly the lesion value (30 HU): nothing is painted over them
    assert np.all(arr[m["lung_lesion"]] == 30)
    centre, radius = m["lesion_sphere_ras"]
    assert 8.0 <= radius <= 22.0 and len(centre) == 3
    mc = cohort.finding_masks(cons)["consolidation"]
    vals = cohort.volume(cons).array[mc]
    assert mc.sum() > 20 and abs(float(vals.mean()) + 100.0) < 15.0
    m0 = cohort.finding_masks(none)
    assert not m0["lung_lesion"].any() and not m0["consolidation"].any()
    assert m0["lesion_sphere_ras"] is None


def test_focal_findings_stay_visible():
    """Image version 2: a lesion sits in aerated lung (never in an effusion or a consolidation:
    a shell of lung surrounds it) and a consolidation covers at least half of its ellipsoid."""
    from medfuse.synth.phantom import HU_LESION

    cohort = make_fusion_cohort(n=60, seed=11, shape=(64, 64, 48))
    spacing = np.abs(np.diag(cohort.volume(0).affine)[:3])
    checked = {"lesion": 0, "consolidation": 0}
    for i, case in enumerate(cohort.cases):
        f = case["factors"]
        if not (f["lesion"] or f["consolidation"]):
            continue
        vol, masks = cohort.volume(i), cohort.finding_masks(i)
        if f["lesion"]:
            (cr, ca, cs), radius = masks["lesion_sphere_ras"]
            ijk = np.indices(vol.shape).reshape(3, -1).T
            ras = ijk @ vol.affine[:3, :3].T + vol.affine[:3, 3]
            d = np.linalg.norm(ras - [cr, ca, cs], axis=1).reshape(vol.shape)
            shell = (d > radius + 0.5) & (d <= radius + max(spacing) + 0.5)
            assert np.all(vol.array[masks["lung_lesion"]] == HU_LESION), i
            assert np.mean(vol.array[shell] < -500) > 0.9, (i, f)
            checked["lesion"] += 1
        if f["consolidation"]:
            a, b, c = f["consolidation_radii_mm"]
            full = 4 / 3 * np.pi * a * b * c / np.prod(spacing)
            assert masks["consolidation"].sum() >= 0.5 * full, (i, f)
            checked["consolidation"] += 1
    assert min(checked.values()) >= 15, checked


def test_finding_maps_on_the_model_grid(tmp_path):
    from medfuse.transforms import PreprocessingConfig

    cohort = make_fusion_cohort(n=6, seed=5, shape=(32, 32, 24), out_dir=tmp_path)
    pre = PreprocessingConfig.from_dict(
        {"spacing": [12.0, 12.0, 12.0], "spatial_size": [24, 16, 16], "ct_windows": ["lung"]}
    )
    maps = cohort.finding_maps(pre, ["consolidation", "lung_lesion"])
    x = cohort.inputs(pre)
    assert maps.shape == (6, 2, *x.shape[2:]) and maps.dtype == np.uint8
    for i, case in enumerate(cohort.cases):
        assert bool(maps[i, 0].any()) <= case["factors"]["consolidation"]
        assert bool(maps[i, 1].any()) <= case["factors"]["lesion"]
    # cached on disk next to the inputs, reloaded by a fresh cohort object
    again = load_fusion_cohort(tmp_path).finding_maps(pre, ["consolidation", "lung_lesion"])
    assert np.array_equal(again, maps)
    with pytest.raises(ConfigError):
        cohort.finding_maps(pre, ["emphysema"])
