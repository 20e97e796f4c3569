"""The work of ``medfuse convert``, without typer: shared by the typer command
(:func:`medfuse.cli.io.convert`) and the light entry point (:mod:`medfuse.cli.entry`), which
runs ``medfuse convert`` without building the CLI (no typer, click, rich or other commands)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path


def convert_study(
    path: Path,
    out: Path,
    series: str | None,
    sidecar: bool,
    echo: Callable[[str], None],
    warn: Callable[[str], None],
) -> list[Path]:
    """Convert the selected series of ``path`` (or ``series``) to NIfTI at ``out``; one file per
    image type when the series has several. ``echo`` gets one line per file written, ``warn``
    each reading warning. Returns the files written."""
    import json

    from .._atomic import atomic_write_text
    from ..io.study import read_study

    study = read_study(path, series=series)
    chosen = study.selected
    parts = [s for s in study.series if s.series_instance_uid == chosen.series_instance_uid]
    written = []
    for s in parts:
        target = out
        if len(parts) > 1:
            label = _part_label(s, parts)
            name = out.name
            stem, ext = (
                (name[:-7], ".nii.gz") if name.endswith(".nii.gz") else (out.stem, out.suffix)
            )
            target = out.with_name(f"{stem}_{label}{ext}")
        vol = _load(study, s)
        vol.save(target)
        written.append(target)
        if sidecar:
            meta = {
                "series": s.summary(),
                "shape": list(vol.shape),
                "spacing_mm": list(vol.spacing),
                "orientation": vol.orientation,
                "affine_ras": vol.affine.round(6).tolist(),
                "units": vol.units,
                "warnings": vol.warnings,
                **{k: v for k, v in vol.meta.items() if v not in (None, "", [])},
            }
            base = (
                str(target)[: -len(".nii.gz")]
                if str(target).endswith(".nii.gz")
                else str(target.with_suffix(""))
            )
            atomic_write_text(base + ".json", json.dumps(meta, indent=2))
        echo(
            f"{target}  {vol.shape}  {vol.orientation}  {'×'.join(f'{v:.4g}' for v in vol.spacing)} mm"
        )
        for w in vol.warnings:
            warn(f"warning: {w}")
    return written


def _load(study, s):
    """The series as a volume; DICOM integer values (CT in HU) straight into int16, the type the
    NIfTI writer stores them as (no float32 copy to build and convert back)."""
    if s.kind == "volume":
        return study.load(s)
    from ..io.study import load_series

    return load_series(
        s,
        policy=study.policy,
        skipped=study.skipped,
        others=[o for o in study.series if o is not s],
        integers=True,
    )


def _part_label(s, parts) -> str:
    """Short name of what sets this part apart from the others of its series (e.g. 'field_map')."""
    common = set.intersection(*(set(p.image_type) for p in parts))
    own = [v for v in s.image_type if v not in common]
    label = "_".join(own) if own else f"part{s.part}"
    return (
        "".join(ch if ch.isalnum() else "_" for ch in label.lower()).strip("_") or f"part{s.part}"
    )


def parse_convert_args(args: list[str]) -> tuple[Path, Path, str | None, bool] | None:
    """``PATH OUT [--series S | -s S | --series=S] [--sidecar | --no-sidecar]`` as the typer
    command reads them, or None for anything else (``--help``, a usage error, an option it does
    not know), which the caller hands to the full CLI so that its help and messages stay the
    same."""
    positional: list[str] = []
    series: str | None = None
    sidecar = True
    i = 0
    options_done = False
    while i < len(args):
        a = args[i]
        if options_done or not a.startswith("-") or a == "-":
            positional.append(a)
        elif a == "--":
            options_done = True
        elif a in ("--series", "-s"):
            if i + 1 >= len(args):
                return None
            series = args[i + 1]
            i += 1
        elif a.startswith("--series="):
            series = a[len("--series=") :]
        elif a.startswith("-s") and not a.startswith("--"):
            series = a[2:]
        elif a == "--sidecar":
            sidecar = True
        elif a == "--no-sidecar":
            sidecar = False
        else:
            return None
        i += 1
    if len(positional) != 2:
        return None
    return Path(positional[0]), Path(positional[1]), series, sidecar
