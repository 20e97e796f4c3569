"""Frames of one series part → slices sorted on the slice normal, checked, and the RAS affine."""

from __future__ import annotations

import os
from collections import defaultdict
from dataclasses import dataclass, field

import numpy as np

from ..errors import GeometryError
from .frames import Frame, as_float
from .policy import DEFAULT_POLICY, ReadPolicy

__all__ = ["LPS_TO_RAS", "POSITION_TOL", "Geometry", "build_geometry", "cluster_positions"]

#: DICOM patient coordinates (LPS) to NIfTI / nibabel world coordinates (RAS); the one definition.
LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])


#: mm: positions closer than this along the slice normal are the same slice
POSITION_TOL = 1e-2


def cluster_positions(d: np.ndarray, tol: float) -> list[np.ndarray]:
    """Indices of ``d`` grouped by equal position (within ``tol``), in ascending position."""
    order = np.argsort(d, kind="stable")
    groups: list[list[int]] = []
    last = None
    for i in order:
        if last is None or d[i] - last > tol:
            groups.append([int(i)])
            last = d[i]
        else:
            groups[-1].append(int(i))
    return [np.array(g) for g in groups]


@dataclass
class Geometry:
    affine_ras: np.ndarray
    #: frames[k][v]: the frame at slice k of volume v
    grid: list[list[Frame]]
    warnings: list[str] = field(default_factory=list)


def build_geometry(frames: list[Frame], policy: ReadPolicy = DEFAULT_POLICY) -> Geometry:
    """Sort frames on the slice normal, check the stack, and build the RAS affine."""
    warns: list[str] = []
    f0 = frames[0]
    iop = f0.iop
    r_dir, c_dir = iop[:3], iop[3:]
    normal = np.cross(r_dir, c_dir)
    normal /= np.linalg.norm(normal)
    # Exact duplicates (the same SOP instance twice) are dropped with a warning.
    uniq: dict[tuple, Frame] = {}
    for fr in frames:
        # without a SOPInstanceUID nothing says two frames are the same instance: keep both
        key = (fr.sop_uid, fr.frame, fr.tile) if fr.sop_uid else (id(fr),)
        if key in uniq:
            # file names only: warnings reach the exported files, folder names may name people
            warns.append(
                f"{os.path.basename(str(fr.file))}: duplicate of SOP instance in "
                f"{os.path.basename(str(uniq[key].file))}; ignored"
            )
            continue
        uniq[key] = fr
    frames = list(uniq.values())
    d = np.array([fr.ipp @ normal for fr in frames])
    groups = cluster_positions(d, POSITION_TOL)
    counts = {len(g) for g in groups}
    if len(counts) != 1:
        by_count = defaultdict(list)
        for g in groups:
            by_count[len(g)].append(g)
        rare = min(by_count, key=lambda c: len(by_count[c]))
        at = by_count[rare][0]
        example = frames[at[-1]]
        names = sorted({os.path.basename(str(frames[i].file)) for i in at})
        raise GeometryError(
            f"positions hold different numbers of images ({sorted(counts)}), e.g. {rare} at "
            f"{d[at[0]]:.2f} mm along the normal ({', '.join(names[:4])}): slices are missing "
            "from a volume or duplicated",
            path=example.file,
        )
    n_vol = counts.pop()
    grid: list[list[Frame]] = []
    for g in groups:
        at = sorted((frames[i] for i in g), key=lambda fr: fr.vol_key)
        if n_vol > 1:
            keys = [fr.vol_key for fr in at]
            if len(set(keys)) != len(keys):
                dup = [fr for fr in at if keys.count(fr.vol_key) > 1]
                raise GeometryError(
                    f"duplicate slices: {len(dup)} images at the same position "
                    f"({d[g[0]]:.2f} mm along the normal) with nothing (time, echo, acquisition) "
                    f"to tell them apart: {', '.join(sorted({os.path.basename(str(x.file)) for x in dup}))}",
                    path=dup[0].file,
                    hint="remove the duplicate files or pick another series",
                )
        grid.append(at)
    pos = np.array([grid[k][0].ipp for k in range(len(grid))])
    n = len(grid)
    affine = np.eye(4)
    affine[:3, 0] = r_dir * f0.spacing[1]  # i: along a row, step = column spacing
    affine[:3, 1] = c_dir * f0.spacing[0]  # j: down a column, step = row spacing
    affine[:3, 3] = pos[0]
    if n == 1:
        ds = f0.ds
        thick = (
            as_float(ds.get("SpacingBetweenSlices"), 0.0)
            or as_float(ds.get("SliceThickness"), 0.0)
            or 1.0
        )
        affine[:3, 2] = normal * thick
        warns.append(f"single-slice series: slice step set to {thick:g} mm from the header")
        return Geometry(LPS_TO_RAS @ affine, grid, warns)
    dk = np.diff(pos @ normal)
    med = float(np.median(dk))
    if med <= 0:
        raise GeometryError("slice positions do not advance along the normal", path=f0.file)
    big = np.nonzero(dk > policy.gap_factor * med)[0]
    if len(big):
        k = int(big[0])
        more = "".join(
            f"; {dk[j]:.3g} mm between {os.path.basename(str(grid[j][0].file))} and "
            f"{os.path.basename(str(grid[j + 1][0].file))}"
            for j in (int(x) for x in big[1:3])
        )
        raise GeometryError(
            f"missing slice(s): a gap of {dk[k]:.3g} mm between "
            f"{os.path.basename(str(grid[k][0].file))} and {os.path.basename(str(grid[k + 1][0].file))} "
            f"where the usual step is {med:.3g} mm ({len(big)} gap(s) in all{more})",
            path=grid[k + 1][0].file,
            hint="the series is incomplete; copy the missing files or pick another series",
        )
    step_vec = (pos[-1] - pos[0]) / (n - 1)
    mean = float(step_vec @ normal)
    dev = float(np.max(np.abs(dk - mean)))
    if dev > policy.spacing_tolerance * mean:
        msg = (
            f"non-uniform slice spacing: steps from {dk.min():.4g} to {dk.max():.4g} mm "
            f"(mean {mean:.4g} mm)"
        )
        if policy.on_nonuniform == "error":
            raise GeometryError(
                msg,
                path=f0.file,
                hint="ReadPolicy(on_nonuniform='warn') accepts it with the mean step",
            )
        warns.append(msg + "; the mean step is used")
    # Sideways drift of the positions = sheared stack (gantry tilt or a reformatted oblique).
    lateral = (pos - pos[0]) - np.outer((pos - pos[0]) @ normal, normal)
    drift = float(np.max(np.linalg.norm(lateral, axis=1)))
    if drift > 1e-2 + 1e-3 * n * mean:
        tilt = float(
            np.degrees(np.arccos(np.clip(abs(step_vec @ normal) / np.linalg.norm(step_vec), -1, 1)))
        )
        gtilt = as_float(f0.ds.get("GantryDetectorTilt"), 0.0)
        msg = f"sheared stack: slices drift {drift:.3g} mm sideways ({tilt:.2f}° from the normal"
        msg += f", GantryDetectorTilt {gtilt:g}°)" if gtilt else ")"
        if policy.on_shear == "error":
            raise GeometryError(
                msg, path=f0.file, hint="ReadPolicy(on_shear='affine') keeps it as a sheared affine"
            )
        # Also check the drift is linear, else no affine can represent it.
        resid = pos - (pos[0] + np.outer(np.arange(n), step_vec))
        if float(np.max(np.linalg.norm(resid, axis=1))) > max(
            0.05, policy.spacing_tolerance * mean
        ):
            raise GeometryError(msg + " and the slices do not lie on a straight line", path=f0.file)
        affine[:3, 2] = step_vec
        warns.append(msg + "; the affine keeps the true (sheared) slice step")
    else:
        affine[:3, 2] = normal * mean
    return Geometry(LPS_TO_RAS @ affine, grid, warns)
