"""Train, calibrate, evaluate and save the brain MR demo model (``brain_mr_demo``).

Synthetic data only: the model learns the seeded brain MR cohort of
:mod:`medfuse.train.mr_cohort` (T1 head phantoms + template reports) and has no clinical
validity. Reproduce the shipped model (CPU, about 5 minutes, seeded) with::

    from medfuse.train.mr_demo import MRDemoConfig, train_mr_demo
    summary = train_mr_demo(MRDemoConfig(), "out/train/brain_mr_demo")

(``make train-mr-demo`` runs the same through ``python -m medfuse.train.mr_demo`` and copies the
result to ``medfuse/assets/models/brain_mr_demo``.) Steps:

1. draw the cohort (``MRDemoConfig.cohort``) and split it train / validation (seeded);
2. build the report tokenizer on the training reports and the model: the ``chest_ct_fusion_tiny``
   preset with MR preprocessing (RAS, 5 mm, 40³, z-score), a ``resnet10_3d`` image encoder
   (space-to-depth stem + max-pool, then four 16-wide stages at output stride 4, max-pooled
   features: a 10³ feature grid for Grad-CAM), a BiLSTM report encoder, ``late`` fusion
   (per-modality branches, learned mixture), the :data:`~medfuse.train.mr_cohort.MR_LABELS`
   and no risk head; the stem starts with intensity-threshold filters and zero residual
   branches (:func:`init_intensity_detectors`: from random weights, a few minutes of CPU
   training do not find a 1 cm lesion that is only ~1 z-unit brighter than white matter);
3. train with AdamW (linear warm-up, cosine decay, gradient clipping), per-sample modality
   dropout (the learned missing-modality tokens take the place of a hidden image or report) and
   random left-right flips; keep the epoch with the lowest validation BCE;
4. fit per-label temperatures (NLL) and Youden thresholds on the validation split
   (:func:`medfuse.train.metrics.fit_temperature` / :func:`~medfuse.train.metrics.fit_thresholds`);
5. evaluate (AUROC, AUPRC, ECE, Brier, sensitivity / specificity at the thresholds, bootstrap
   95 % CIs; :func:`medfuse.train.metrics.evaluate_predictions`) on the validation split and on a
   freshly drawn held-back test cohort (clean labels, both modalities; also with the report
   hidden), and save weights + tokenizer + card (:func:`medfuse.models.model.save_model`).
"""

from __future__ import annotations

import copy
import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .mr_cohort import MR_LABEL_SOURCES, MR_LABELS, MRCohort, MRCohortConfig, make_mr_cohort
from .trainer import _index_text

__all__ = [
    "MR_DEMO_NAME",
    "MR_TEST_SEED",
    "MRDemoConfig",
    "build_mr_model",
    "evaluate_mr_model",
    "init_intensity_detectors",
    "mr_test_cohort",
    "predict_mr_cohort",
    "train_mr_demo",
]

log = logging.getLogger(__name__)

MR_DEMO_NAME = "brain_mr_demo"
#: Seed of the held-back MR test cohort (never used for training).
MR_TEST_SEED = 20_241_123

MR_PREPROCESSING: dict[str, Any] = {
    "orientation": "RAS",
    "spacing": [5.0, 5.0, 5.0],
    "modality": "MR",
    "mr_normalization": "zscore",
    "foreground_crop": False,
    "spatial_size": [40, 40, 40],
}


@dataclass
class MRDemoConfig:
    """Everything :func:`train_mr_demo` needs; the defaults built the shipped model."""

    seed: int = 0
    #: :class:`~medfuse.train.mr_cohort.MRCohortConfig` parameters of the training cohort
    cohort: dict[str, Any] = field(default_factory=lambda: {"n": 640, "seed": 0})
    val_fraction: float = 0.2
    #: size of the held-back test cohort (seed :data:`MR_TEST_SEED`, clean labels); 0 skips it
    n_test: int = 200
    preset: str = "chest_ct_fusion_tiny"
    preprocessing: dict[str, Any] = field(default_factory=lambda: dict(MR_PREPROCESSING))
    image_encoder: dict[str, Any] = field(
        default_factory=lambda: {
            "name": "resnet10_3d",
            "kwargs": {
                "width": 16,
                "widths": [16, 16, 16, 16],
                "stem": "s2d",
                "max_pool": True,
                "strides": [1, 1, 1],
                "pool": "max",
            },
        }
    )
    #: start the stem with intensity-threshold filters and zero-initialised residual branches
    #: (see :func:`init_intensity_detectors`); the training changes them like any weight
    init_detectors: bool = True
    #: thresholds (z-score units of the preprocessed input) and gain of those filters
    detector_thresholds: tuple[float, ...] = (2.4, 2.7)
    detector_gain: float = 4.0
    text_encoder: dict[str, Any] = field(
        default_factory=lambda: {"name": "bilstm", "kwargs": {"dim": 32, "dropout": 0.1}}
    )
    fusion: dict[str, Any] = field(
        default_factory=lambda: {"name": "late", "kwargs": {"dim": 32, "dropout": 0.1}}
    )
    tokenizer_min_freq: int = 2
    lr: float = 3e-3
    weight_decay: float = 0.01
    epochs: int = 8
    batch_size: int = 16
    warmup_epochs: float = 0.5
    min_lr_ratio: float = 0.02
    grad_clip: float = 1.0
    drop_image: float = 0.1
    drop_report: float = 0.3
    flip_lr: float = 0.5
    #: threshold rule: "youden" or "sensitivity" (at ``target_sensitivity``)
    thresholds: str = "youden"
    target_sensitivity: float = 0.9
    n_boot: int = 200
    #: torch CPU threads (1 is the fastest on a shared 2-core machine and keeps runs identical)
    num_threads: int = 1
    eval_batch_size: int = 32

    def to_dict(self) -> dict[str, Any]:
        return copy.deepcopy(asdict(self))


# -- model -----------------------------------------------------------------------------------------
def init_intensity_detectors(
    encoder: Any, thresholds: Sequence[float] = (2.4, 2.7), gain: float = 4.0
) -> int:
    """Initialise a space-to-depth ``resnet10_3d`` so that it starts out seeing hyperintense
    voxels; returns the number of detector channels.

    A small focal lesion is a few voxels of the input, only ~1 z-unit brighter than white
    matter, and its contrast to the surrounding tissue is no larger than that of the normal
    anatomy: from random weights a small network trained for a few minutes does not find it.
    Here the stem's first ``8`` output channels start as one-voxel taps of the 2×2×2 block
    (one channel per block position) with batch-norm scale ``gain`` and shift ``-gain * t``
    (``t`` cycling through ``thresholds``, in z-score units): ``relu(gain * (x - t))``, non-zero
    only on voxels brighter than every normal tissue. Every residual branch starts at zero (its
    last batch-norm scale, the usual "zero-init residual" trick) and the 1×1 shortcut
    convolutions as identities, so the detector maps reach the (max-pooled) output unchanged.
    Training then changes all of these weights like any other.
    """
    import torch

    from ..errors import ConfigError

    n = encoder.net
    conv1, bn1 = n.conv1, n.bn1
    block = int(conv1.weight.shape[1])
    if getattr(encoder, "s2d", None) is None or conv1.weight.shape[0] < block:
        raise ConfigError("intensity detectors need a space-to-depth stem at least 8 wide")
    k_mid = tuple(s // 2 for s in conv1.weight.shape[2:])
    with torch.no_grad():
        for k in range(block):
            t = float(thresholds[k % len(thresholds)])
            conv1.weight[k].zero_()
            conv1.weight[(k, k, *k_mid)] = 1.0
            bn1.weight[k] = gain
            bn1.bias[k] = -gain * t
        for name in ("layer1", "layer2", "layer3", "layer4"):
            for blk in getattr(n, name):
                blk.bn2.weight.zero_()
                if blk.downsample is not None:
                    conv = blk.downsample[0]
                    if conv.weight.shape[0] == conv.weight.shape[1]:
                        conv.weight.zero_()
                        for c in range(conv.weight.shape[0]):
                            conv.weight[(c, c, 0, 0, 0)] = 1.0
    return block


def build_mr_model(config: MRDemoConfig, train_reports: list[str | None]) -> Any:
    """The untrained model of ``config`` with a tokenizer built on ``train_reports``."""
    from ..models.encoders.text import ReportTokenizer
    from ..models.model import create_model

    tokenizer = ReportTokenizer.from_reports(
        [r for r in train_reports if r], min_freq=config.tokenizer_min_freq, hash_buckets=256
    )
    fusion = copy.deepcopy(config.fusion)
    model = create_model(
        config.preset,
        image_encoder=copy.deepcopy(config.image_encoder),
        text_encoder=copy.deepcopy(config.text_encoder),
        fusion=fusion,
        dim=int(fusion.get("kwargs", {}).get("dim", 32)),
        labels=list(MR_LABELS),
        risk=None,
        preprocessing=dict(config.preprocessing),
        tokenizer=tokenizer,
        description=(
            "Demo brain MR + report model (resnet10_3d width 16, space-to-depth stem and max-pool, "
            "output stride 4, max-pooled features; BiLSTM report encoder; late fusion; labels "
            "focal_lesion, hydrocephalus, headache) trained on the synthetic medfuse brain MR "
            "cohort (T1 head phantoms, template reports). No clinical validity: not for use on "
            "real patients."
        ),
    )
    model.name = MR_DEMO_NAME
    if config.init_detectors:
        init_intensity_detectors(
            model.image_encoder, config.detector_thresholds, config.detector_gain
        )
    return model


# -- data ------------------------------------------------------------------------------------------
class _Inputs:
    """A cohort's model inputs: image array, tokenized reports, presence flags."""

    def __init__(
        self, model: Any, cohort: MRCohort, progress: Callable[[int, int], None] | None = None
    ):
        self.images = cohort.inputs(model.preprocessing, progress=progress)
        self.text = model.tokenize(cohort.reports())
        self.image_present = cohort.image_present()
        self.report_present = cohort.report_present()

    def batch(
        self,
        idx: np.ndarray,
        *,
        drop_image: np.ndarray | None = None,
        drop_report: np.ndarray | None = None,
        flip: np.ndarray | None = None,
    ) -> dict[str, Any]:
        import torch

        img = torch.from_numpy(self.images[idx].astype(np.float32))
        if flip is not None and flip.any():
            f = torch.from_numpy(flip)
            img[f] = img[f].flip(2)  # [B, C, X, Y, Z] in RAS: X is left-right
        ip = self.image_present[idx].copy()
        rp = self.report_present[idx].copy()
        if drop_image is not None:
            ip &= ~drop_image
        if drop_report is not None:
            rp &= ~drop_report
        return {
            "image": img,
            "image_present": torch.from_numpy(ip),
            "text": _index_text(self.text, idx),
            "text_present": torch.from_numpy(rp),
        }


def _logits(
    model: Any,
    data: _Inputs,
    idx: np.ndarray,
    *,
    drop_report: bool = False,
    batch_size: int = 32,
) -> np.ndarray:
    import torch

    model.eval()
    out = []
    with torch.no_grad():
        for s in range(0, len(idx), batch_size):
            part = idx[s : s + batch_size]
            drop = np.ones(len(part), dtype=bool) if drop_report else None
            out.append(model(**data.batch(part, drop_report=drop)).logits.float().numpy())
    return np.concatenate(out) if out else np.zeros((0, len(model.labels)), np.float32)


def predict_mr_cohort(
    model: Any,
    cohort: MRCohort,
    *,
    drop_report: bool = False,
    batch_size: int = 32,
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, np.ndarray]:
    """Raw logits and calibrated probabilities of ``model`` on every case of ``cohort``
    (optionally with every report hidden)."""
    import torch

    data = _Inputs(model, cohort, progress)
    lg = _logits(
        model, data, np.arange(len(cohort)), drop_report=drop_report, batch_size=batch_size
    )
    probs = model.diagnosis_head.probabilities(torch.from_numpy(lg)).numpy()
    return {"logits": lg, "probs": probs}


def mr_test_cohort(n: int = 200, seed: int = MR_TEST_SEED, **params: Any) -> MRCohort:
    """A held-back MR cohort with clean labels and both modalities present."""
    kw = {"label_noise": 0.0, "report_missing": 0.0, "image_missing": 0.0, **params}
    return make_mr_cohort(n=n, seed=seed, **kw)


def evaluate_mr_model(
    model: Any,
    cohort: MRCohort,
    *,
    drop_report: bool = False,
    n_boot: int = 200,
    seed: int = 0,
) -> dict[str, Any]:
    """Metrics of ``model`` on ``cohort`` (clean labels) at the model's thresholds."""
    from .metrics import evaluate_predictions

    pred = predict_mr_cohort(model, cohort, drop_report=drop_report)
    return evaluate_predictions(
        pred["probs"],
        cohort.label_matrix(clean=True),
        model.labels,
        thresholds=model.diagnosis_head.threshold.tolist(),
        n_boot=n_boot,
        seed=seed,
    )


# -- training --------------------------------------------------------------------------------------
def _split(n: int, val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    perm = np.random.default_rng([seed, 0x5B1]).permutation(n)
    n_val = max(1, round(n * val_fraction))
    return np.sort(perm[n_val:]), np.sort(perm[:n_val])


def _bce(logits: np.ndarray, y: np.ndarray) -> float:
    z = logits.astype(np.float64)
    return float(np.mean(np.logaddexp(0.0, z) - y * z))


def train_mr_demo(
    config: MRDemoConfig | None = None,
    out_dir: str | Path | None = "out/train/brain_mr_demo",
    *,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Train, calibrate, evaluate and (with ``out_dir``) save the brain MR demo model; returns a
    summary (timings, history, validation / test metrics, the model under ``"model"``)."""
    import torch

    from ..models.model import save_model
    from .metrics import auroc, evaluate_predictions, fit_temperature, fit_thresholds

    cfg = config or MRDemoConfig()
    say = progress or (lambda msg: log.info("%s", msg))
    t0 = time.perf_counter()
    threads = torch.get_num_threads()
    if cfg.num_threads > 0:
        torch.set_num_threads(cfg.num_threads)
    try:
        torch.manual_seed(cfg.seed)
        cohort = make_mr_cohort(MRCohortConfig.from_dict(dict(cfg.cohort)))
        train_idx, val_idx = _split(len(cohort), cfg.val_fraction, cfg.seed)
        reports = cohort.reports()
        torch.manual_seed(cfg.seed)
        model = build_mr_model(cfg, [reports[i] for i in train_idx])
        data = _Inputs(model, cohort)
        y = cohort.label_matrix()
        t_data = time.perf_counter() - t0
        say(
            f"cohort {len(cohort)} cases ({len(train_idx)} train, {len(val_idx)} validation) "
            f"ready in {t_data:.1f} s"
        )

        opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        steps_per_epoch = math.ceil(len(train_idx) / cfg.batch_size)
        total = steps_per_epoch * cfg.epochs
        warmup = round(cfg.warmup_epochs * steps_per_epoch)

        def lr_at(step: int) -> float:
            if step < warmup:
                return cfg.lr * (step + 1) / max(1, warmup)
            frac = (step - warmup) / max(1, total - warmup)
            cos = 0.5 * (1 + math.cos(math.pi * frac))
            return cfg.lr * (cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * cos)

        head = model.diagnosis_head
        history: list[dict[str, Any]] = []
        best: tuple[float, int, dict[str, Any]] | None = None
        step = 0
        for epoch in range(cfg.epochs):
            t_ep = time.perf_counter()
            model.train()
            rng = np.random.default_rng([cfg.seed, epoch, 0xE90C])
            perm = rng.permutation(train_idx)
            torch.manual_seed(cfg.seed * 1009 + epoch)
            running = 0.0
            for s in range(0, len(perm), cfg.batch_size):
                idx = perm[s : s + cfg.batch_size]
                drop_img = rng.random(len(idx)) < cfg.drop_image
                drop_rep = (rng.random(len(idx)) < cfg.drop_report) & ~drop_img
                flip = rng.random(len(idx)) < cfg.flip_lr
                batch = data.batch(idx, drop_image=drop_img, drop_report=drop_rep, flip=flip)
                loss = head.loss(model(**batch).logits, torch.from_numpy(y[idx]))
                for g in opt.param_groups:
                    g["lr"] = lr_at(step)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                if cfg.grad_clip:
                    torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
                opt.step()
                step += 1
                running += float(loss.detach()) * len(idx)
            lv = _logits(model, data, val_idx, batch_size=cfg.eval_batch_size)
            val_bce = _bce(lv, y[val_idx])
            aucs = {k: round(auroc(y[val_idx, j], lv[:, j]), 4) for j, k in enumerate(MR_LABELS)}
            history.append(
                {
                    "epoch": epoch + 1,
                    "train_loss": round(running / len(perm), 5),
                    "val_bce": round(val_bce, 5),
                    "val_auroc": aucs,
                    "seconds": round(time.perf_counter() - t_ep, 1),
                }
            )
            say(f"epoch {epoch + 1}/{cfg.epochs}: {history[-1]}")
            if best is None or val_bce < best[0]:
                best = (val_bce, epoch + 1, copy.deepcopy(model.state_dict()))
        assert best is not None
        model.load_state_dict(best[2])
        t_train = time.perf_counter() - t0 - t_data

        # calibration on the validation split
        lv = _logits(model, data, val_idx, batch_size=cfg.eval_batch_size)
        yv = y[val_idx]
        temps = [fit_temperature(lv[:, j], yv[:, j]) for j in range(lv.shape[1])]
        pv = 1.0 / (1.0 + np.exp(-lv / np.asarray(temps)))
        ths = fit_thresholds(
            pv, yv, method=cfg.thresholds, target_sensitivity=cfg.target_sensitivity
        )
        head.set_calibration(temps, ths)
        metrics: dict[str, Any] = {
            "validation": evaluate_predictions(
                pv, yv, model.labels, thresholds=ths, n_boot=cfg.n_boot, seed=cfg.seed
            )
        }
        test_info = None
        if cfg.n_test:
            test = mr_test_cohort(cfg.n_test)
            metrics["test"] = evaluate_mr_model(model, test, n_boot=cfg.n_boot, seed=cfg.seed)
            metrics["test_no_report"] = evaluate_mr_model(
                model, test, drop_report=True, n_boot=cfg.n_boot, seed=cfg.seed
            )
            test_info = {"n": len(test), "seed": MR_TEST_SEED, "config": test.config.to_dict()}
        model.eval()
        t_total = time.perf_counter() - t0
        training_data = {
            "synthetic": True,
            "generator": "medfuse.train.mr_cohort (seeded T1 head phantoms of medfuse.synth + "
            "template reports)",
            "cohort": cohort.config.to_dict(),
            "n_train": len(train_idx),
            "n_validation": len(val_idx),
            "label_sources": {k: MR_LABEL_SOURCES[k] for k in model.labels},
            "test_cohort": test_info,
            "modality_dropout": {"image": cfg.drop_image, "report": cfg.drop_report},
            "training": {
                "config": cfg.to_dict(),
                "epochs_run": cfg.epochs,
                "best_epoch": best[1],
                "history": history,
                "seconds_data": round(t_data, 1),
                "seconds_train": round(t_train, 1),
                "seconds_total": round(t_total, 1),
                "device": "cpu",
                "torch_threads": torch.get_num_threads(),
                "reproduce": "from medfuse.train.mr_demo import MRDemoConfig, train_mr_demo; "
                "train_mr_demo(MRDemoConfig(), 'out/train/brain_mr_demo')",
            },
        }
        summary: dict[str, Any] = {
            "seconds_data": round(t_data, 1),
            "seconds_train": round(t_train, 1),
            "seconds_total": round(t_total, 1),
            "best_epoch": best[1],
            "history": history,
            "temperatures": temps,
            "thresholds": ths,
            "metrics": metrics,
            "model": model,
        }
        if out_dir is not None:
            folder = save_model(
                model,
                None,
                out_dir,
                training_data=training_data,
                metrics=metrics,
                intended_use=(
                    "Demonstrations and tests of medfuse on brain MR (the sample case "
                    "sample_cases/mr_sag_0001, workflows/brain_mr_research.yaml)."
                ),
                limitations=(
                    "Trained only on synthetic T1 head phantoms and template reports; it has no "
                    "clinical validity and must not be applied to real patients. It knows three "
                    "labels of a toy generative model (docs/model_card_brain_mr.md)."
                ),
                extra={"calibration": {"method": "temperature", "thresholds": cfg.thresholds}},
            )
            summary["model_dir"] = str(folder)
        say(f"done in {t_total:.1f} s (data {t_data:.1f} s, training {t_train:.1f} s)")
        return summary
    finally:
        torch.set_num_threads(threads)


def main(argv: list[str] | None = None) -> int:
    """``python -m medfuse.train.mr_demo [OUT_DIR]``: train with the default config."""
    import json
    import sys

    args = list(sys.argv[1:] if argv is None else argv)
    out = args[0] if args else "out/train/brain_mr_demo"
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    summary = train_mr_demo(MRDemoConfig(), out, progress=lambda m: print(m, flush=True))
    brief = {
        k: summary[k]
        for k in ("model_dir", "seconds_data", "seconds_train", "seconds_total", "best_epoch")
    }
    for split in ("validation", "test", "test_no_report"):
        m = summary["metrics"].get(split)
        if m:
            brief[split] = {
                lab: {"auroc": v["auroc"], "ece": v["ece"]} for lab, v in m["labels"].items()
            }
    print(json.dumps(brief, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
