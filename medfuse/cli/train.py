"""``medfuse train`` / ``medfuse evaluate`` / ``medfuse train-cohort``: synthetic fusion cohort,
training, calibration and evaluation (heavy imports happen inside the commands)."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from ._progress import PhaseBars, progress_bar

__all__ = ["register"]


def train_cmd(
    config: Path = typer.Argument(..., exists=True, dir_okay=False, help="Training YAML file."),
    out: Path | None = typer.Option(
        None, "--out", "-o", help="Override the model folder (`output`; checkpoints go inside)."
    ),
    resume: bool = typer.Option(True, "--resume/--no-resume", help="Resume from checkpoints."),
    epochs: int | None = typer.Option(None, "--epochs", min=1, help="Override optim.epochs."),
) -> None:
    """Train, calibrate and save a model from a YAML config.

    On your own cohort, the smallest config is

        model: {preset: text_only}     # or image_only, chest_ct_fusion, ...; or init_from: MODEL
        data: {manifest: train.csv, labels: [cardiomegaly, atelectasis]}
        output: models/my_model

    The manifest (CSV or MONAI datalist JSON: case_id, image, report / report_text, one column
    per label, optional patient_id, time, event, split) is validated as a whole first; each
    study is read and preprocessed once into a per-case cache; a study that cannot be read is
    left out and listed in <output>/training/dataset_report.html. Without `data.manifest`,
    medfuse's synthetic cohort is drawn (configs/train/). See docs/training.md.
    """
    from ..train.trainer import load_train_config, train

    cfg = load_train_config(config)
    if out is not None:
        if cfg.data.manifest or cfg.output:
            cfg.output = str(out)
        else:
            cfg.out_dir = str(out)
    cfg.resume = resume
    if epochs is not None:
        cfg.optim.epochs = epochs
    with progress_bar() as p:
        summary = train(cfg, progress=PhaseBars(p))
    val = summary.get("validation", {})
    typer.echo(
        f"model: {summary.get('model_dir')}  epochs: {summary['epochs']} (best {summary['best_epoch']})  "
        f"val macro AUROC {val.get('macro_auroc')}  train {summary['seconds_train']} s"
    )


def dataset_build_cmd(
    config: Path = typer.Argument(..., exists=True, dir_okay=False, help="Training YAML file."),
    workers: int | None = typer.Option(
        None, "--workers", "-w", min=1, help="Processes preprocessing images (data.workers)."
    ),
    engine: str | None = typer.Option(None, "--engine", help="local or ray (data.engine)."),
    report: Path | None = typer.Option(
        None, "--report", help="Folder for dataset_report.json/.html (default: <output>/training)."
    ),
) -> None:
    """Build the dataset of a training config: validate the manifest, read and preprocess every
    study once with the model's transforms into the per-case cache (a second build reuses it),
    fill labels from reports when asked, and write dataset_report.json / .html (counts,
    failures with reasons, label prevalence per split, modalities, scanners, spacing and value
    ranges). `medfuse train` runs this itself when needed."""
    from ..errors import ConfigError
    from ..train.trainer import load_dataset, load_train_config

    cfg = load_train_config(config)
    if not cfg.data.manifest:
        raise ConfigError("the config has no data.manifest", path=config)
    if workers is not None:
        cfg.data.workers = workers
    if engine is not None:
        cfg.data.engine = engine  # type: ignore[assignment]
    with progress_bar() as p:
        ds = load_dataset(cfg, PhaseBars(p))
    folder = report or cfg.work_dir()
    ds.write_report(folder)
    s = ds.summary()
    splits = ", ".join(f"{k}: {v['n']}" for k, v in s["splits"].items())
    typer.echo(
        f"{s['used']} of {s['rows']} cases built in {s['seconds']} s; {s['failed']} left out; "
        f"splits {{{splits}}}"
    )
    for f in s["failures"][:20]:
        typer.echo(f"  left out: row {f['row']} {f['case_id']} ({f['stage']}): {f['reason']}")
    typer.echo(f"report: {folder / 'dataset_report.html'}")


def evaluate_cmd(
    model: str = typer.Argument(..., help="Model folder or shipped model name."),
    out: Path = typer.Option(Path("out/eval"), "--out", "-o", help="Output folder."),
    manifest: Path | None = typer.Option(
        None,
        "--manifest",
        "-m",
        exists=True,
        dir_okay=False,
        help="Evaluate on your cases (manifest CSV / datalist JSON) instead of a synthetic cohort.",
    ),
    split: str | None = typer.Option(
        None, "--split", help="With --manifest: only the rows of this split (train, val or test)."
    ),
    labels_from_reports: bool = typer.Option(
        False, "--labels-from-reports", help="With --manifest: fill empty labels from the reports."
    ),
    cache_dir: Path | None = typer.Option(
        None,
        "--cache-dir",
        help="Per-case input cache (default $MEDFUSE_CACHE_DIR or ~/.cache/medfuse).",
    ),
    workers: int = typer.Option(1, "--workers", "-w", min=1, help="Processes reading studies."),
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
    """Evaluate a model on your manifest (--manifest) or on a freshly generated synthetic test
    cohort: metrics.json (per label n, prevalence, AUROC, AUPRC, F1, sensitivity, specificity at
    the card's threshold, ECE, Brier, each with a bootstrap CI; c-index; modality ablation),
    metrics.html with ROC and calibration plots, and, for a manifest, predictions.csv. A label
    with too few positives is reported as not estimable. With --ablation (synthetic only),
    train and compare the fusion variants."""
    from ..models.model import load_model
    from ..train.evaluate import evaluate_model, run_ablation, test_cohort_for

    m = load_model(model)
    if manifest is not None:
        _evaluate_manifest(m, manifest, out, split, labels_from_reports, cache_dir, workers, n_boot)
        return
    cohort = test_cohort_for(m, n, seed)
    with progress_bar() as p:
        bars = PhaseBars(p)
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


def _evaluate_manifest(m, manifest, out, split, labels_from_reports, cache_dir, workers, n_boot):
    from ..data.dataset import Dataset
    from ..train.evaluate import evaluate_dataset

    with progress_bar() as p:
        bars = PhaseBars(p)
        ds = Dataset.for_model(
            manifest,
            m,
            labels_from_reports=labels_from_reports,
            cache_dir=cache_dir,
            workers=workers,
            progress=bars,
        )
        ev = evaluate_dataset(
            m, ds, out, split=split, n_boot=n_boot, progress=lambda d, t: bars("evaluate", d, t)
        )
    ds.write_report(out)
    res = ev.metrics
    typer.echo(f"n {res['n']}  macro AUROC {res['macro_auroc']}  macro F1 {res['macro_f1']}")
    for name, mm in res["labels"].items():
        if mm.get("estimable"):
            a = mm["auroc"]
            typer.echo(f"  {name:22s} n {mm['n']:5d}  AUROC {a['value']} {a['ci']}")
        else:
            typer.echo(f"  {name:22s} n {mm['n']:5d}  not estimable: {mm['reason']}")
    for f in ds.failures[:10]:
        typer.echo(f"  left out: row {f.row} {f.case_id} ({f.stage}): {f.reason}")
    typer.echo(
        f"written to {out}/ (metrics.json, metrics.html, predictions.csv, dataset_report.html)"
    )


def cohort_cmd(
    out: Path = typer.Option(..., "--out", "-o", help="Cohort folder (cohort.json)."),
    n: int = typer.Option(1000, "--n", min=1, help="Number of cases."),
    seed: int = typer.Option(0, "--seed", min=0, help="Seed."),
    label_noise: float | None = typer.Option(
        None, "--label-noise", min=0.0, max=1.0, help="Label flip rate (default 0.02)."
    ),
    report_missing: float | None = typer.Option(
        None, "--report-missing", min=0.0, max=1.0, help="Share without a report (default 0.1)."
    ),
    image_missing: float | None = typer.Option(
        None, "--image-missing", min=0.0, max=1.0, help="Share without an image (default 0.05)."
    ),
    dicom: bool = typer.Option(False, "--dicom", help="Also write DICOM + report per case."),
    grammar: int | None = typer.Option(
        None,
        "--grammar",
        help="Report grammar (default 4: no label shortcuts, benchmarks/shortcut_audit.py, and "
        "the wording of real reports; 3 writes 'mm' only beside lesions; 2 has shortcuts).",
    ),
) -> None:
    """Draw the synthetic fusion cohort (labels needing image, report or both; censored risk)."""
    from ..train.cohort import make_fusion_cohort

    # options left out take FusionCohortConfig's defaults (the one place they are set)
    given = {"label_noise": label_noise, "report_missing": report_missing,
             "image_missing": image_missing, "grammar": grammar}  # fmt: skip
    with progress_bar() as p:
        bars = PhaseBars(p)
        c = make_fusion_cohort(
            out_dir=out, n=n, seed=seed, write_dicom=dicom,
            **{k: v for k, v in given.items() if v is not None},
            progress=lambda d, t: bars("DICOM", d, t),
        )  # fmt: skip
    if dicom:
        from ..data.manifest import write_manifest

        rows = []
        for case in c.cases:
            name = case["case"]
            rows.append({
                "case_id": name,
                "image": f"studies/{name}/dicom" if case["image_present"] else None,
                "report": f"studies/{name}/report.txt" if case["report_present"] else None,
                "time": round(float(case["time"]), 6),
                "event": int(case["event"]),
                **{k: int(case["labels"][k]) for k in c.labels},
            })  # fmt: skip
        write_manifest(out / "manifest.csv", rows, c.labels)
    prev = dict(zip(c.labels, c.label_matrix().mean(0).round(3).tolist(), strict=True))
    typer.echo(f"{len(c)} cases in {out}; prevalence {prev}; events {c.events.mean():.2f}")
    if dicom:
        typer.echo(f"manifest: {out / 'manifest.csv'}")


def register(app: typer.Typer) -> None:
    app.command("train", help="Train + calibrate a model from a YAML config.")(train_cmd)
    app.command(
        "evaluate", help="Evaluate a model on your manifest or a fresh synthetic test cohort."
    )(evaluate_cmd)
    dataset_app = typer.Typer(
        name="dataset",
        help="Build and inspect the dataset of a training config.",
        no_args_is_help=True,
    )
    dataset_app.command("build", help="Validate the manifest and cache every case once.")(
        dataset_build_cmd
    )
    app.add_typer(dataset_app)
    app.command("train-cohort", help="Draw the synthetic fusion training cohort.")(cohort_cmd)
