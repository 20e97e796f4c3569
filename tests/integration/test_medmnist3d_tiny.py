"""The MedMNIST3D benchmark, tiny: 20 real cases per split, 1 epoch, one seed, through the public
path (NIfTI + manifest -> ``medfuse train`` -> ``medfuse evaluate``, PCA + LR beside it), then
the example workflow (configs/examples/medmnist3d_nifti.yaml) on one of the written volumes:
JSON + HTML with the HiResCAM figure + the saliency NIfTI. Skips when the data is absent."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
DATA = REPO.parent / "shared" / "data" / "medmnist3d"
SET = "vesselmnist3d"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.shared_data,
    pytest.mark.skipif(
        not (DATA / f"{SET}_trainval.npz").is_file(),
        reason=f"real MedMNIST3D data absent ({DATA}/{SET}_trainval.npz; see the data README)",
    ),
]


@pytest.fixture(scope="module")
def bench(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("medmnist3d")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MEDFUSE_CACHE_DIR": str(out / "cache")}
    cmd = [
        sys.executable, str(REPO / "benchmarks" / "medmnist3d.py"), "--out", str(out),
        "--seeds", "1", "--sets", SET, "--epochs", "1", "--limit", "20", "--n-boot", "100",
    ]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "PCA+LR" in proc.stdout and "paper figure" in proc.stdout
    return out


def test_cases_are_1mm_nifti_in_a_train_val_manifest(bench):
    import nibabel as nib

    folder = bench / SET
    with (folder / "manifest.csv").open(encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    assert list(rows[0]) == ["case_id", "image", "abnormal", "split"]
    splits = [r["split"] for r in rows]
    assert splits.count("train") == 20 and splits.count("val") == 20
    assert set(splits) == {"train", "val"}  # the test split is never written or looked for
    for split in ("train", "val"):
        ys = [int(r["abnormal"]) for r in rows if r["split"] == split]
        assert sum(ys) >= 5 and len(ys) - sum(ys) >= 5
    first_val = next(r for r in rows if r["split"] == "val")
    img = nib.load(folder / first_val["image"])
    assert img.shape == (28, 28, 28) and np.allclose(img.header.get_zooms(), 1.0)
    with np.load(DATA / f"{SET}_trainval.npz") as d:
        # the first val row is the first val case of its class, in file order
        y = d["val_labels"].reshape(-1)
        i = int(np.flatnonzero(y == int(first_val["abnormal"]))[0])
        np.testing.assert_array_equal(np.asarray(img.dataobj), d["val_images"][i])


def test_results_have_both_models_the_paired_difference_and_times(bench):
    res = json.loads((bench / "results.json").read_text(encoding="utf-8"))
    (s,) = res["sets"]
    assert s["set"] == SET and s["n_train"] == 20 and s["n_val"] == 20
    (run,) = s["runs"]
    for m in (run["metrics"]["auroc"], run["baseline"]["auroc"]):
        assert 0.0 <= m["value"] <= 1.0 and m["ci"][0] <= m["value"] <= m["ci"][1]
    diff = run["auroc_difference"]
    assert diff["ci"][0] <= diff["value"] <= diff["ci"][1]
    assert diff["value"] == pytest.approx(
        run["auroc_from_predictions_csv"] - run["baseline"]["auroc"]["value"], abs=2e-3
    )
    assert 0.0 <= run["metrics"]["ece"]["value"] <= 1.0
    assert run["train_wall_s"] > 0 and run["epochs_run"] == 1
    assert s["summary"]["medfuse_auroc"]["n"] == 1


def test_model_card_names_data_licence_citation_and_use(bench):
    folder = bench / SET
    card = json.loads((folder / "model" / "card.json").read_text(encoding="utf-8"))
    d = card["description"]
    for words in ("CC BY 4.0", "Scientific Data 10:41", "MedMNIST v2", "not a clinical tool",
                  "test split was not used"):  # fmt: skip
        assert words in d, words
    assert card["labels"] == ["abnormal"] and 0 < card["thresholds"][0] < 1
    assert card["preprocessing"]["modality"] == "generic"
    assert card["preprocessing"]["generic_range"] == [0.0, 255.0]
    td = card["training_data"]
    assert td["counts"] == {"train": 20, "val": 20}
    assert td["augment"]["rotate90"]["prob"] == 0.5
    ev = folder / "eval"
    for name in ("metrics.json", "metrics.html", "predictions.csv"):
        assert (ev / name).is_file(), name
    with (ev / "predictions.csv").open(encoding="utf-8") as fh:
        preds = list(csv.DictReader(fh))
    assert len(preds) == 20 and {p["split"] for p in preds} == {"val"}


def test_example_workflow_on_a_folder_of_nifti_volumes(bench, tmp_path):
    wf = yaml.safe_load((REPO / "configs" / "examples" / "medmnist3d_nifti.yaml").read_text())
    wf["model"] = str(bench / SET / "model")
    path = tmp_path / "wf.yaml"
    path.write_text(yaml.safe_dump(wf), encoding="utf-8")
    inp = tmp_path / "in"
    inp.mkdir()
    src = bench / SET / "images" / "val_0000.nii.gz"
    (inp / src.name).write_bytes(src.read_bytes())
    out = tmp_path / "out"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "medfuse.cli.main", "run", str(path), "--input", str(inp),
         "--out", str(out)],
        capture_output=True, text=True, env=env, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    (study,) = [p for p in out.iterdir() if p.is_dir()]
    pred = json.loads((study / "prediction.json").read_text(encoding="utf-8"))
    (finding,) = pred["findings"]
    assert finding["label"] == "abnormal" and 0.0 <= finding["probability"] <= 1.0
    html = (study / "report.html").read_text(encoding="utf-8")
    assert "<img" in html and "abnormal" in html
    assert (study / "saliency" / "saliency.nii.gz").is_file()


def test_saliency_check_places_each_maps_peak_on_sac_vessel_or_outside(bench):
    check = json.loads((bench / SET / "gradcam.json").read_text(encoding="utf-8"))
    assert (bench / SET / "gradcam.png").is_file() and check["sac_share"] == 0.6
    for case in check["cases"]:  # the tiny model may call no aneurysm positive
        assert 0 < case["sac_voxels"] <= case["shape_voxels"]
        assert [m["method"] for m in case["maps"]] == [
            "gradcam", "gradcam", "hirescam", "layercam", "integrated_gradients"
        ]  # fmt: skip
        assert [m["params"] for m in case["maps"][1:4]] == [{"layer": "net.layer1"}] * 3
        for m in case["maps"]:
            assert m["peak_on"] in ("sac", "vessel", "outside")


def test_local_thickness_is_large_in_a_ball_and_small_in_a_rod():
    sys.path.insert(0, str(REPO / "benchmarks"))
    from medmnist3d import local_thickness

    g = np.indices((28, 28, 28)) - np.array([8, 14, 14])[:, None, None, None]
    ball = (g**2).sum(0) <= 25  # radius 5 at x = 8
    rod = (abs(g[1]) <= 1) & (abs(g[2]) <= 1) & (g[0] >= 0) & (g[0] <= 18)
    lt = local_thickness(ball | rod)
    assert lt[8, 14, 14] >= 4.5 and lt[6, 14, 17] >= 4.5  # the whole ball, its rim too
    assert lt[24, 14, 14] <= 2.0 and lt[0, 0, 0] == 0.0  # the rod; outside
