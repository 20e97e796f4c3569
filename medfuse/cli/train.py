"""``medfuse train`` / ``medfuse evaluate`` / ``medfuse train-cohort``: synthetic fusion cohort,
training, calibration and evaluation (heavy imports happen inside the commands)."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from ._progress import progress_bar

__all__ = ["register"]


class _Bars:
    """A rich progress bar per phase name."""

    def __init__(self, progress) -> None:
        self.p = progress
        self.tasks: dict[str, int] = {}

    def __call__(self, phase: str, done: int, total: int) -> None:
        if phase not in self.tasks:
            self.tasks[phase] = self.p.add_task(phase, total=total)
        self.p.update(self.tasks[phase], completed=done, total=total)


def train_cmd(
    config: Path = typer.Argument(..., exists=True, dir_okay=False, help="Training YAML file."),
    out: Path | None = typer.Option(None, "--out", "-o", help="Override out_dir."),
    resume: bool = typer.Option(True, "--resume/--no-resume", help="Resume from checkpoints."),
    epochs: int | None = typer.Option(None, "--epochs", min=1, help="Override optim.epochs."),
) -> None:
    """Train, calibrate and save a model from a YAML config (see configs/train/)."""
    from ..train.trainer import load_train_config, train

    cfg = load_train_config(config)
    if out is not None:
        cfg.out_dir = str(out)
    cfg.resume = resume
    if epochs is not None:
        cfg.optim.epochs = epochs
    with progress_bar() as p:
        summary = train(cfg, progress=_Bars(p))
    val = summary.get("validation", {})
    typer.echo(
        f"model: {summary.get('model_dir')}  epochs: {summary['epochs']} (best {summary['best_epoch']})  "
        f"val macro AUROC {val.get('macro_auroc')}  train {summary['seconds_train']} s"
    )


def evaluate_cmd(
    model: str = typer.Argument(..., help="Model folder or shipped model name."),
    out: Path = typer.Option(Path("out/eval"), "--out", "-o", help="Output folder."),
    n: int = typer.Option(500, "--n", min=10, help="Cases in the fresh test cohort."),
    seed: int | None = typer.Option(None, "--seed", help="Test cohort seed (default: held-back)."),
    n_boot: int = typer.Option(1000, "--n-boot", min=50, help="Bootstrap resamples."),
    drop_report: bool = typer.Option(False, "--drop-report", help="Hide every report."),
    ablation: Path | None = typer.Option(
        None,
        "--ablation",
        exists=True,
        dir_okay=False,
        help="Training YAML: train image-only, text-only, concat, gated, cross-attention and "
        "late variants on the same splits and evaluate them all (slow).",
    ),
    variants: str = typer.Option(
        "image_only,text_only,concat,gated,cross_attention,late",
        "--variants",
        help="Comma-separated ablation variants to train (with --ablation).",
    ),
    epochs: int | None = typer.Option(
        None, "--epochs", min=1, help="Epoch budget of every ablation variant (default: config's)."
    ),
    reuse: bool = typer.Option(
        False, "--reuse", help="Reuse ablation variants already trained under --out/ablation."
    ),
    write_doc: Path | None = typer.Option(
        None, "--write-doc", help="Write the ablation table into this markdown file."
    ),
) -> None:
    """Evaluate a model on a freshly generated synthetic test cohort (metrics JSON, ROC and
    calibration PNGs, HTML); with --ablation, train and compare the fusion variants."""
    from ..models.model import load_model
    from ..train.evaluate import TEST_SEED, evaluate_model, run_ablation, test_cohort

    m = load_model(model)
    shape = tuple(m.card.training_data.get("cohort", {}).get("shape", (64, 64, 48)))
    cohort = test_cohort(n, TEST_SEED if seed is None else seed, shape=shape)
    with progress_bar() as p:
        bars = _Bars(p)
        res = evaluate_model(
            m,
            cohort,
            out,
            n_boot=n_boot,
            drop_report=drop_report,
            progress=lambda d, t: bars("evaluate", d, t),
        )
        if ablation is not None:
            from ..train.trainer import load_train_config

            names = [v.strip() for v in variants.split(",") if v.strip()]
            tcfg = load_train_config(ablation)
            abl = run_ablation(
                tcfg,
                cohort,
                variants=names,
                out_dir=out / "ablation",
                n_boot=n_boot,
                epochs=epochs,
                reuse=reuse,
                progress=bars,
            )
            (out / "ablation.json").write_text(json.dumps(abl["table"], indent=2) + "\n")
            if write_doc is not None:
                from ..train.evaluate import write_ablation_doc

                note = (
                    f"Reduced budget: every variant trained for at most {epochs} epoch(s) "
                    f"(the config says {tcfg.optim.epochs})."
                    if epochs
                    else ""
                )
                write_ablation_doc(write_doc, abl["table"], n=len(cohort), note=note)
    typer.echo(f"macro AUROC {res['macro_auroc']}  macro ECE {res['macro_ece']}")
    for name, mm in res["labels"].items():
        a = mm["auroc"]
        typer.echo(f"  {name:22s} AUROC {a['value']} {a['ci']}")
    if "c_index" in res:
        typer.echo(f"  c-index {res['c_index']['value']} {res['c_index']['ci']}")
    typer.echo(f"written to {out}/ (metrics.json, metrics.html, roc.png, calibration.png)")


def cohort_cmd(
    out: Path = typer.Option(..., "--out", "-o", help="Cohort folder (cohort.json)."),
    n: int = typer.Option(1000, "--n", min=1, help="Number of cases."),
    seed: int = typer.Option(0, "--seed", min=0, help="Seed."),
    label_noise: float = typer.Option(0.02, "--label-noise", min=0.0, max=1.0),
    report_missing: float = typer.Option(0.1, "--report-missing", min=0.0, max=1.0),
    image_missing: float = typer.Option(0.05, "--image-missing", min=0.0, max=1.0),
    dicom: bool = typer.Option(False, "--dicom", help="Also write DICOM + report per case."),
) -> None:
    """Draw the synthetic fusion cohort (labels needing image, report or both; censored risk)."""
    from ..train.cohort import make_fusion_cohort

    with progress_bar() as p:
        bars = _Bars(p)
        c = make_fusion_cohort(
            out_dir=out, n=n, seed=seed, label_noise=label_noise, report_missing=report_missing,
            image_missing=image_missing, write_dicom=dicom,
            progress=lambda d, t: bars("DICOM", d, t),
        )  # fmt: skip
    prev = dict(zip(c.labels, c.label_matrix().mean(0).round(3).tolist(), strict=True))
    typer.echo(f"{len(c)} cases in {out}; prevalence {prev}; events {c.events.mean():.2f}")


def register(app: typer.Typer) -> None:
    app.command("train", help="Train + calibrate a model from a YAML config.")(train_cmd)
    app.command("evaluate", help="Evaluate a model on a fresh synthetic test cohort.")(evaluate_cmd)
    app.command("train-cohort", help="Draw the synthetic fusion training cohort.")(cohort_cmd)
