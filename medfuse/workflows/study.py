"""One study: read it (:func:`load_study`), then predict, explain and export it into its
output folder (:func:`process_study`), giving its :class:`~.state.StudyRecord`.

The exporters' ``prepare`` hooks run in a thread beside the model (:func:`start_prepare`),
on the study's :class:`~medfuse.export.ExportContext`, which the exports then share.

Owns one study's life from its folder to its record; never decides which studies run, in
which process, or writes the status file (:mod:`.runner`, :mod:`.engines`, :mod:`.state`).
"""

from __future__ import annotations

import dataclasses
import logging
import os
import shutil
import tempfile
import threading
import time
import traceback
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import MedfuseError
from .reports import find_report
from .state import TMP_PREFIX, StudyRecord, commit_folder, copy_outputs

if TYPE_CHECKING:
    from ..config import Workflow
    from ..export import ExportContext, ExportOptions, ExportResult
    from .discovery import StudyTask
    from .export_worker import ExportWorker

__all__ = ["LoadedStudy", "error_record", "load_study", "process_study", "start_prepare"]

log = logging.getLogger(__name__)


@dataclass
class LoadedStudy:
    """A study read ahead of the model (prefetch): the volume, the report, timings, or an error."""

    task: StudyTask
    study: Any = None
    volume: Any = None
    report: Any = None
    report_source: str = ""
    timings: dict[str, float] = field(default_factory=dict)
    error: BaseException | None = None


def load_study(task: StudyTask, workflow: Workflow, csv_cache: dict) -> LoadedStudy:
    """Read ``task``'s series and pair its report (an error is kept, not raised)."""
    from ..io.study import read_study

    item = LoadedStudy(task)
    try:
        t0 = time.perf_counter()
        item.study = read_study(
            task.path,
            series=workflow.input.series,
            modalities=workflow.input.modalities,
            policy=workflow.input.policy(),
        )
        item.timings["scan"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        item.volume = item.study.volume
        item.timings["decode"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        item.report, item.report_source = find_report(task, workflow, item.volume, csv_cache)
        item.timings["report"] = time.perf_counter() - t0
    except Exception as exc:  # kept and reported by the study's status line
        item.error = exc
    return item


def error_record(task: StudyTask, exc: BaseException, timings: dict[str, float]) -> StudyRecord:
    """The ``error`` record of a study that failed with ``exc``."""
    if isinstance(exc, MedfuseError):
        reason = str(exc)
    else:
        # not a MedfuseError: a bug; keep the study's failure readable, the traceback in the log
        log.error(
            "study %s: unexpected %s\n%s", task.key, type(exc).__name__, traceback.format_exc()
        )
        reason = f"internal error ({type(exc).__name__}: {exc}); please report it"
    return StudyRecord(
        key=task.key,
        input=str(task.path),
        status="error",
        error_type=type(exc).__name__,
        reason=reason,
        timings_s=_rounded(timings),
    )


def _rounded(timings: dict[str, float]) -> dict[str, float]:
    return {k: round(v, 4) for k, v in timings.items()}


def start_prepare(
    case: Any,
    model: Any,
    workflow: Workflow,
    options: ExportOptions,
    formats: Sequence[str] | None = None,
) -> tuple[ExportContext, threading.Thread]:
    """The study's export context, and the thread (started) that runs the ``prepare`` hook of
    every format in ``formats`` (default: the workflow's) on it beside the model
    (:func:`medfuse.export.prepare_context`): the export work that needs the source study but
    no prediction, such as highdicom's structure of the parametric map. A hook that fails only
    costs its time."""
    from ..explain.api import SALIENCY_METHODS
    from ..export import ExportContext
    from ..prediction import model_info

    context = ExportContext(
        options,
        study=case.study,
        volume=case.volume,
        model=model_info(model),
        image_maps=bool(SALIENCY_METHODS.intersection(workflow.explain.methods))
        and getattr(model, "image_encoder", None) is not None,
    )

    def run() -> None:
        from ..export import run_prepare_hooks

        run_prepare_hooks(context, workflow.export.formats if formats is None else formats)

    thread = threading.Thread(target=run, name="medfuse-prepare-export", daemon=True)
    thread.start()
    return context, thread


def _model_volume(volume: Any, model: Any) -> tuple[Any, str | None]:
    """The volume the model is given: a series with several volumes (4D: a Siemens mosaic time
    series, an enhanced multi-frame with several echoes) is reduced to its first volume when the
    model's image encoder takes another number of channels than it has volumes (a 4D volume is
    otherwise read as one channel per volume), with a warning for the prediction."""
    arr = getattr(volume, "array", None)
    want = getattr(getattr(model, "image_encoder", None), "in_channels", None)
    if arr is None or arr.ndim != 4 or arr.shape[3] == 1 or want is None or want == arr.shape[3]:
        return volume, None
    first = dataclasses.replace(volume, array=arr[..., 0])
    return first, (
        f"the series holds {arr.shape[3]} volumes (4D); the model takes one: the first was used"
    )


def _retry_formats(
    task: StudyTask, workflow: Workflow, options: ExportOptions, out_dir: Path
) -> list[str]:
    """The formats a re-run of a ``partial`` study redoes (empty: all of them). All of them when
    the study's folder is gone, when none of the failed formats is still asked for, or with
    ``deidentify`` and no ``MEDFUSE_DEID_KEY`` (the replaced UIDs of the earlier outputs came
    from a random key and cannot be made again: a retried output would not match them)."""
    if not task.retry_formats or not (out_dir / task.key).is_dir():
        return []
    if options.deidentify and not os.environ.get("MEDFUSE_DEID_KEY"):
        log.info("study %s: --deidentify without MEDFUSE_DEID_KEY redoes every format", task.key)
        return []
    return [f for f in workflow.export.formats if f in task.retry_formats]


def _failure(fmt: str, exc: BaseException, tmp: Path, final: Path) -> dict[str, str]:
    """One failed format in a status record (its reason names the study's folder, not the
    temporary one)."""
    return {"error_type": type(exc).__name__, "reason": str(exc).replace(str(tmp), str(final))}


def _merged(formats: list[str], *results: ExportResult) -> ExportResult:
    """One :class:`~medfuse.export.ExportResult` of several, each of some of ``formats``, in
    the order of ``formats``."""
    from ..export import ExportResult

    def join(parts: list[dict[str, Any]]) -> dict[str, Any]:
        every = {k: v for part in parts for k, v in part.items()}
        return {f: every[f] for f in formats if f in every}

    return ExportResult(
        join([r.written for r in results]),
        join([r.failed for r in results]),
        join([r.timings for r in results]),
    )


def process_study(
    item: LoadedStudy,
    model: Any,
    workflow: Workflow,
    out_dir: Path,
    export_worker: ExportWorker | None = None,
) -> StudyRecord:
    """Predict, explain and export one loaded study into ``out_dir/<key>/``; the status record:
    ``ok``, ``partial`` (some formats failed: the others are written and the record names each
    failed format and why) or ``error`` (nothing written). With ``export_worker``, the formats
    it takes are prepared and written there, beside this process (:mod:`.export_worker`)."""
    from ..export import export_each
    from ..prediction import model_info, predict
    from ..types import Case

    task = item.task
    timings = dict(item.timings)
    t_start = time.perf_counter()
    if item.error is not None:
        return error_record(task, item.error, timings)
    tmp: Path | None = None
    try:
        volume, note = _model_volume(item.volume, model)
        case = Case(volume=volume, report=item.report, study=item.study, key=task.key)
        methods = list(workflow.explain.methods)
        options = workflow.export.options()
        retry = _retry_formats(task, workflow, options, out_dir)
        sha = str(model_info(model).get("sha256") or "")
        if retry and not (task.retry_model_sha256 == sha and task.retry_created):
            retry = []  # another model since: every output is redone
        formats = retry or list(workflow.export.formats)
        apart = export_worker.formats(formats, volume) if export_worker is not None else []
        here = [f for f in formats if f not in apart]
        context, prepared = start_prepare(case, model, workflow, options, here)
        handover = None
        if export_worker is not None and apart:
            handover = export_worker.prepare(context, apart, task.key)
        pred = predict(
            model,
            case,
            explain=methods if methods else False,
            labels=(
                list(workflow.explain.labels)
                if isinstance(workflow.explain.labels, tuple)
                else workflow.explain.labels
            ),
            explain_params={k: dict(v) for k, v in workflow.explain.params.items()},
        )
        if note:
            pred.warnings.append(note)
        prepared.join()
        final = out_dir / task.key
        tmp = Path(tempfile.mkdtemp(prefix=f"{TMP_PREFIX}{task.key}-", dir=out_dir)).resolve()
        if retry:
            pred.created = task.retry_created  # the same derived identifiers as the others
            copy_outputs(final, tmp)
        if export_worker is not None and handover is not None:
            export_worker.export(handover, pred, tmp)
        result = export_each(pred, tmp, here, options, context=context)
        if export_worker is not None and handover is not None:
            theirs = export_worker.collect(handover, pred, tmp, options, context)
            result = _merged(formats, result, theirs)
        failed = {f: _failure(f, e, tmp, final) for f, e in result.failed.items()}
        outputs = sorted(
            str(p.relative_to(tmp)).replace(os.sep, "/") for p in tmp.rglob("*") if p.is_file()
        )
        timings.update(pred.timings)
        timings.update((f"export_{name}", s) for name, s in result.timings.items())
        if failed and not outputs:  # nothing written: the study failed
            first = next(iter(result.failed.values()))
            return dataclasses.replace(
                error_record(task, first, timings),
                reason="; ".join(f"{f}: {v['reason']}" for f, v in failed.items()),
                failed=failed,
            )
        commit_folder(tmp, final)
        tmp = None
        timings["wall"] = time.perf_counter() - t_start + sum(item.timings.values())
        record = StudyRecord(
            key=task.key,
            input=str(task.path),
            status="partial" if failed else "ok",
            modalities_used=list(pred.modalities_used),
            report=item.report_source,
            positive=[f.label for f in pred.positive],
            outputs=outputs,
            retried=retry or None,
            warnings=list(pred.warnings),
            timings_s=_rounded(timings),
        )
        if failed:
            first_failed = next(iter(failed.values()))
            record = dataclasses.replace(
                record,
                failed=failed,
                error_type=first_failed["error_type"],
                reason=(
                    f"{len(failed)} of {len(formats)} formats failed "
                    f"({', '.join(failed)}), the others were written: "
                    + "; ".join(f"{f}: {v['reason']}" for f, v in failed.items())
                ),
                created=pred.created,
                model_sha256=sha,
            )
        return record
    except Exception as exc:  # one study's failure must not stop the batch
        return error_record(task, exc, timings)
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
