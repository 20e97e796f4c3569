"""How the DICOM reader treats imperfect data (see docs/reading.md)."""

from __future__ import annotations

import os
from dataclasses import dataclass

__all__ = ["DEFAULT_POLICY", "ReadPolicy"]


@dataclass(frozen=True)
class ReadPolicy:
    """What to do with imperfect geometry. The defaults refuse anything that would give a wrong
    volume and record (as warnings on the Volume) what can be represented exactly."""

    #: Relative deviation of slice steps from their mean above which the spacing is non-uniform.
    spacing_tolerance: float = 0.01
    #: A step larger than this multiple of the median step means missing slices.
    gap_factor: float = 1.5
    #: "error" refuses non-uniform spacing; "warn" keeps the mean step and records a warning.
    on_nonuniform: str = "error"
    #: "error" refuses a stack whose positions drift sideways (gantry tilt); "affine" keeps the
    #: exact geometry as a sheared affine and records a warning.
    on_shear: str = "affine"
    #: "error" refuses a series when any of its files cannot be placed (e.g. no
    #: ImagePositionPatient); "skip" loads the rest and records a warning per file.
    on_bad_file: str = "error"
    #: Refuse volumes whose decoded float32 array would exceed this many bytes (checked before
    #: any pixel is decoded).
    max_bytes: int = int(os.environ.get("MEDFUSE_MAX_VOLUME_BYTES", 16 * 2**30))
    #: Threads for decoding pixel data (None: min(8, CPUs)).
    workers: int | None = None

    def __post_init__(self) -> None:
        from ..errors import ConfigError

        if self.on_nonuniform not in ("error", "warn"):
            raise ConfigError(
                f"on_nonuniform must be 'error' or 'warn', not {self.on_nonuniform!r}"
            )
        if self.on_bad_file not in ("error", "skip"):
            raise ConfigError(f"on_bad_file must be 'error' or 'skip', not {self.on_bad_file!r}")
        if self.on_shear not in ("error", "affine"):
            raise ConfigError(f"on_shear must be 'error' or 'affine', not {self.on_shear!r}")


DEFAULT_POLICY = ReadPolicy()
