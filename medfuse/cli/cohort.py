"""``medfuse cohort``: write seeded synthetic studies (DICOM + report + ground truth)."""

from __future__ import annotations

import enum
from pathlib import Path

import typer

from ._progress import progress_bar

__all__ = ["register"]


class TransferSyntax(str, enum.Enum):
    """Transfer syntaxes the generator can write (kept in sync with
    ``medfuse.synth.dicom_write.TRANSFER_SYNTAXES``; not imported here to keep the CLI light)."""

    explicit = "explicit"
    implicit = "implicit"
    rle = "rle"
    jpegls = "jpegls"
    jpeg2000 = "jpeg2000"


cohort_app = typer.Typer(
    name="cohort",
    help=(
        "Make synthetic studies: genuine DICOM series of a chest CT / brain MR phantom, a matching "
        "radiology report and the ground truth (lesion positions, labels, affine). Deterministic "
        "per seed; no real patient data."
    ),
    no_args_is_help=True,
)


def _parse_triple(value: str, name: str, cast: type) -> tuple:
    parts = [p.strip() for p in value.replace("x", ",").split(",") if p.strip()]
    try:
        nums = tuple(cast(p) for p in parts)
    except ValueError:
        nums = ()
    if len(nums) != 3 or any(n <= 0 for n in nums):
        raise typer.BadParameter(
            f"expected three positive numbers like 64,64,48, got {value!r}", param_hint=name
        )
    return nums


@cohort_app.command("make")
def make(
    n: int = typer.Option(10, "--n", min=1, help="Number of studies (case_0001 ... case_NNNN)."),
    seed: int = typer.Option(
        0, "--seed", min=0, help="Seed; the same seed writes byte-identical files."
    ),
    out: Path = typer.Option(..., "--out", "-o", help="Output folder (created)."),
    shape: str = typer.Option(
        "64,64,48", "--shape", help="Volume size X,Y,Z (columns, rows, slices); spacing follows."
    ),
    transfer_syntax: TransferSyntax | None = typer.Option(
        None,
        "--transfer-syntax",
        "-t",
        case_sensitive=False,
        help="Force one transfer syntax for all cases (default: explicit, every 5th case RLE).",
    ),
    overwrite: bool = typer.Option(
        False, "--overwrite", help="Replace DICOM files of existing cases."
    ),
) -> None:
    """Write a cohort of N synthetic studies (chest CT; one sagittal MR when N >= 3).

    Chest CTs get random nodules / masses, cardiomegaly, pleural effusion and emphysema; when
    N >= 3 the last case is a sagittal brain MR. Each case folder holds dicom/, report.txt and
    ground_truth.json; OUT/cohort.json lists the cases and their labels, and OUT/manifest.csv is
    the same cohort as a training / evaluation manifest (docs/training.md).

    Example: medfuse cohort make --n 20 --seed 7 --out data/synth --shape 96,96,64
    """
    from rich.console import Console

    from ..synth.cohort import make_cohort

    shape_t = _parse_triple(shape, "--shape", int)
    console = Console(stderr=True)
    with progress_bar() as bar:
        task = bar.add_task("studies", total=n)

        def tick(done: int, total: int, name: str) -> None:
            bar.update(task, completed=done, description=name)

        truths = make_cohort(
            out,
            n,
            seed,
            shape=shape_t,
            transfer_syntax=transfer_syntax.value if transfer_syntax else None,
            overwrite=overwrite,
            progress=tick,
        )
    _write_manifest(out, truths)
    for i, t in enumerate(truths, 1):
        positive = [k for k, v in t["labels"].items() if v] or ["normal"]
        console.print(
            f"case_{i:04d}  {t['kind']:8s} {t['dicom']['transfer_syntax']:9s} {', '.join(positive)}"
        )
    console.print(
        f"[green]wrote {n} studies to {out}[/green] (manifest for medfuse train / evaluate: "
        f"{out / 'manifest.csv'})"
    )


def _write_manifest(out: Path, truths: list[dict]) -> None:
    """OUT/manifest.csv: one row per study (DICOM folder, report, labels; a label a study's kind
    does not have is left empty, i.e. unknown)."""
    from ..data.manifest import write_manifest

    labels: list[str] = []
    for t in truths:
        labels.extend(k for k in t["labels"] if k not in labels)
    rows = []
    for i, t in enumerate(truths, 1):
        case = f"case_{i:04d}"
        has_report = (out / case / "report.txt").is_file()
        rows.append(
            {
                "case_id": case,
                "image": f"{case}/dicom",
                "report": f"{case}/report.txt" if has_report else None,
                **{k: int(bool(v)) for k, v in t["labels"].items()},
            }
        )
    write_manifest(out / "manifest.csv", rows, labels)


@cohort_app.command("samples")
def samples(
    out: Path = typer.Option(
        Path("sample_cases"), "--out", "-o", help="Folder for the sample cases."
    ),
) -> None:
    """Rewrite the three committed sample cases exactly as committed.

    chest_ct_0001: explicit VR, 18 mm right upper lobe nodule. chest_ct_0002: RLE Lossless,
    signed pixels, 40 mm left lower lobe mass, cardiomegaly, right effusion. mr_sag_0001:
    sagittal T1 brain MR with a 12 mm lesion.

    Example: medfuse cohort samples --out sample_cases
    """
    from rich.console import Console

    from ..synth.cohort import make_samples

    with progress_bar() as bar:
        task = bar.add_task("samples", total=3)
        make_samples(
            out, progress=lambda d, _t, name: bar.update(task, completed=d, description=name)
        )
    Console(stderr=True).print(f"[green]wrote sample cases to {out}[/green]")


@cohort_app.command("series")
def series(
    out: Path = typer.Option(..., "--out", "-o", help="Output folder (DICOM goes to OUT/dicom)."),
    shape: str = typer.Option("512,512,500", "--shape", help="Volume size X,Y,Z."),
    spacing: str = typer.Option("0.7,0.7,0.8", "--spacing", help="Voxel size in mm along X,Y,Z."),
    seed: int = typer.Option(0, "--seed", min=0, help="Seed."),
    transfer_syntax: TransferSyntax = typer.Option(
        TransferSyntax.explicit,
        "--transfer-syntax",
        "-t",
        case_sensitive=False,
        help="Transfer syntax.",
    ),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing series in OUT."),
) -> None:
    """Write one large chest CT series quickly (for load benchmarks).

    Slices are generated and written one at a time, so memory stays small.

    Example: medfuse cohort series --out .bench/ct512 --shape 512,512,500
    """
    from rich.console import Console

    from ..synth.cohort import write_ct_series

    shape_t = _parse_triple(shape, "--shape", int)
    spacing_t = _parse_triple(spacing, "--spacing", float)
    with progress_bar() as bar:
        task = bar.add_task("slices", total=shape_t[2])
        write_ct_series(
            out,
            shape_t,
            spacing_t,
            seed=seed,
            transfer_syntax=transfer_syntax.value,
            overwrite=overwrite,
            progress=lambda k: bar.update(task, completed=k),
        )
    Console(stderr=True).print(f"[green]wrote {shape_t[2]} slices to {out / 'dicom'}[/green]")


def register(app: typer.Typer) -> None:
    """Add the ``cohort`` command group to the root app."""
    app.add_typer(cohort_app, name="cohort")
