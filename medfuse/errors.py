"""The medfuse exception hierarchy.

Every error medfuse raises on purpose is a :class:`MedfuseError`. Each one names the file (or
object) it is about and the reason, and, where there is one, what the user can do about it::

    MedfuseError
    ├── InputError            something wrong with what the user gave us
    │   ├── DicomError        unreadable / unsupported DICOM
    │   │   └── CodecError    compressed pixel data without an installed decoder
    │   ├── GeometryError     slices that do not form one regular volume
    │   ├── VolumeError       NIfTI / NRRD / MHA files that cannot be read
    │   └── ReportError       report text that cannot be used
    ├── ModelError            weights, model cards, architectures
    ├── ExportError           writing an output failed
    └── ConfigError           workflow / model configuration is invalid
"""

from __future__ import annotations

import os

__all__ = [
    "CodecError",
    "ConfigError",
    "DicomError",
    "ExportError",
    "GeometryError",
    "InputError",
    "MedfuseError",
    "ModelError",
    "ReportError",
    "VolumeError",
]


class MedfuseError(Exception):
    """Base class. ``path`` is the file or folder concerned, ``reason`` what is wrong with it and
    ``hint`` (optional) what to do about it."""

    def __init__(
        self, reason: str, *, path: str | os.PathLike | None = None, hint: str | None = None
    ):
        self.reason = reason
        self.path = os.fspath(path) if path is not None else None
        self.hint = hint
        super().__init__(self._compose())

    def _compose(self) -> str:
        msg = f"{self.path}: {self.reason}" if self.path else self.reason
        if self.hint:
            msg += f" ({self.hint})"
        return msg

    def __reduce__(self):  # keep path/hint when pickled across worker processes
        return (_rebuild, (type(self), self.reason, self.path, self.hint))


def _rebuild(cls, reason, path, hint):
    return cls(reason, path=path, hint=hint)


class InputError(MedfuseError):
    """The input (file, folder, text) cannot be used."""


class DicomError(InputError):
    """A DICOM file or folder cannot be read or holds nothing usable."""


class CodecError(DicomError):
    """Pixel data is compressed with a transfer syntax for which no decoder is installed."""


class GeometryError(InputError):
    """The slices of a series do not form one regular, orientable volume."""


class VolumeError(InputError):
    """A NIfTI / NRRD / MHA volume file cannot be read."""


class ReportError(InputError):
    """A radiology report cannot be read or is empty."""


class ModelError(MedfuseError):
    """A model, its weights or its model card are missing, corrupt or inconsistent."""


class ExportError(MedfuseError):
    """An output could not be written."""


class ConfigError(MedfuseError):
    """A workflow or model configuration is invalid."""
