"""The export worker: a second process beside the one that runs the studies, for the DICOM
exporters (``dicom_sr``, ``dicom_saliency``) and their ``prepare`` hooks.

Most of a study's export work holds Python's GIL (pydicom, highdicom, reportlab, matplotlib),
so threads in one process run it one exporter after another. With the worker, a study's DICOM
outputs are prepared while this process runs the model, and written while it writes the other
formats::

    this process    read ─ predict + explain ──────── json, html, pdf, nifti, fhir ─ commit
    export worker          prepare the SR and the maps ─ write sr.dcm, saliency/*.dcm ┘

What crosses to the worker: the export options, the study's description, the volume's geometry
without its voxels (the DICOM exporters take the geometry and the source files' headers, never
the voxel values: the worker's volume is read-only zeros of the same shape), the model's
description, the output set's UID map (so that every output of the study carries the same
replaced UIDs) and then the prediction, without its case's volume. What comes back: each
format's files (written by the worker into the study's temporary folder), errors and timings,
and the worker's log records, which are handled here as if logged here.

If the worker dies or cannot take a study, this process writes those formats itself (their
files are the same; only the time differs), and the next study gets a fresh worker.

:class:`ExportWorker` is made by :class:`~.engines.SerialEngine` (``run.export_worker``: with
``auto``, for studies of at least :data:`AUTO_MIN_VOXELS` voxels on two CPUs or more). Owns one
helper process and what crosses to it; never decides which studies run.
"""

from __future__ import annotations

import concurrent.futures as cf
import dataclasses
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..export import ExportContext, ExportOptions, ExportResult
    from ..prediction import Prediction

__all__ = ["AUTO_MIN_VOXELS", "FORMATS", "ExportWorker", "Handover"]

log = logging.getLogger(__name__)

#: The formats the worker can write: built in, GIL-bound, and needing the volume's geometry and
#: source headers but not its voxel values.
FORMATS = ("dicom_sr", "dicom_saliency")

#: ``run.export_worker: auto`` uses the worker for a volume of at least this many voxels
#: (512² × 32): below it the DICOM exports take less than the handover costs.
AUTO_MIN_VOXELS = 512 * 512 * 32


def _builtin(name: str) -> Any:
    """The built-in writer of format ``name``."""
    from ..export import dicom_saliency, dicom_sr

    builtin = {
        "dicom_sr": dicom_sr.export_dicom_sr,
        "dicom_saliency": dicom_saliency.export_dicom_saliency,
    }
    return builtin[name]


@dataclass
class Handover:
    """One study's exports handed to the worker (:meth:`ExportWorker.prepare`): which formats,
    and the futures of its two calls."""

    key: str
    formats: list[str]
    prepared: cf.Future | None = None
    written: cf.Future | None = None
    #: why the worker did not write them (then this process does)
    problem: str = ""


@dataclass
class ExportWorker:
    """The helper process (spawned on first use, replaced after it dies), for studies of at
    least ``min_voxels`` voxels. ``level``: the logging level its records are collected at
    (default: the lower of this process's root and ``medfuse`` levels); each is then handled
    here as its logger here allows."""

    min_voxels: int = AUTO_MIN_VOXELS
    #: wait for the process to start (else a study that comes first stays in this process)
    wait: bool = False
    level: int | None = None

    def __post_init__(self) -> None:
        self._pool: cf.ProcessPoolExecutor | None = None
        self._ready: cf.Future | None = None

    # -- this process ------------------------------------------------------------------------------
    def start(self) -> None:
        """Start the process now (its imports then overlap this process's work)."""
        import multiprocessing as mp

        if self._pool is None:
            level = self.level
            if level is None:  # what this process would log
                level = min(
                    logging.getLogger().getEffectiveLevel(),
                    logging.getLogger("medfuse").getEffectiveLevel(),
                )
            self._pool = cf.ProcessPoolExecutor(
                1, mp_context=mp.get_context("spawn"), initializer=_init, initargs=(level,)
            )
            self._ready = self._pool.submit(os.getpid)  # done once the process has started

    @property
    def ready(self) -> bool:
        """Whether the process has started (its imports done: it takes a study at once)."""
        return self._ready is not None and self._ready.done() and not self._ready.exception()

    @property
    def pid(self) -> int | None:
        """The process's id once it has started (None before, or after it failed to)."""
        return self._ready.result() if self.ready else None  # type: ignore[union-attr]

    def close(self) -> None:
        """Stop the process (it exits once idle; this process does not wait for its exit)."""
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = self._ready = None

    @staticmethod
    def capable(formats: Sequence[str]) -> list[str]:
        """Those of ``formats`` the worker can write: :data:`FORMATS` still registered as the
        built-in exporters (a format replaced in this process stays here)."""
        from ..export import exporter_of

        return [f for f in formats if f in FORMATS and exporter_of(f).write is _builtin(f)]

    def formats(self, formats: Sequence[str], volume: Any) -> list[str]:
        """Those of ``formats`` the worker writes for a study of ``volume``: the
        :meth:`capable` ones; none for a volume under ``min_voxels`` (or none), or while the
        process is still starting (waiting for it would cost more than it saves)."""
        array = getattr(volume, "array", None)
        if array is None or array.size < self.min_voxels:
            return []
        self.start()
        if self.wait and self._ready is not None:
            cf.wait([self._ready])
        return self.capable(formats) if self.ready else []

    def prepare(self, context: ExportContext, formats: Sequence[str], key: str) -> Handover:
        """Hand study ``key``'s ``formats`` to the worker: it runs their ``prepare`` hooks on a
        copy of ``context`` (the same options, study, geometry, model and UID map) now."""
        ticket = Handover(key, list(formats))
        try:
            self.start()
            assert self._pool is not None
            ticket.prepared = self._pool.submit(
                _prepare, key, _context_state(context), ticket.formats
            )
        except Exception as exc:  # a worker that cannot start: this process exports
            self._lost(ticket, exc)
        return ticket

    def export(self, ticket: Handover, prediction: Prediction, out_dir: Path) -> None:
        """Have the worker write ``prediction`` in the ticket's formats into ``out_dir`` (it
        starts once the prepare hooks are done)."""
        if ticket.problem or self._pool is None:
            return
        try:
            ticket.written = self._pool.submit(
                _export, ticket.key, _without_voxels(prediction), str(out_dir)
            )
        except Exception as exc:  # e.g. the pool broke meanwhile
            self._lost(ticket, exc)

    def collect(
        self,
        ticket: Handover,
        prediction: Prediction,
        out_dir: Path,
        options: ExportOptions,
        context: ExportContext,
    ) -> ExportResult:
        """The worker's :class:`~medfuse.export.ExportResult` for the ticket (its log records
        handled here); when the worker failed, the same formats written in this process."""
        from ..export import ExportResult, export_each

        if ticket.written is not None and not ticket.problem:
            try:
                written, failed, timings, records = ticket.written.result()
            except Exception as exc:  # the worker died (or could not pickle)
                self._lost(ticket, exc)
            else:
                for record in records:
                    logger = logging.getLogger(record.name)
                    if logger.isEnabledFor(record.levelno):
                        logger.handle(record)
                return ExportResult(written, failed, timings)
        log.warning(
            "study %s: the export worker could not write %s (%s); writing them in this process",
            ticket.key,
            ", ".join(ticket.formats),
            ticket.problem or "not handed over",
        )
        return export_each(prediction, out_dir, ticket.formats, options, context=context)

    def _lost(self, ticket: Handover, exc: BaseException) -> None:
        ticket.problem = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        self.close()  # a fresh process for the next study


def _context_state(context: ExportContext) -> dict[str, Any]:
    """What the worker rebuilds ``context`` from (the volume without its voxels)."""
    return {
        "options": context.options,
        "study": _study_without_volumes(context.study),
        "volume": _geometry(context.volume),
        "model": context.model,
        "image_maps": context.image_maps,
        "uids": context.uids,
    }


def _geometry(volume: Any) -> Any:
    """``volume``'s fields but its voxels, with their shape and type: ``(fields, shape, dtype)``."""
    if volume is None:
        return None
    fields = {f.name: getattr(volume, f.name) for f in dataclasses.fields(volume)}
    array = fields.pop("array")
    return fields, tuple(array.shape), array.dtype.str


def _volume(geometry: Any) -> Any:
    """The worker's volume: the geometry over read-only zeros (no memory, shape and type kept)."""
    import numpy as np

    from ..types import Volume

    if geometry is None:
        return None
    fields, shape, dtype = geometry
    return Volume(array=np.broadcast_to(np.zeros((), dtype=dtype), shape), **fields)


def _study_without_volumes(study: Any) -> Any:
    return None if study is None else dataclasses.replace(study, _volumes={})


def _without_voxels(prediction: Prediction) -> Prediction:
    case = prediction.case
    if case is None:
        return prediction
    light = dataclasses.replace(case, volume=None, study=_study_without_volumes(case.study))
    return dataclasses.replace(prediction, case=light)


# -- the worker process --------------------------------------------------------------------------
class _Records(logging.Handler):
    """Keeps the worker's log records of one call, to be handled in the parent."""

    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        record.msg, record.args = record.getMessage(), None  # arguments may not pickle
        if record.exc_info:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
            record.exc_info = None
        self.records.append(record)

    def take(self) -> list[logging.LogRecord]:
        out, self.records = self.records, []
        return out


_STATE: dict[str, Any] = {}


def _init(level: int) -> None:
    from .engines import exit_with_parent

    exit_with_parent()
    # the exporters and the libraries they import when first called, before any study
    import highdicom.pm
    import highdicom.sr  # noqa: F401
    from pydicom.sr.codedict import codes

    from .. import export  # noqa: F401

    codes.DCM.Modality  # noqa: B018 — builds pydicom's table of concepts

    handler = _Records()
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    _STATE.update(records=handler, contexts={})


def _prepare(key: str, state: dict[str, Any], formats: list[str]) -> None:
    from ..export import ExportContext, run_prepare_hooks

    volume = _volume(state.pop("volume"))
    context = ExportContext(volume=volume, **state)
    run_prepare_hooks(context, formats)
    _STATE["contexts"] = {key: (context, formats)}  # one study at a time


def _export(
    key: str, prediction: Prediction, out_dir: str
) -> tuple[dict[str, list[Path]], dict[str, Any], dict[str, float], list[logging.LogRecord]]:
    from ..export import export_each

    context, formats = _STATE["contexts"].pop(key)
    if prediction.case is not None:
        prediction.case = dataclasses.replace(prediction.case, volume=context.volume)
    result = export_each(prediction, out_dir, formats, context.options, context=context)
    return result.written, result.failed, result.timings, _STATE["records"].take()
