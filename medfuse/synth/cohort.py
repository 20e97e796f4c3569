"""Seeded synthetic studies and cohorts: DICOM series + report + ground truth, one folder each.

A study folder holds::

    dicom/*.dcm          one genuine DICOM series (CT Image Storage or MR Image Storage)
    report.txt           a plain-text radiology report (FINDINGS / IMPRESSION) agreeing with ...
    ground_truth.json    ... the truth: lesions (voxel ijk, LPS mm, RAS mm, radius), labels,
                         the RAS affine of the written volume, shape, spacing, UIDs, files

Everything is a pure function of the arguments: the same seed writes byte-identical files.

Cohort mix (:func:`make_cohort`): case ``i`` (1-based) of ``n`` is a chest CT, except that the
last case is a sagittal brain MR when ``n >= 3``. Chest CT findings are drawn per case: 0 / 1 / 2
lesions with probabilities 0.4 / 0.45 / 0.15 (a lesion is a mass, diameter 32–50 mm, with
probability 0.25, else a nodule of 6–28 mm), cardiomegaly 0.2, pleural effusion 0.15, emphysema
0.15. Unless a transfer syntax is forced, every 5th case is written RLE Lossless and the rest
Explicit VR Little Endian.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .._atomic import atomic_write_text
from ..errors import ConfigError
from .dicom_write import TRANSFER_SYNTAXES, PatientInfo, make_uids, write_series
from .geometry import LPS_TO_RAS, Geometry, make_geometry
from .phantom import ChestPhantom, HeadPhantom, Lesion
from .report import chest_ct_report, mr_brain_report

__all__ = [
    "AUTO",
    "KINDS",
    "SAMPLES",
    "make_cohort",
    "make_samples",
    "make_study",
    "write_ct_series",
]

log = logging.getLogger(__name__)

#: Sentinel: draw this finding at random from the seed.
AUTO = "auto"
KINDS = ("chest_ct", "mr_sag")
CHEST_LOBES = (
    "right upper lobe",
    "right middle lobe",
    "right lower lobe",
    "left upper lobe",
    "left lower lobe",
)
FORMAT_VERSION = 1

_DEFAULT_SHAPE = {"chest_ct": (64, 64, 48), "mr_sag": (64, 64, 24)}
# Geometry (grid) centres, LPS mm: a chest on the table, a head in the coil.
_GRID_CENTER = {"chest_ct": (0.0, 0.0, -180.0), "mr_sag": (0.0, -10.0, 20.0)}


def default_spacing(kind: str, shape: Sequence[int]) -> tuple[float, float, float]:
    """Spacing (mm) giving a realistic field of view for ``shape``: chest CT 384 mm square
    in-plane and 240 mm long (slices 0.5–5 mm); sagittal MR 240 mm in-plane, 160 mm across."""
    nx, ny, nz = (int(s) for s in shape)
    if kind == "chest_ct":
        px = round(384.0 / max(nx, ny), 4)
        return (px, px, round(min(5.0, max(0.5, 240.0 / nz)), 4))
    px = round(240.0 / max(nx, ny), 4)
    return (px, px, round(min(6.0, max(1.0, 160.0 / nz)), 4))


def make_study(
    out_dir: str | os.PathLike,
    *,
    seed: int,
    kind: str = "chest_ct",
    shape: Sequence[int] | None = None,
    spacing: Sequence[float] | None = None,
    lesions: str | Sequence[Lesion | Mapping[str, Any]] | None = AUTO,
    heart_scale: float | str = AUTO,
    effusion: str | None = AUTO,
    emphysema: bool | str = AUTO,
    transfer_syntax: str = "explicit",
    orientation: str | Sequence[float] | None = None,
    patient_position: str = "HFS",
    oblique_deg: float | Sequence[float] = 0.0,
    file_naming: str = "shuffled",
    scramble_instance_numbers: bool = False,
    ct_pixel: str = "unsigned",
    case_number: int = 1,
    series_number: int = 1,
    write_report: bool = True,
    overwrite: bool = False,
    progress: Callable[[int], None] | None = None,
) -> dict:
    """Write one synthetic study into ``out_dir`` and return its ground truth (also written to
    ``out_dir/ground_truth.json``).

    ``kind`` is ``"chest_ct"`` (axial CT, HU) or ``"mr_sag"`` (sagittal T1 brain MR, IOP
    ``[0,1,0,0,0,-1]``). ``shape`` is (X, Y, Z) = (columns, rows, slices); ``spacing`` in mm
    defaults to :func:`default_spacing`. Findings given as ``"auto"`` are drawn from ``seed``.

    ``lesions`` is ``"auto"``, None / ``[]`` (none), or a list of :class:`Lesion` or dicts with
    ``radius_mm`` or ``diameter_mm`` and optionally one of ``center_lps`` / ``center_ijk`` /
    ``lobe`` (chest CT: a lobe name such as ``"right upper lobe"``; the lesion is placed at random
    inside it), plus ``kind`` and ``value``. ``effusion`` is None, ``"left"``, ``"right"`` or
    ``"both"``. ``orientation``, ``patient_position`` and ``oblique_deg`` are passed to
    :func:`~medfuse.synth.geometry.make_geometry`; ``transfer_syntax``, ``file_naming``,
    ``scramble_instance_numbers`` and ``ct_pixel`` to
    :func:`~medfuse.synth.dicom_write.write_series`.
    """
    if kind not in KINDS:
        raise ConfigError(f"kind must be one of {', '.join(KINDS)}, got {kind!r}")
    seed = _check_seed(seed)
    if transfer_syntax not in TRANSFER_SYNTAXES:
        raise ConfigError(
            f"unknown transfer syntax {transfer_syntax!r}; choose one of {', '.join(TRANSFER_SYNTAXES)}"
        )
    shape_t = tuple(int(s) for s in (shape or _DEFAULT_SHAPE[kind]))
    if len(shape_t) != 3 or min(shape_t) < 2 or max(shape_t) > 4096:
        raise ConfigError(f"shape must be three integers within 2..4096, got {tuple(shape_t)}")
    spacing_t = tuple(float(s) for s in (spacing or default_spacing(kind, shape_t)))

    out = Path(out_dir)
    dicom_dir = out / "dicom"
    _prepare(out, dicom_dir, overwrite)

    rng = np.random.default_rng(np.random.SeedSequence([seed, 0xCA5E]))
    jitter = rng.uniform(-8.0, 8.0, size=3)
    grid_center = np.asarray(_GRID_CENTER[kind])
    anatomy_center = grid_center + jitter
    geometry = make_geometry(
        shape_t,
        spacing_t,
        orientation=orientation or ("axial" if kind == "chest_ct" else "sagittal"),
        patient_position=patient_position,
        center_lps=grid_center,
        oblique_deg=oblique_deg,
    )

    # Findings (always drawn in the same order so overrides do not shift the other draws).
    draws = {
        "cardiomegaly": rng.random() < 0.2,
        "heart_scale_big": float(rng.uniform(1.35, 1.5)),
        "heart_scale_normal": float(rng.uniform(0.92, 1.08)),
        "effusion": rng.random() < 0.15,
        "effusion_side": ("left", "right", "both")[int(rng.integers(3))],
        "emphysema": rng.random() < 0.15,
        "n_lesions": int(rng.choice(3, p=[0.4, 0.45, 0.15])),
    }
    if kind == "mr_sag":
        draws["n_lesions"] = int(rng.random() < 0.5)

    if kind == "chest_ct":
        if heart_scale == AUTO:
            heart_scale = (
                draws["heart_scale_big"] if draws["cardiomegaly"] else draws["heart_scale_normal"]
            )
        if effusion == AUTO:
            effusion = draws["effusion_side"] if draws["effusion"] else None
        if emphysema == AUTO:
            emphysema = bool(draws["emphysema"])
        base = ChestPhantom(
            geometry, seed=seed, heart_scale=float(heart_scale), effusion=effusion,
            emphysema=bool(emphysema), anatomy_center_lps=anatomy_center,
        )  # fmt: skip
    else:
        for name, val in (
            ("heart_scale", heart_scale),
            ("effusion", effusion),
            ("emphysema", emphysema),
        ):
            if val not in (AUTO, None, False) and not (name == "heart_scale" and val == 1.0):
                raise ConfigError(f"{name} applies to chest_ct studies only")
        base = HeadPhantom(geometry, seed=seed, anatomy_center_lps=anatomy_center)

    lesion_objs = _resolve_lesions(lesions, kind, base, geometry, rng, draws["n_lesions"])
    if kind == "chest_ct":
        phantom: ChestPhantom | HeadPhantom = ChestPhantom(
            geometry, seed=seed, lesions=lesion_objs, heart_scale=float(heart_scale),
            effusion=effusion, emphysema=bool(emphysema), anatomy_center_lps=anatomy_center,
        )  # fmt: skip
    else:
        phantom = HeadPhantom(
            geometry, seed=seed, lesions=lesion_objs, anatomy_center_lps=anatomy_center
        )

    patient = PatientInfo.for_case(case_number, seed)
    uids = make_uids(
        seed, f"case-{case_number}-series-{series_number}", study_key=f"case-{case_number}"
    )
    modality = "CT" if kind == "chest_ct" else "MR"
    t0 = time.perf_counter()
    info = write_series(
        dicom_dir,
        phantom.slice,
        geometry,
        modality=modality,
        seed=seed,
        uids=uids,
        patient=patient,
        series_number=series_number,
        transfer_syntax=transfer_syntax,
        file_naming=file_naming,
        scramble_instance_numbers=scramble_instance_numbers,
        ct_pixel=ct_pixel,
        progress=progress,
    )
    log.info("wrote %s study %s in %.2f s", kind, out, time.perf_counter() - t0)

    lesion_records = _lesion_records(phantom, geometry, info)
    labels = _labels(kind, lesion_records, phantom)
    report_rng = np.random.default_rng(np.random.SeedSequence([seed, 0x2E9]))
    if kind == "chest_ct":
        text, impression = chest_ct_report(
            rng=report_rng,
            case_number=case_number,
            slice_thickness=geometry.spacing[2],
            lesions=lesion_records,
            cardiomegaly=bool(labels["cardiomegaly"]),
            effusion=effusion,
            emphysema=bool(emphysema),
        )
    else:
        text, impression = mr_brain_report(
            rng=report_rng,
            case_number=case_number,
            slice_thickness=geometry.spacing[2],
            lesions=lesion_records,
        )
    if write_report:
        atomic_write_text(out / "report.txt", text)

    truth = {
        "generator": "medfuse.synth",
        "format_version": FORMAT_VERSION,
        "synthetic": True,
        "kind": kind,
        "modality": modality,
        "seed": seed,
        "case_number": case_number,
        "shape": list(geometry.shape),
        "spacing": list(geometry.spacing),
        "affine_ras": _round(geometry.affine_ras),
        "affine_lps": _round(geometry.affine_lps),
        "orientation": _axcodes(geometry.affine_ras),
        "geometry": geometry.to_dict(),
        "anatomy_center_lps": _round(anatomy_center),
        "intensity": {
            "units": "HU" if kind == "chest_ct" else "arbitrary",
            "lesion_value": phantom.default_lesion_value,
        },
        "findings": {
            "heart_scale": round(float(heart_scale), 4) if kind == "chest_ct" else None,
            "effusion": effusion if kind == "chest_ct" else None,
            "emphysema": bool(emphysema) if kind == "chest_ct" else None,
        },
        "labels": labels,
        "lesions": lesion_records,
        "report": {"file": "report.txt" if write_report else None, "impression": impression},
        "dicom": {"folder": "dicom", **info},
        "patient": {
            "name": patient.name,
            "patient_id": patient.patient_id,
            "accession_number": patient.accession,
            "study_date": patient.study_date,
        },
    }
    atomic_write_text(out / "ground_truth.json", _dumps(truth))
    return truth


def make_cohort(
    out_dir: str | os.PathLike,
    n: int,
    seed: int,
    *,
    shape: Sequence[int] | None = None,
    transfer_syntax: str | None = None,
    overwrite: bool = False,
    progress: Callable[[int, int, str], None] | None = None,
) -> list[dict]:
    """Write ``n`` studies ``case_0001`` … into ``out_dir`` (mix described in the module doc) and
    a ``cohort.json`` manifest; return their ground truths.

    ``shape`` applies to every case (chest CT and MR alike; spacing follows from it);
    ``transfer_syntax`` forces one transfer syntax for all cases. ``progress(done, n, name)`` is
    called after each case.
    """
    seed = _check_seed(seed)
    if not isinstance(n, int) or n < 1:
        raise ConfigError(f"n must be a positive integer, got {n!r}")
    if transfer_syntax is not None and transfer_syntax not in TRANSFER_SYNTAXES:
        raise ConfigError(
            f"unknown transfer syntax {transfer_syntax!r}; choose one of {', '.join(TRANSFER_SYNTAXES)}"
        )
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    truths = []
    manifest_cases = []
    for i in range(1, n + 1):
        name = f"case_{i:04d}"
        kind = "mr_sag" if (n >= 3 and i == n) else "chest_ct"
        ts = transfer_syntax or ("rle" if i % 5 == 0 else "explicit")
        case_seed = int(np.random.SeedSequence([seed, i]).generate_state(1)[0])
        truth = make_study(
            out / name,
            seed=case_seed,
            kind=kind,
            shape=shape,
            transfer_syntax=ts,
            case_number=i,
            overwrite=overwrite,
        )
        truths.append(truth)
        manifest_cases.append(
            {
                "case": name,
                "kind": kind,
                "seed": case_seed,
                "transfer_syntax": ts,
                "study_instance_uid": truth["dicom"]["study_instance_uid"],
                "labels": truth["labels"],
            }
        )
        if progress is not None:
            progress(i, n, name)
    manifest = {
        "generator": "medfuse.synth",
        "format_version": FORMAT_VERSION,
        "seed": seed,
        "n": n,
        "label_names": list(truths[0]["labels"]) if truths else [],
        "cases": manifest_cases,
    }
    atomic_write_text(out / "cohort.json", _dumps(manifest))
    return truths


#: The committed sample cases (``sample_cases/``): name → make_study keywords.
SAMPLES: dict[str, dict[str, Any]] = {
    "chest_ct_0001": {
        "seed": 1,
        "kind": "chest_ct",
        "shape": (112, 88, 48),
        "spacing": (3.5, 3.5, 5.0),
        "lesions": [{"diameter_mm": 18.0, "lobe": "right upper lobe"}],
        "heart_scale": 1.0,
        "effusion": None,
        "emphysema": False,
        "transfer_syntax": "explicit",
        "case_number": 1,
    },
    "chest_ct_0002": {
        "seed": 2,
        "kind": "chest_ct",
        "shape": (112, 88, 48),
        "spacing": (3.5, 3.5, 5.0),
        "lesions": [{"diameter_mm": 40.0, "lobe": "left lower lobe"}],
        "heart_scale": 1.4,
        "effusion": "right",
        "emphysema": False,
        "transfer_syntax": "rle",
        "ct_pixel": "signed",
        "case_number": 2,
    },
    "chest_ct_0003": {
        "seed": 4,
        "kind": "chest_ct",
        "shape": (96, 80, 40),
        "spacing": (4.0, 4.0, 6.0),
        "lesions": [],
        "heart_scale": 1.0,
        "effusion": "left",
        "emphysema": True,
        "transfer_syntax": "jpegls",
        "write_report": False,
        "case_number": 4,
    },
    "mr_sag_0001": {
        "seed": 3,
        "kind": "mr_sag",
        "shape": (96, 96, 36),
        "spacing": (2.5, 2.5, 4.5),
        "lesions": [{"diameter_mm": 12.0}],
        "transfer_syntax": "explicit",
        "case_number": 3,
    },
}


def make_samples(
    out_dir: str | os.PathLike = "sample_cases",
    *,
    progress: Callable[[int, int, str], None] | None = None,
) -> dict[str, dict]:
    """(Re)write the committed sample cases (:data:`SAMPLES`) under ``out_dir``; existing
    ``.dcm`` files of those cases are replaced. Returns name → ground truth."""
    out = Path(out_dir)
    truths = {}
    for i, (name, kw) in enumerate(SAMPLES.items(), 1):
        truths[name] = make_study(out / name, overwrite=True, **kw)
        if progress is not None:
            progress(i, len(SAMPLES), name)
    return truths


def write_ct_series(
    out_dir: str | os.PathLike,
    shape: Sequence[int] = (512, 512, 500),
    spacing: Sequence[float] = (0.7, 0.7, 0.8),
    *,
    seed: int = 0,
    transfer_syntax: str = "explicit",
    lesions: Sequence[Lesion | Mapping[str, Any]] | None = None,
    overwrite: bool = False,
    progress: Callable[[int], None] | None = None,
    **kwargs: Any,
) -> dict:
    """Write a large chest CT series fast (for load benchmarks): slices are generated and
    written one at a time (constant memory). Same folder layout as :func:`make_study`
    (``dicom/``, ``ground_truth.json``; no report). Extra keywords go to :func:`make_study`."""
    return make_study(
        out_dir,
        seed=seed,
        kind="chest_ct",
        shape=shape,
        spacing=spacing,
        lesions=lesions,
        heart_scale=kwargs.pop("heart_scale", 1.0),
        effusion=kwargs.pop("effusion", None),
        emphysema=kwargs.pop("emphysema", False),
        transfer_syntax=transfer_syntax,
        write_report=False,
        overwrite=overwrite,
        progress=progress,
        **kwargs,
    )


# -- helpers --------------------------------------------------------------------------------------


def _check_seed(seed: Any) -> int:
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ConfigError(f"seed must be a non-negative integer, got {seed!r}")
    return int(seed)


def _prepare(out: Path, dicom_dir: Path, overwrite: bool) -> None:
    """Create the folders; refuse to mix with an earlier series unless ``overwrite``."""
    if out.exists() and not out.is_dir():
        raise ConfigError("output path exists and is not a folder", path=out)
    old = sorted(dicom_dir.glob("*.dcm")) if dicom_dir.is_dir() else []
    if old:
        if not overwrite:
            raise ConfigError(
                f"already holds {len(old)} DICOM files",
                path=dicom_dir,
                hint="use overwrite=True / --overwrite",
            )
        for f in old:
            f.unlink()
    dicom_dir.mkdir(parents=True, exist_ok=True)


def _lesion_spec(item: Lesion | Mapping[str, Any]) -> dict:
    if isinstance(item, Lesion):
        return {
            "radius_mm": item.radius_mm,
            "center_lps": item.center_lps,
            "center_ijk": item.center_ijk,
            "value": item.value,
            "kind": item.kind,
        }
    if not isinstance(item, Mapping):
        raise ConfigError(f"a lesion must be a Lesion or a dict, got {type(item).__name__}")
    known = {"radius_mm", "diameter_mm", "center_lps", "center_ijk", "lobe", "value", "kind"}
    unknown = set(item) - known
    if unknown:
        raise ConfigError(f"unknown lesion keys {sorted(unknown)}; known: {sorted(known)}")
    spec = dict(item)
    if "diameter_mm" in spec:
        if "radius_mm" in spec:
            raise ConfigError("give a lesion radius_mm or diameter_mm, not both")
        spec["radius_mm"] = float(spec.pop("diameter_mm")) / 2.0
    if "radius_mm" not in spec:
        raise ConfigError("a lesion needs radius_mm or diameter_mm")
    r = float(spec["radius_mm"])
    if not (math.isfinite(r) and r > 0):
        raise ConfigError(
            f"lesion radius must be a positive number of mm, got {spec['radius_mm']!r}"
        )
    spec["radius_mm"] = r
    if sum(spec.get(k) is not None for k in ("center_lps", "center_ijk", "lobe")) > 1:
        raise ConfigError("give a lesion at most one of center_lps, center_ijk, lobe")
    return spec


def _resolve_lesions(
    lesions: Any,
    kind: str,
    phantom: ChestPhantom | HeadPhantom,
    geometry: Geometry,
    rng: np.random.Generator,
    n_auto: int,
) -> list[Lesion]:
    """Turn the ``lesions`` argument into placed :class:`Lesion` objects."""
    if isinstance(lesions, str) and lesions == AUTO:
        specs = []
        for _ in range(n_auto):
            if kind == "chest_ct":
                if rng.random() < 0.25:
                    specs.append({"radius_mm": float(rng.integers(32, 51)) / 2.0, "kind": "mass"})
                else:
                    specs.append({"radius_mm": float(rng.integers(6, 29)) / 2.0, "kind": "nodule"})
            else:
                specs.append({"radius_mm": float(rng.integers(6, 21)) / 2.0, "kind": "lesion"})
    elif lesions is None:
        specs = []
    elif isinstance(lesions, (str, bytes)) or not isinstance(lesions, Sequence):
        raise ConfigError(f"lesions must be 'auto', None or a list, got {lesions!r}")
    else:
        specs = [_lesion_spec(x) for x in lesions]

    placed: list[tuple[np.ndarray, float]] = []
    out: list[Lesion] = []
    for spec in specs:
        r = float(spec["radius_mm"])
        les_kind = spec.get("kind") or (
            ("mass" if 2 * r > 30.0 else "nodule") if kind == "chest_ct" else "lesion"
        )
        if spec.get("center_lps") is not None or spec.get("center_ijk") is not None:
            les = Lesion(
                radius_mm=r,
                center_lps=_tuple3(spec.get("center_lps")),
                center_ijk=_tuple3(spec.get("center_ijk")),
                value=spec.get("value"),
                kind=les_kind,
            )
            placed.append((les.resolve(geometry), r))
            out.append(les)
            continue
        lobe = spec.get("lobe")
        if lobe is not None and (kind != "chest_ct" or lobe not in CHEST_LOBES):
            raise ConfigError(
                f"lobe {lobe!r} is not one of {', '.join(CHEST_LOBES)} (chest_ct studies only)"
            )
        try:
            ijk = _place(phantom, geometry, rng, r, lobe, placed)
        except ConfigError:
            if not (isinstance(lesions, str) and lesions == AUTO):
                raise
            log.warning("no room for a %.1f mm lesion in this field of view; leaving it out", 2 * r)
            continue
        placed.append((geometry.ijk_to_lps(ijk), r))
        out.append(
            Lesion(
                radius_mm=r,
                center_ijk=tuple(float(v) for v in ijk),
                value=spec.get("value"),
                kind=les_kind,
            )
        )
    return out


def _place(
    phantom: ChestPhantom | HeadPhantom,
    geometry: Geometry,
    rng: np.random.Generator,
    radius: float,
    lobe: str | None,
    placed: list[tuple[np.ndarray, float]],
) -> np.ndarray:
    """A voxel index (integers) where a sphere of ``radius`` fits inside a lung (chest CT, in
    ``lobe`` if given) or the brain (MR), inside the grid and clear of earlier lesions."""
    shape = np.asarray(geometry.shape)
    spacing = np.asarray(geometry.spacing)
    margin = np.ceil(radius / spacing).astype(int) + 1
    hi = shape - margin
    if np.any(hi <= margin):
        raise ConfigError(
            f"a lesion of radius {radius} mm does not fit in a grid of {tuple(shape)} voxels"
        )
    offsets = np.vstack([np.eye(3), -np.eye(3)]) * (radius + 2.0)
    for _ in range(40):
        cand = rng.integers(margin, hi, size=(256, 3))
        centres = geometry.ijk_to_lps(cand)
        if isinstance(phantom, ChestPhantom):
            lab = phantom.lung_label(centres)
            ok = lab != 0
            for off in offsets:
                ok &= phantom.lung_label(centres + off) == lab
        else:
            ok = phantom.in_brain(centres, margin_mm=radius + 2.0)
        for c, r in placed:
            ok &= np.linalg.norm(centres - c, axis=1) > radius + r + 5.0
        for idx in np.flatnonzero(ok):
            if lobe is None or phantom.lobe(centres[idx]) == lobe:
                return cand[idx]
    where = (
        f"the {lobe}" if lobe else ("a lung" if isinstance(phantom, ChestPhantom) else "the brain")
    )
    raise ConfigError(
        f"found no room for a lesion of radius {radius} mm inside {where} in this field of view",
        hint="use a larger shape or field of view, a smaller lesion, or give center_lps",
    )


def _lesion_records(
    phantom: ChestPhantom | HeadPhantom, geometry: Geometry, info: dict
) -> list[dict]:
    records = []
    for i, (les, c) in enumerate(zip(phantom.lesions, phantom.lesion_centres_lps(), strict=True)):
        ijk = geometry.lps_to_ijk(c)
        k = int(np.clip(np.rint(ijk[2]), 0, geometry.shape[2] - 1))
        if isinstance(phantom, ChestPhantom):
            location = phantom.lobe(c)
        else:
            location = phantom.region(c)
        ras = (LPS_TO_RAS[:3, :3] @ c).tolist()
        records.append(
            {
                "id": i + 1,
                "kind": les.kind,
                "location": location,
                "center_ijk": [_clean(round(float(v), 4)) for v in ijk],
                "center_voxel": [int(v) for v in np.rint(ijk)],
                "center_lps_mm": [_clean(round(float(v), 4)) for v in c],
                "center_ras_mm": [_clean(round(float(v), 4)) for v in ras],
                "radius_mm": round(float(les.radius_mm), 4),
                "diameter_mm": round(2 * les.radius_mm),
                "value": phantom.value_at_lesion(i),
                "series_number": info["series_number"],
                "instance_number": info["instance_numbers"][k],
                "inside_grid": bool(
                    np.all((ijk >= -0.5) & (ijk <= np.asarray(geometry.shape) - 0.5))
                ),
            }
        )
    return records


def _labels(kind: str, lesions: list[dict], phantom: ChestPhantom | HeadPhantom) -> dict[str, int]:
    if kind == "chest_ct":
        assert isinstance(phantom, ChestPhantom)
        return {
            "nodule": int(any(x["kind"] == "nodule" for x in lesions)),
            "mass": int(any(x["kind"] == "mass" for x in lesions)),
            "cardiomegaly": int(phantom.heart_scale >= 1.25),
            "effusion": int(phantom.effusion is not None),
            "emphysema": int(phantom.emphysema),
        }
    return {"lesion": int(bool(lesions))}


def _tuple3(v: Any) -> tuple[float, float, float] | None:
    if v is None:
        return None
    t = tuple(float(x) for x in v)
    if len(t) != 3:
        raise ConfigError(f"a lesion centre needs three numbers, got {v!r}")
    return t  # type: ignore[return-value]


_NUM_LIST = re.compile(
    r"\[\s*((?:-?[0-9][0-9.eE+-]*|true|false|null)(?:,\s*(?:-?[0-9][0-9.eE+-]*|true|false|null))*)\s*\]"
)


def _dumps(obj: Any) -> str:
    """Indented JSON with lists of numbers kept on one line (4x4 matrices read as rows)."""
    text = json.dumps(obj, indent=2)
    return (
        _NUM_LIST.sub(
            lambda m: "[" + ", ".join(x.strip() for x in m.group(1).split(",")) + "]", text
        )
        + "\n"
    )


def _axcodes(affine: np.ndarray) -> str:
    from nibabel.orientations import aff2axcodes

    return "".join(aff2axcodes(affine))


def _clean(v: float) -> float:
    return 0.0 if v == 0 else v


def _round(a: Any, nd: int = 6) -> Any:
    arr = np.asarray(a, dtype=float)
    if arr.ndim == 0:
        return _clean(round(float(arr), nd))
    return [_round(x, nd) for x in arr]
