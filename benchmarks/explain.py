"""Explanation benchmark: Grad-CAM cost vs one forward pass (and vs MONAI's GradCAM), occlusion
forward passes at 128³, and — with the demo model — the pointing game on a synthetic test cohort
and on the real lung CT tumour boxes in ../shared/data.

    .venv/bin/python benchmarks/explain.py                 # speed + occlusion passes (+ demo parts)
    .venv/bin/python benchmarks/explain.py --sizes 96      # one size only
    .venv/bin/python benchmarks/explain.py --cases 40 --out out/explain

Speed: model = the ``chest_ct_fusion`` preset (resnet18_3d, 3 CT windows, transformer report
encoder, cross-attention) at 96³ and 128³, eval mode, batch 1, a random volume and a short
report. "forward" is one ``torch.inference_mode`` forward pass; "medfuse Grad-CAM" is
:func:`medfuse.explain.cam.grad_cam_maps` (one forward + one backward through the heads, frozen
weights, map upsampled to the input grid); "MONAI GradCAM" is ``monai.visualize.GradCAM`` on the
same model and layer (backward through the whole network). Best of ``--repeats`` interleaved runs after
one warm-up (the machine may be shared).

Faithfulness with the demo model (``chest_ct_demo``), on the trainer's held-back synthetic test
cohort (:func:`medfuse.train.evaluate.test_cohort`, the same 500 cases as
``benchmarks/fusion_targets.py``): for every label with a focal finding (``lung_lesion`` and
``suspected_malignancy`` -> the lesion sphere; ``consolidation`` and ``pneumonia`` -> the painted
consolidation; masks from the cohort generator), the pointing game of Grad-CAM on the first
``--cases`` cases with that finding — a hit when the maximum of the map on the original (phantom)
grid lies inside the mask, strictly and within one model voxel (6 mm, i.e. the mask dilated by
one voxel) — and deletion / insertion AUC against random voxel orders on the first
``--deletion-cases``. On the real lung CT (image only): is the Grad-CAM peak of the lesion labels
inside a tumour box (each slice's box, ± half a slice)? No tuning: the model is used as saved.

    .venv/bin/python benchmarks/explain.py --skip-speed        # faithfulness only
"""

from __future__ import annotations

import argparse
import copy
import csv
import json
import logging
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

log = logging.getLogger("benchmarks.explain")
LESION_LABELS = ("nodule", "mass", "suspected_malignancy", "lung_lesion", "lesion")
REPORT = "FINDINGS: Lungs are clear. No pleural effusion.\nIMPRESSION: No acute abnormality."


def _interleaved_times(fns: list, repeats: int) -> list[float]:
    """Best (minimum) wall time of each function over ``repeats`` interleaved rounds after one
    warm-up each: on a shared machine the minimum is the least disturbed run, and interleaving
    exposes all functions to the same load."""
    for fn in fns:
        fn()
    times: list[list[float]] = [[] for _ in fns]
    for _ in range(repeats):
        for fn, acc in zip(fns, times, strict=True):
            t0 = time.perf_counter()
            fn()
            acc.append(time.perf_counter() - t0)
    return [min(t) for t in times]


def speed(sizes: list[int], repeats: int) -> list[dict]:
    """Grad-CAM / forward ratio for medfuse and MONAI, per size."""
    rows = []
    for size in sizes:
        row = _speed_one(size, repeats)
        print(json.dumps(row), flush=True)
        rows.append(row)
    return rows


def _speed_one(size: int, repeats: int) -> dict:
    import medfuse
    from medfuse.explain.cam import cam_target_layer, grad_cam_maps
    from medfuse.explain.context import ExplainContext

    torch.manual_seed(0)
    model = medfuse.create_model(
        "chest_ct_fusion", preprocessing={"spatial_size": [size] * 3}
    ).eval()
    image = torch.rand(1, model.preprocessing.in_channels, size, size, size)
    text = model.tokenize([REPORT])
    label = model.labels.index("lung_lesion")
    ctx = ExplainContext(model, image, text, model.labels)

    def forward():
        with torch.inference_mode():
            model(image=image, text=text)

    def ours():
        grad_cam_maps(ctx, [label])

    from monai.visualize import GradCAM

    class Wrapped(torch.nn.Module):
        """The same model (a copy: MONAI keeps its hooks registered) as tensor -> logits."""

        def __init__(self):
            super().__init__()
            self.m = copy.deepcopy(model)

        def forward(self, x):
            return self.m(image=x, text=text).logits

    wrapped = Wrapped().eval()
    layer = cam_target_layer(model.image_encoder)
    layer_name = "m." + next(n for n, m in model.named_modules() if m is layer)
    monai_cam = GradCAM(nn_module=wrapped, target_layers=layer_name)

    def monai():
        monai_cam(x=image, class_idx=label)
        wrapped.zero_grad(set_to_none=True)

    t_fwd, t_ours, t_monai = _interleaved_times([forward, ours, monai], repeats)
    # cross-check: the same map up to MONAI's scaling (its default normaliser maps the
    # maximum to 0 and the minimum to 1, hence the absolute correlation)
    (m_ours,), _ = grad_cam_maps(ctx, [label])
    m_monai = monai_cam(x=image, class_idx=label)[0, 0].detach().numpy()
    wrapped.zero_grad(set_to_none=True)
    corr = abs(float(np.corrcoef(m_ours.ravel(), m_monai.ravel())[0, 1]))
    return {
        "size": size,
        "forward_ms": round(1000 * t_fwd, 1),
        "gradcam_ms": round(1000 * t_ours, 1),
        "monai_gradcam_ms": round(1000 * t_monai, 1),
        "ratio": round(t_ours / t_fwd, 2),
        "monai_ratio": round(t_monai / t_fwd, 2),
        "abs_corr_with_monai": round(corr, 4),
    }


def occlusion_passes(size: int = 128) -> dict:
    """Forward passes of the default coarse-to-fine occlusion schedule for one label at
    ``size``³ (a narrow model: the count does not depend on the width)."""
    import medfuse
    from medfuse.explain.context import ExplainContext
    from medfuse.explain.occlusion import occlusion

    torch.manual_seed(0)
    model = medfuse.create_model(
        "chest_ct_image_only_tiny",
        preprocessing={"spatial_size": [size] * 3},
        image_encoder_kwargs={"width": 2, "stem": "s2d"},
    ).eval()
    image = torch.rand(1, model.preprocessing.in_channels, size, size, size)
    ctx = ExplainContext(model, image, None, model.labels)
    t0 = time.perf_counter()
    first = occlusion(ctx, [0])[0]
    passes, schedule = first.forward_passes, first.params
    row = {
        "size": size,
        "forward_passes": passes,
        "budget": 200,
        "block_voxels": schedule["block_voxels"],
        "seconds_tiny_model": round(time.perf_counter() - t0, 2),
    }
    print(json.dumps(row), flush=True)
    return row


def _demo_model(name: str = "chest_ct_demo"):
    import medfuse
    from medfuse.errors import ModelError

    try:
        return medfuse.load_model(name)
    except ModelError as exc:
        print(f"model {name!r} not available ({exc}); pointing game skipped")
        return None


#: Which ground-truth mask of the cohort generator each label is pointed at.
FINDING_OF_LABEL = {
    "lung_lesion": "lung_lesion",
    "suspected_malignancy": "lung_lesion",
    "consolidation": "consolidation",
    "pneumonia": "consolidation",
}
#: The labels whose pointing game the issue's target (>= 85 %) applies to.
TARGET_LABELS = ("lung_lesion",)
#: Tolerance of the headline pointing game: one voxel of the demo model's grid (6 mm), i.e. the
#: lesion mask dilated by one model voxel. The strict figure (0 mm) is reported next to it.
TOLERANCE_MM = 6.0


def synthetic_pointing_game(
    model,
    n_cases: int,
    *,
    n_test: int = 500,
    deletion_cases: int = 20,
    tolerance_mm: float = TOLERANCE_MM,
) -> dict | None:
    """Pointing game of Grad-CAM, and deletion / insertion AUC vs random orders, on the trainer's
    held-back synthetic test cohort (:func:`medfuse.train.evaluate.test_cohort`: seed held back,
    clean labels, both modalities, the model's phantom shape).

    For each label with a focal finding (:data:`FINDING_OF_LABEL`) the first ``n_cases`` test
    cases that have the finding are explained with their own report; a hit is the Grad-CAM
    maximum on the original (phantom) grid inside the finding's mask from the cohort generator
    (lesion sphere, painted consolidation), strictly and within ``tolerance_mm``. Deletion /
    insertion (16 steps, baseline = per-channel minimum, 2 random orders) run on the model grid
    for the first ``deletion_cases`` cases of each label."""
    import medfuse
    from medfuse.explain import prepare_context
    from medfuse.explain.faithfulness import deletion_insertion, label_score_fn, pointing_game
    from medfuse.train.evaluate import test_cohort
    from medfuse.types import Case

    labels = [lab for lab in model.labels if lab in FINDING_OF_LABEL]
    if not labels:
        print(f"the demo model has no focal-finding label ({', '.join(model.labels)}); skipped")
        return None
    shape = tuple(model.card.training_data["cohort"]["shape"])
    cohort = test_cohort(n_test, shape=shape)
    by_finding: dict[str, list[int]] = {}
    for finding in {FINDING_OF_LABEL[lab] for lab in labels}:
        key = "lesion" if finding == "lung_lesion" else "consolidation"
        by_finding[finding] = [i for i, c in enumerate(cohort.cases) if c["factors"][key]][:n_cases]
    rows: dict[str, dict] = {}
    t0 = time.perf_counter()
    for lab in labels:
        finding = FINDING_OF_LABEL[lab]
        strict, tol, chance, dist, curves = [], [], [], [], []
        for n, i in enumerate(by_finding[finding]):
            vol = cohort.volume(i)
            mask = cohort.finding_masks(i)[finding]
            case = Case(vol, medfuse.parse_report(cohort.cases[i]["report"]))
            expl = medfuse.explain(model, case, labels=[lab], methods=["gradcam"])
            sal = expl.saliency[lab]["gradcam"]
            r = pointing_game(
                sal.original.array, mask, affine=vol.affine, tolerance_mm=tolerance_mm
            )
            strict.append(r["distance_mm"] == 0.0)
            tol.append(r["hit"])
            chance.append(r["chance"])
            dist.append(r["distance_mm"])
            if n < deletion_cases:
                ctx = prepare_context(model, case)
                res = deletion_insertion(
                    label_score_fn(model, lab, text=ctx.text), ctx.image, sal.model,
                    steps=16, random_repeats=2, seed=n,
                )  # fmt: skip
                curves.append(res.summary())
        row = {
            "finding": finding,
            "n_cases": len(strict),
            "hit_rate_strict": round(float(np.mean(strict)), 3),
            f"hit_rate_tol_{tolerance_mm:g}mm": round(float(np.mean(tol)), 3),
            "median_miss_mm": round(float(np.median([d for d in dist if d > 0] or [0.0])), 1),
            "chance_strict": round(float(np.mean(chance)), 4),
        }
        if curves:
            for key in (
                "deletion_auc",
                "deletion_auc_random",
                "insertion_auc",
                "insertion_auc_random",
            ):
                row[key] = round(float(np.mean([c[key] for c in curves])), 4)
            row["deletion_below_random"] = round(
                float(np.mean([c["deletion_auc"] < c["deletion_auc_random"] for c in curves])), 3
            )
            row["insertion_above_random"] = round(
                float(np.mean([c["insertion_auc"] > c["insertion_auc_random"] for c in curves])), 3
            )
            row["deletion_cases"] = len(curves)
        rows[lab] = row
        print(json.dumps({"synthetic_pointing_game": {lab: row}}), flush=True)
    out = {
        "cohort": {"n": n_test, "seed": "held-back test seed", "shape": list(shape)},
        "tolerance_mm": tolerance_mm,
        "target_labels": [lab for lab in TARGET_LABELS if lab in rows],
        "labels": rows,
        "seconds": round(time.perf_counter() - t0, 1),
    }
    return out


def real_ct_pointing_game(model, out_dir: Path) -> dict | None:
    """Grad-CAM on the real lung CT (Lung_Dx-A0002, image only): is the peak inside a tumour
    box? Writes the figures to ``out_dir``."""
    import medfuse
    from medfuse.explain.faithfulness import box_mask, pointing_game
    from medfuse.types import Case

    root = REPO.parent / "shared" / "data" / "dicom" / "lung_ct_dev" / "Lung_Dx-A0002"
    if not root.is_dir():
        print(f"real lung CT not found at {root}; skipped")
        return None
    vol = medfuse.read_study(root / "series3_ThoraxRoutine_B40f").volume
    boxes = []
    with open(root / "tumour_boxes.csv", newline="") as fh:
        for row in csv.DictReader(fh):
            # LPS mm -> RAS: R = -L, A = -P; each slice box spans ± half the 8 mm slice step
            lo = (-float(row["L_mm_max"]), -float(row["P_mm_max"]), float(row["z_lps_mm"]) - 4)
            hi = (-float(row["L_mm_min"]), -float(row["P_mm_min"]), float(row["z_lps_mm"]) + 4)
            boxes.append((lo, hi))
    labels = [lab for lab in model.labels if lab in LESION_LABELS] or model.labels[:1]
    expl = medfuse.explain(model, Case(vol), labels=labels, methods=["gradcam"])
    mask = box_mask(vol.shape, vol.affine, boxes)
    out_dir.mkdir(parents=True, exist_ok=True)
    result = {}
    for lab in labels:
        sal = expl.saliency[lab]["gradcam"]
        r = pointing_game(sal.original.array, mask, affine=vol.affine)
        result[lab] = {
            "hit": r["hit"],
            f"hit_tol_{TOLERANCE_MM:g}mm": r["distance_mm"] <= TOLERANCE_MM,
            "distance_mm": round(r["distance_mm"], 1),
            "probability": round(expl.probabilities[lab], 4),
        }
        (out_dir / f"lung_ct_A0002_{lab}_gradcam.png").write_bytes(expl.figure_png(lab, "gradcam"))
    result["chance"] = round(float(mask.mean()), 4)
    print(json.dumps({"real_ct_pointing_game": result}), flush=True)
    return result


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=[96, 128])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument(
        "--cases",
        type=int,
        default=60,
        help="test cases with the finding, per label (pointing game)",
    )
    ap.add_argument(
        "--deletion-cases", type=int, default=20, help="of those, cases for deletion / insertion"
    )
    ap.add_argument("--out", type=Path, default=REPO / "out" / "explain")
    ap.add_argument("--skip-speed", action="store_true")
    ap.add_argument(
        "--model", default="chest_ct_demo", help="model for the faithfulness part (name or folder)"
    )
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    print(
        f"# {platform.machine()} {torch.get_num_threads()} threads, torch {torch.__version__}",
        flush=True,
    )
    results: dict = {}
    if not args.skip_speed:
        results["speed"] = speed(args.sizes, args.repeats)
        results["occlusion"] = occlusion_passes(128)
    model = _demo_model(args.model)
    if model is not None:
        results["synthetic_pointing_game"] = synthetic_pointing_game(
            model, args.cases, deletion_cases=args.deletion_cases
        )
        results["real_ct_pointing_game"] = real_ct_pointing_game(model, args.out)
    args.out.mkdir(parents=True, exist_ok=True)
    name = "benchmark.json" if not args.skip_speed else "faithfulness.json"
    (args.out / name).write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
