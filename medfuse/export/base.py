"""The export contract: :class:`ExportFormat`, :class:`ExportOptions`, :class:`Exporter` and
:func:`export`.

An exporter is registered in ``medfuse.registry.exporters`` under its format name, either as a
plain function ``write(prediction, out_dir, options, context) -> list[Path]`` or as an
:class:`Exporter` that adds a ``prepare(context)`` hook (:func:`register_exporter`). It writes
its files atomically inside ``out_dir``, returns the paths it wrote, and only reads the
prediction; everything the exporters of one study share (the source headers, the UID map,
prepared parts) comes in the :class:`~medfuse.export.context.ExportContext`.
"""

from __future__ import annotations

import enum
import logging
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .._pages import small_pages
from ..errors import ConfigError, ExportError, MedfuseError
from ..registry import exporters
from .context import ExportContext

if TYPE_CHECKING:
    from ..explain.explanation import Saliency
    from ..prediction import Prediction
    from ..types import Study, Volume

__all__ = [
    "FORMATS",
    "ExportFormat",
    "ExportOptions",
    "ExportResult",
    "Exporter",
    "default_workers",
    "export",
    "export_each",
    "exporter_of",
    "output_path",
    "prepare_context",
    "register_exporter",
    "run_prepare_hooks",
    "saliency_maps",
]

log = logging.getLogger(__name__)


class ExportFormat(str, enum.Enum):
    """The built-in exporters (registry names)."""

    JSON = "json"
    HTML = "html"
    PDF = "pdf"
    DICOM_SR = "dicom_sr"
    DICOM_SALIENCY = "dicom_saliency"
    NIFTI = "nifti"
    FHIR = "fhir"

    def __str__(self) -> str:
        return self.value


#: Built-in formats in the order ``export`` runs them (cheap text first).
FORMATS: tuple[str, ...] = tuple(f.value for f in ExportFormat)


#: ``ExportOptions.dicom_saliency_compression`` values: JPEG-LS Lossless, or uncompressed
JPEG_LS, UNCOMPRESSED = "jpeg-ls", "none"
DICOM_SALIENCY_COMPRESSIONS = (JPEG_LS, UNCOMPRESSED)


@dataclass
class ExportOptions:
    """What the exporters may put in their files.

    ``include_phi`` False (the default) keeps patient-identifying header values (name, ID,
    birth date, accession, institution) out of the human-readable outputs (JSON, HTML, PDF,
    FHIR); the study is named by its pseudonymous key. DICOM outputs belong to the source study
    (same StudyInstanceUID and patient module) so that a viewer shows them beside it, unless
    ``deidentify``: then they follow the DICOM PS3.15 Basic Application Level Confidentiality
    Profile (patient name and ID replaced by the study key, identifying attributes emptied or
    removed, UIDs replaced consistently within the output set, which ``prediction.json`` and
    ``fhir.json`` also use; see :mod:`medfuse.export.deid`).
    ``saliency_labels``: the labels whose saliency maps are exported (None: the positive
    findings whose evidence can be in the image — not those the model card marks as
    report-only, nor those not assessable without the image — or the most probable such label
    when none is positive). ``saliency_method``: which
    method's maps (None: the first one computed).
    """

    include_phi: bool = False
    deidentify: bool = False
    saliency_labels: Sequence[str] | None = None
    saliency_method: str | None = None
    dicom_saliency_compression: str = JPEG_LS
    #: Institution / device strings written into DICOM and FHIR outputs.
    manufacturer: str = "medfuse"
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.dicom_saliency_compression not in DICOM_SALIENCY_COMPRESSIONS:
            raise ConfigError(
                f"unknown dicom_saliency_compression {self.dicom_saliency_compression!r}",
                hint=f"choose from {', '.join(DICOM_SALIENCY_COMPRESSIONS)}",
            )

    @classmethod
    def from_mapping(cls, data: dict[str, Any] | None) -> ExportOptions:
        data = dict(data or {})
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(
                f"unknown export option(s) {unknown}", hint=f"known: {', '.join(sorted(known))}"
            )
        return cls(**data)


def output_path(out_dir: str | os.PathLike, name: str) -> Path:
    """``out_dir / name``, refusing any name that would land outside ``out_dir``."""
    base = Path(out_dir).resolve()
    target = (base / name).resolve()
    if base != target and base not in target.parents:
        raise ExportError(f"refusing to write outside the output folder: {name!r}", path=base)
    return target


def saliency_maps(prediction: Prediction, options: ExportOptions) -> list[Saliency]:
    """The saliency maps the options select, in label order (empty without an explanation)."""
    expl = prediction.explanation
    if expl is None or not expl.saliency:
        return []
    labels = list(options.saliency_labels) if options.saliency_labels is not None else None
    if labels is None:
        # a map only for assessable findings whose evidence can be in the image (not those the
        # model's card says come from the report alone, such as a smoking history)
        candidates = [
            f
            for f in prediction.findings
            if f.label in expl.saliency and f.assessable and f.evidence != "report"
        ]
        labels = [f.label for f in candidates if f.positive]
        if not labels and candidates:
            labels = [max(candidates, key=lambda f: f.probability).label]
    out = []
    for label in labels:
        sal = expl.get_saliency(label, options.saliency_method)
        if sal is not None:
            out.append(sal)
    return out


#: ``write(prediction, out_dir, options, context) -> paths``
WriteFn = Callable[..., "Sequence[Path]"]
#: ``prepare(context) -> part`` (None: nothing prepared)
PrepareFn = Callable[["ExportContext"], Any]


@dataclass(frozen=True)
class Exporter:
    """One export format: ``write(prediction, out_dir, options, context)`` writes the files
    and returns their paths; ``prepare(context)``, when given, builds before the prediction
    exists what ``write`` can take over (:meth:`ExportContext.take_prepared
    <medfuse.export.context.ExportContext.take_prepared>`): the workflows call it for every
    chosen format, in a thread beside the model. Calling an ``Exporter`` calls ``write``."""

    write: WriteFn
    prepare: PrepareFn | None = None

    def __call__(
        self,
        prediction: Prediction,
        out_dir: Path,
        options: ExportOptions,
        context: ExportContext | None = None,
    ) -> Sequence[Path]:
        return self.write(prediction, out_dir, options, context)


def register_exporter(
    name: str, *, prepare: PrepareFn | None = None, overwrite: bool = False
) -> Callable[[WriteFn], WriteFn]:
    """Decorator: register ``write`` (and its ``prepare`` hook) as the exporter ``name``; the
    function itself is returned unchanged::

        @register_exporter("csv_row", prepare=read_what_i_need)
        def export_csv_row(prediction, out_dir, options, context): ...
    """

    def add(write: WriteFn) -> WriteFn:
        exporters.register(name, Exporter(write, prepare), overwrite=overwrite)
        return write

    return add


def exporter_of(name: str) -> Exporter:
    """The registered exporter ``name`` as an :class:`Exporter` (a plain function registered
    with ``exporters.register`` is its ``write``, with no ``prepare`` hook)."""
    entry = exporters.get(name)
    return entry if isinstance(entry, Exporter) else Exporter(entry)


#: exporters that take longest on a large study, started first so that they overlap the rest
_SLOW_FIRST = ("dicom_saliency", "nifti", "dicom_sr", "pdf", "html")


@dataclass
class ExportResult:
    """What :func:`export_each` did: the paths each format wrote (formats that succeeded, in
    the order asked; an empty list for a format with nothing to write, such as a DICOM output
    without a DICOM source), the error of each format that failed, and the seconds each
    format took (``timings``, by format name, failed ones included)."""

    written: dict[str, list[Path]]
    failed: dict[str, MedfuseError]
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.failed


def export(
    prediction: Prediction,
    out_dir: str | os.PathLike,
    formats: Sequence[str] | None = None,
    options: ExportOptions | dict[str, Any] | None = None,
    *,
    workers: int | None = None,
    context: ExportContext | None = None,
) -> dict[str, list[Path]]:
    """Write ``prediction`` in each of ``formats`` (default: all built-in formats, then any
    registered by plugins) into ``out_dir``. Returns ``{format: [paths]}``.

    The exporters run concurrently in ``workers`` threads (default :func:`default_workers`:
    half the CPUs, at most one per format; 1 runs them one after another). An exporter must
    therefore only read the prediction. Every file is written atomically. An exporter that
    fails raises :class:`ExportError` naming the format, once the others have finished; the
    files they wrote stay (:func:`export_each` returns every format's outcome instead).

    ``context``: the study's :class:`~medfuse.export.context.ExportContext` (the source
    headers, the UID map, parts prepared before the prediction; see
    :func:`~medfuse.export.context.prepare_context`); default a new one, with nothing prepared.
    The exporters given one context form one output set (one UID map).
    """
    result = export_each(prediction, out_dir, formats, options, workers=workers, context=context)
    for error in result.failed.values():
        raise error
    return result.written


def default_workers() -> int:
    """Exporter threads by default: half the CPUs (at least one). The exporters' heavy parts
    run on their own thread pools (gzip members of the NIfTI, JPEG-LS frames of the parametric
    maps), and the rest (highdicom, pydicom, reportlab) holds the GIL. On a 2-core machine one
    exporter thread beat two, in the same run: 0.930× the wall time and 0.885× the CPU time of
    a warm 512² × 300 study with all seven formats (docs/benchmarks.md)."""
    return max(1, (os.cpu_count() or 1) // 2)


@small_pages()
def export_each(
    prediction: Prediction,
    out_dir: str | os.PathLike,
    formats: Sequence[str] | None = None,
    options: ExportOptions | dict[str, Any] | None = None,
    *,
    workers: int | None = None,
    context: ExportContext | None = None,
) -> ExportResult:
    """:func:`export`, but one format's failure does not hide the others: every exporter runs,
    and the result lists what each wrote and why each that failed failed (an exception that is
    not a :class:`MedfuseError` becomes an :class:`ExportError` naming the format and the
    exception). Unknown formats and bad options still raise :class:`ConfigError` at once."""
    from concurrent.futures import ThreadPoolExecutor

    opts = options if isinstance(options, ExportOptions) else ExportOptions.from_mapping(options)
    names = [str(n) for n in (formats if formats is not None else _default_formats())]
    unknown = [n for n in names if n not in exporters]
    if unknown:
        raise ConfigError(
            f"unknown export format(s) {unknown}", hint=f"choose from {exporters.names()}"
        )
    if workers is not None and workers < 1:
        raise ConfigError(f"workers must be at least 1, got {workers}")
    folder = Path(out_dir)
    folder.mkdir(parents=True, exist_ok=True)
    if context is not None and context.volume is not _volume_of(prediction):
        raise ConfigError(
            "the export context was made for another study than the prediction's",
            hint="make one context per study (prepare_context / ExportContext.for_prediction)",
        )
    ctx = context if context is not None else ExportContext.for_prediction(prediction, opts)
    timings: dict[str, float] = {}

    def run(name: str) -> list[Path]:
        t0 = time.perf_counter()
        try:
            with ctx.active():
                paths = list(exporter_of(name)(prediction, folder, opts, ctx))
        except MedfuseError:
            raise
        except Exception as exc:  # an exporter bug must name the format and the study
            raise ExportError(
                f"{name} export failed: {type(exc).__name__}: {exc}", path=folder
            ) from exc
        finally:
            timings[name] = time.perf_counter() - t0  # one key per thread: no lock needed
        log.debug("exported %s: %s", name, [p.name for p in paths])
        return paths

    written: dict[str, list[Path]] = {}
    failed: dict[str, MedfuseError] = {}
    n = min(len(names), workers or default_workers())
    if n <= 1:
        for name in names:
            try:
                written[name] = run(name)
            except MedfuseError as exc:
                failed[name] = exc
        return ExportResult(written, failed, _in_order(timings, names))
    slow = {name: i for i, name in enumerate(_SLOW_FIRST)}
    with ThreadPoolExecutor(n, thread_name_prefix="medfuse-export") as pool:
        futures = {
            name: pool.submit(run, name)
            for name in sorted(names, key=lambda f: slow.get(f, len(slow)))
        }
    for name in names:  # all have finished
        exc = futures[name].exception()
        if exc is None:
            written[name] = futures[name].result()
        elif isinstance(exc, MedfuseError):
            failed[name] = exc
        else:  # not from an exporter (run() wraps those): a bug here
            raise exc
    return ExportResult(written, failed, _in_order(timings, names))


def prepare_context(
    formats: Sequence[str],
    options: ExportOptions,
    *,
    study: Study | None = None,
    volume: Volume | None = None,
    model: dict[str, Any] | None = None,
    image_maps: bool = True,
) -> ExportContext:
    """A context for the study, with every chosen format's ``prepare`` hook run on it
    (:func:`run_prepare_hooks`)."""
    ctx = ExportContext(
        options, study=study, volume=volume, model=dict(model or {}), image_maps=image_maps
    )
    run_prepare_hooks(ctx, formats)
    return ctx


def run_prepare_hooks(context: ExportContext, formats: Sequence[str]) -> None:
    """Run the ``prepare`` hook of every format in ``formats`` that has one, in that order, on
    ``context`` (each result kept in ``context.prepared`` under its format's name): the work an
    exporter can do before the prediction exists. A hook that fails only costs its time: its
    exporter then does the work itself and reports what is wrong."""
    for name in formats:
        hook = exporter_of(name).prepare
        if hook is None:
            continue
        try:
            with context.active():
                part = hook(context)
        except Exception as exc:  # the exporter repeats the work and reports what is wrong
            log.debug("%s: nothing prepared: %s", name, exc)
            continue
        if part is not None:
            with context._lock:
                context.prepared[name] = part


def _volume_of(prediction: Prediction) -> Any:
    case = prediction.case
    return case.volume if case is not None else None


def _in_order(timings: dict[str, float], names: list[str]) -> dict[str, float]:
    return {n: timings[n] for n in names if n in timings}


def _default_formats() -> list[str]:
    names = exporters.names()
    return [f for f in FORMATS if f in names] + [n for n in names if n not in FORMATS]
