"""Run a workflow over DICOM studies: discover, pair reports, predict, explain, export, resume.

    from medfuse.config import load_workflow
    from medfuse.workflows import run_workflow
    summary = run_workflow(load_workflow("workflows/chest_ct_triage.yaml"), ["sample_cases"], "out")
    summary.failed        # [] when every study finished

What counts as a study (:func:`discover_studies`): an input path that directly holds DICOM
files, a report file, a DICOMDIR or a ``dicom/`` sub-folder, or that is a NIfTI / NRRD / MHA
file, is **one study**;
any other folder is a **folder of studies**, each entry (sub-folder or volume file) one study,
read recursively. Reports are paired as :class:`medfuse.config.ReportSource` describes.

Outputs: each study's files are written into a hidden temporary folder inside ``out`` and
renamed to ``out/<key>/`` when all of them are complete, then a line is appended to
``out/status.jsonl`` (``ok``; ``partial`` when some formats failed and the others were
written, naming each failed format and why; ``error`` with the reason; timings). A re-run
skips studies with an ``ok`` line whose folder exists (``force`` redoes them), redoes only the
failed formats of a ``partial`` study (into a copy of its folder, renamed over it when done) and
retries the failed ones; an interrupted run leaves no half-written output folder. ``key`` is
pseudonymous (``study-<12 hex digits>`` from the study's path) unless the workflow sets
``export.include_phi``, which uses the folder name.
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import dataclasses
import datetime as _dt
import hashlib
import json
import logging
import os
import re
import shutil
import tempfile
import threading
import time
import traceback
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .config import Workflow
from .errors import ConfigError, InputError, MedfuseError, ReportError

__all__ = [
    "STATUS_FILE",
    "RunSummary",
    "StudyTask",
    "discover_studies",
    "find_report",
    "process_study",
    "run_workflow",
    "study_key",
]

log = logging.getLogger(__name__)

STATUS_FILE = "status.jsonl"
_TMP_PREFIX = ".partial-"
_REPORT_SUFFIXES = (".txt", ".json", ".md", ".html")
_VOLUME_SUFFIXES = (".nii", ".nii.gz", ".nrrd", ".nhdr", ".mha", ".mhd")


# -- discovery ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class StudyTask:
    """One study to process: where it is and the name of its output folder. ``retry_formats``
    (a re-run of a ``partial`` study): only these formats are exported, into a copy of the
    study's folder, with the earlier prediction's ``retry_created`` time when its model
    (``retry_model_sha256``) is the same, so that the new outputs carry the same derived
    identifiers as the others."""

    key: str
    path: Path
    retry_formats: tuple[str, ...] = ()
    retry_created: str = ""
    retry_model_sha256: str = ""

    @property
    def name(self) -> str:
        return self.path.name


def _is_volume_file(p: Path) -> bool:
    name = p.name.lower()
    return p.is_file() and name.endswith(_VOLUME_SUFFIXES)


def _looks_like_dicom(p: Path) -> bool:
    try:
        with p.open("rb") as fh:
            head = fh.read(132)
    except OSError:
        return False
    return head[128:132] == b"DICM" or head[:2] == b"\x08\x00"


def _is_single_study(folder: Path, report_names: Sequence[str]) -> bool:
    try:
        entries = list(folder.iterdir())
    except OSError as exc:
        raise InputError(f"cannot list the folder: {exc.strerror or exc}", path=folder) from None
    names = {e.name for e in entries}
    if names & set(report_names) or "DICOMDIR" in names:
        return True
    if any(e.is_dir() and e.name.lower() == "dicom" for e in entries):
        return True
    return any(e.is_file() and _looks_like_dicom(e) for e in entries)


def safe_name(name: str) -> str:
    """``name`` reduced to a safe file-name part (letters, digits, ``._-``; no leading dot)."""
    cleaned = re.sub(r"[^A-Za-z0-9._-]+", "_", name).lstrip("._")[:64]
    return cleaned or "study"


def study_key(path: str | os.PathLike, *, readable: bool = False) -> str:
    """The output folder name of a study: pseudonymous ``study-<sha256 of the absolute path,
    12 hex digits>``, or the sanitised folder name when ``readable``."""
    p = Path(path).resolve()
    if readable:
        name = p.name
        for suffix in _VOLUME_SUFFIXES:
            if name.lower().endswith(suffix):
                name = name[: -len(suffix)]
                break
        return safe_name(name)
    return "study-" + hashlib.sha256(str(p).encode("utf-8", "surrogatepass")).hexdigest()[:12]


def discover_studies(
    inputs: Sequence[str | os.PathLike],
    *,
    readable_keys: bool = False,
    report_names: Sequence[str] = ("report.txt",),
) -> list[StudyTask]:
    """The studies under ``inputs`` (see the module docstring for the rule), keys unique."""
    tasks: list[StudyTask] = []
    for raw in inputs:
        p = Path(raw)
        if not p.exists():
            raise InputError("no such file or folder", path=p)
        if p.is_file() or _is_single_study(p, report_names):
            candidates = [p]
        else:
            candidates = sorted(
                e
                for e in p.iterdir()
                if not e.name.startswith(".") and (e.is_dir() or _is_volume_file(e))
            )
        tasks.extend(StudyTask(study_key(c, readable=readable_keys), c) for c in candidates)
    seen: dict[str, int] = {}
    unique = []
    for t in tasks:
        n = seen.get(t.key, 0)
        seen[t.key] = n + 1
        unique.append(t if n == 0 else StudyTask(f"{t.key}-{n + 1}", t.path))
    return unique


# -- reports --------------------------------------------------------------------------------------
def _study_ids(volume: Any) -> dict[str, str]:
    """AccessionNumber and StudyInstanceUID of the volume's first source file."""
    ids = {"study_instance_uid": getattr(volume, "study_instance_uid", None) or ""}
    files = getattr(volume, "source_files", ())
    if files:
        import pydicom

        with contextlib.suppress(Exception):  # a report lookup must not fail the study
            ds = pydicom.dcmread(
                files[0], stop_before_pixels=True, specific_tags=["AccessionNumber"]
            )
            ids["accession_number"] = str(ds.get("AccessionNumber", "") or "")
    return {k: v for k, v in ids.items() if v}


class _CsvReports:
    """A reports CSV loaded once: id -> text."""

    def __init__(self, path: Path, id_column: str, text_column: str | None):
        from .io.reports import iter_csv_reports

        self.path = path
        self.rows = {
            rid.strip(): text
            for rid, text in iter_csv_reports(path, text_column, id_column)
            if rid and rid.strip()
        }


def find_report(
    task: StudyTask, workflow: Workflow, volume: Any = None, csv_cache: dict | None = None
) -> tuple[Any, str]:
    """``(Report or None, where it came from)`` for ``task`` following ``workflow.reports``."""
    from .io.reports import read_report

    src = workflow.reports
    base = task.path if task.path.is_dir() else task.path.parent
    names = list(src.filenames)
    if task.path.is_file():
        stem = study_key(task.path, readable=True)
        names = [f"{stem}{s}" for s in _REPORT_SUFFIXES] + names
    for name in names:
        candidate = base / name
        if candidate.is_file():
            return read_report(candidate), f"{name} in the study folder"
    ids = _study_ids(volume) if (src.folder or src.csv) and volume is not None else {}
    if src.folder and ids:
        folder = workflow.resolve(src.folder)
        for kind, value in ids.items():
            for suffix in _REPORT_SUFFIXES:
                candidate = folder / f"{safe_name(value)}{suffix}"  # type: ignore[operator]
                if candidate.is_file():
                    return read_report(candidate), f"reports folder, by {kind}"
    if src.csv and ids:
        path = workflow.resolve(src.csv)
        cache = csv_cache if csv_cache is not None else {}
        if path not in cache:
            cache[path] = _CsvReports(path, src.id_column, src.text_column)  # type: ignore[arg-type]
        rows = cache[path].rows
        for kind, value in ids.items():
            if value in rows and rows[value].strip():
                report = read_report({"text": rows[value]})
                report.source = f"{path}#{value}"
                return report, f"reports CSV, by {kind}"
    if src.required:
        raise ReportError(
            "no report found for this study",
            path=task.path,
            hint="put report.txt in the study folder or configure reports.folder / reports.csv",
        )
    return None, "none found: image-only"


# -- one study ------------------------------------------------------------------------------------
@dataclass
class _Loaded:
    """A study read ahead of the model (prefetch): the volume, the report, timings, or an error."""

    task: StudyTask
    study: Any = None
    volume: Any = None
    report: Any = None
    report_source: str = ""
    timings: dict[str, float] = field(default_factory=dict)
    error: BaseException | None = None


def _load(task: StudyTask, workflow: Workflow, csv_cache: dict) -> _Loaded:
    from .io.study import read_study

    item = _Loaded(task)
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


def _error_record(task: StudyTask, exc: BaseException, timings: dict[str, float]) -> dict[str, Any]:
    if isinstance(exc, MedfuseError):
        reason = str(exc)
    else:
        # not a MedfuseError: a bug; keep the study's failure readable, the traceback in the log
        log.error(
            "study %s: unexpected %s\n%s", task.key, type(exc).__name__, traceback.format_exc()
        )
        reason = f"internal error ({type(exc).__name__}: {exc}); please report it"
    return {
        "key": task.key,
        "input": str(task.path),
        "status": "error",
        "error_type": type(exc).__name__,
        "reason": reason,
        "timings_s": {k: round(v, 4) for k, v in timings.items()},
    }


def _commit_folder(tmp: Path, final: Path) -> None:
    """Rename the finished temporary folder to ``final`` (replacing an old one)."""
    if final.exists():
        trash = final.with_name(f"{_TMP_PREFIX}old-{final.name}-{os.getpid()}")
        os.replace(final, trash)
        shutil.rmtree(trash, ignore_errors=True)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o777 & ~umask)  # mkdtemp makes 0700; outputs get the usual mode
    os.replace(tmp, final)


def _prepare_exports(
    case: Any, model: Any, workflow: Workflow, options: Any
) -> threading.Thread | None:
    """Start, in a thread beside the model, the export work that needs the source study but no
    prediction: highdicom's structure of the parametric map (its per-frame groups and source
    references, about 1 s of Python for 300 slices; :func:`medfuse.export.dicom_saliency.prepare`).
    None when the workflow writes no parametric map for this study. A failure here only costs
    the time: the exporter then builds the map itself and reports what is wrong."""
    from .explain.api import SALIENCY_METHODS
    from .export import dicom_saliency
    from .export._source import volume_source_problem
    from .prediction import model_info

    wants_maps = SALIENCY_METHODS.intersection(workflow.explain.methods)
    if (
        "dicom_saliency" not in workflow.export.formats
        or not wants_maps
        or getattr(model, "image_encoder", None) is None
        or volume_source_problem(case.volume) is not None
    ):
        return None
    info = model_info(model)

    def run() -> None:
        try:
            dicom_saliency.prepare(case.volume, info, options)
        except Exception as exc:  # the exporter repeats the work and reports what is wrong
            log.debug("parametric map not prepared for %s: %s", case.key, exc)

    thread = threading.Thread(target=run, name="medfuse-prepare-export", daemon=True)
    thread.start()
    return thread


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


def _retry_formats(task: StudyTask, workflow: Workflow, options: Any, out_dir: Path) -> list[str]:
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


def _copy_outputs(src: Path, dst: Path) -> None:
    """The earlier outputs of a study into its new temporary folder (hard links where the
    filesystem allows: every output is replaced by renaming, never written in place)."""

    def link(a: str, b: str) -> None:
        try:
            os.link(a, b)
        except OSError:
            shutil.copy2(a, b)

    shutil.copytree(src, dst, copy_function=link, dirs_exist_ok=True)


def _failure(fmt: str, exc: BaseException, tmp: Path, final: Path) -> dict[str, str]:
    """One failed format in a status record (its reason names the study's folder, not the
    temporary one)."""
    return {"error_type": type(exc).__name__, "reason": str(exc).replace(str(tmp), str(final))}


def process_study(item: _Loaded, model: Any, workflow: Workflow, out_dir: Path) -> dict[str, Any]:
    """Predict, explain and export one loaded study into ``out_dir/<key>/``; the status record:
    ``ok``, ``partial`` (some formats failed: the others are written and the record names each
    failed format and why) or ``error`` (nothing written)."""
    from .export import export_each
    from .prediction import predict
    from .types import Case

    task = item.task
    timings = dict(item.timings)
    t_start = time.perf_counter()
    if item.error is not None:
        return _error_record(task, item.error, timings)
    tmp: Path | None = None
    try:
        volume, note = _model_volume(item.volume, model)
        case = Case(volume=volume, report=item.report, study=item.study, key=task.key)
        methods = list(workflow.explain.methods)
        options = workflow.export.options()
        prepared = _prepare_exports(case, model, workflow, options)
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
        if prepared is not None:
            prepared.join()
        final = out_dir / task.key
        tmp = Path(tempfile.mkdtemp(prefix=f"{_TMP_PREFIX}{task.key}-", dir=out_dir)).resolve()
        formats = _retry_formats(task, workflow, options, out_dir)
        sha = str((pred.model or {}).get("sha256") or "")
        if formats and task.retry_model_sha256 == sha and task.retry_created:
            pred.created = task.retry_created  # the same derived identifiers as the others
        elif formats:
            formats = []  # another model since: every output is redone
        if formats:
            _copy_outputs(final, tmp)
        result = export_each(pred, tmp, formats or workflow.export.formats, options)
        failed = {f: _failure(f, e, tmp, final) for f, e in result.failed.items()}
        outputs = sorted(
            str(p.relative_to(tmp)).replace(os.sep, "/") for p in tmp.rglob("*") if p.is_file()
        )
        timings.update(pred.timings)
        if failed and not outputs:  # nothing written: the study failed
            first = next(iter(result.failed.values()))
            rec = _error_record(task, first, timings)
            rec["reason"] = "; ".join(f"{f}: {v['reason']}" for f, v in failed.items())
            rec["failed"] = failed
            return rec
        _commit_folder(tmp, final)
        tmp = None
        timings["wall"] = time.perf_counter() - t_start + sum(item.timings.values())
        record: dict[str, Any] = {
            "key": task.key,
            "input": str(task.path),
            "status": "partial" if failed else "ok",
            "modalities_used": list(pred.modalities_used),
            "report": item.report_source,
            "positive": [f.label for f in pred.positive],
            "outputs": outputs,
        }
        if formats:
            record["retried"] = formats
        if failed:
            first = next(iter(failed.values()))
            record.update(
                failed=failed,
                error_type=first["error_type"],
                reason=(
                    f"{len(failed)} of {len(formats or workflow.export.formats)} formats failed "
                    f"({', '.join(failed)}), the others were written: "
                    + "; ".join(f"{f}: {v['reason']}" for f, v in failed.items())
                ),
                created=pred.created,
                model_sha256=sha,
            )
        record.update(
            warnings=list(pred.warnings), timings_s={k: round(v, 4) for k, v in timings.items()}
        )
        return record
    except Exception as exc:  # one study's failure must not stop the batch
        return _error_record(task, exc, timings)
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)


# -- the run --------------------------------------------------------------------------------------
@dataclass
class RunSummary:
    """What :func:`run_workflow` did: one status record per study, in input order."""

    out_dir: Path
    records: list[dict[str, Any]]
    skipped: list[StudyTask]
    wall_s: float

    @property
    def ok(self) -> list[dict[str, Any]]:
        return [r for r in self.records if r["status"] == "ok"]

    @property
    def partial(self) -> list[dict[str, Any]]:
        """Studies some of whose formats failed (the others were written; see ``failed``)."""
        return [r for r in self.records if r["status"] == "partial"]

    @property
    def failed(self) -> list[dict[str, Any]]:
        """Studies that failed (``error``: nothing written)."""
        return [r for r in self.records if r["status"] not in ("ok", "partial")]


def read_status(out_dir: str | os.PathLike) -> dict[str, dict[str, Any]]:
    """The last status record per key in ``out_dir/status.jsonl`` (unreadable lines ignored:
    a line cut by a crash is simply not a finished study)."""
    path = Path(out_dir) / STATUS_FILE
    last: dict[str, dict[str, Any]] = {}
    if not path.is_file():
        return last
    with path.open(encoding="utf-8", errors="replace") as fh:
        for line in fh:
            with contextlib.suppress(ValueError):
                rec = json.loads(line)
                if isinstance(rec, dict) and isinstance(rec.get("key"), str):
                    last[rec["key"]] = rec
    return last


def _append_status(out_dir: Path, record: dict[str, Any]) -> None:
    """Append one line (a single ``write`` on an O_APPEND file: lines never interleave)."""
    record = {
        **record,
        "finished": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }
    line = (json.dumps(record, ensure_ascii=False, allow_nan=False) + "\n").encode("utf-8")
    fd = os.open(out_dir / STATUS_FILE, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o666)
    try:
        # a line cut by a crash must not glue onto the next one
        if os.fstat(fd).st_size and not _ends_with_newline(out_dir / STATUS_FILE):
            line = b"\n" + line
        os.write(fd, line)
        if os.environ.get("MEDFUSE_FSYNC", "") == "1":
            os.fsync(fd)
    finally:
        os.close(fd)


def _ends_with_newline(path: Path) -> bool:
    with path.open("rb") as fh:
        fh.seek(-1, os.SEEK_END)
        return fh.read(1) == b"\n"


@contextlib.contextmanager
def _run_lock(out_dir: Path) -> Iterator[None]:
    """One run per output folder at a time (advisory lock on ``out/.medfuse.lock``)."""
    try:
        import fcntl
    except ImportError:  # Windows: no advisory lock
        yield
        return
    with open(out_dir / ".medfuse.lock", "a+b") as fh:
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            raise ConfigError(
                "another medfuse run is writing to this output folder", path=out_dir
            ) from None
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


def _clean_partials(out_dir: Path) -> None:
    for p in out_dir.glob(f"{_TMP_PREFIX}*"):
        shutil.rmtree(p, ignore_errors=True) if p.is_dir() else p.unlink(missing_ok=True)


def _setup_model(workflow: Workflow, threads: int | None) -> Any:
    import torch

    from .models.model import load_model

    if threads:
        torch.set_num_threads(threads)
    device = workflow.run.device
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    model = load_model(workflow.model_ref(), map_location=device)
    return model.to(device).eval()


def _sequential(
    tasks: Sequence[StudyTask], workflow: Workflow, out_dir: Path, threads: int | None
) -> Iterator[dict[str, Any]]:
    """In this process, reading the next study in a thread while the current one computes."""
    model = _setup_model(workflow, threads)
    csv_cache: dict = {}
    with cf.ThreadPoolExecutor(1, thread_name_prefix="medfuse-prefetch") as pool:
        pending = pool.submit(_load, tasks[0], workflow, csv_cache) if tasks else None
        for i in range(len(tasks)):
            item = pending.result()  # type: ignore[union-attr]
            pending = (
                pool.submit(_load, tasks[i + 1], workflow, csv_cache)
                if i + 1 < len(tasks)
                else None
            )
            yield process_study(item, model, workflow, out_dir)


# worker-process state (one model per worker, loaded once)
_WORKER: dict[str, Any] = {}


def _worker_init(workflow_data: dict[str, Any], threads: int | None) -> None:
    from .config import Workflow

    wf = Workflow.model_validate(workflow_data)
    _WORKER.update(workflow=wf, model=_setup_model(wf, threads), csv={})


def _worker_run(task: StudyTask, out_dir: str) -> dict[str, Any]:
    wf = _WORKER["workflow"]
    item = _load(task, wf, _WORKER["csv"])
    return process_study(item, _WORKER["model"], wf, Path(out_dir))


def _parallel(
    tasks: Sequence[StudyTask], workflow: Workflow, out_dir: Path, workers: int, threads: int | None
) -> Iterator[dict[str, Any]]:
    """Across ``workers`` processes (spawned; each loads the model once). A worker that dies
    (e.g. a crash in a native decoder) fails only the studies it held; the pool is restarted."""
    import multiprocessing as mp
    from concurrent.futures.process import BrokenProcessPool

    data = {**workflow.model_dump(), "base_dir": workflow.base_dir}
    queue = list(tasks)
    while queue:
        pool = cf.ProcessPoolExecutor(
            workers,
            mp_context=mp.get_context("spawn"),
            initializer=_worker_init,
            initargs=(data, threads),
        )
        broken = False
        try:
            running: dict[cf.Future, StudyTask] = {}
            while (queue or running) and not broken:
                while queue and len(running) < workers:
                    task = queue.pop(0)
                    running[pool.submit(_worker_run, task, str(out_dir))] = task
                done, _ = cf.wait(running, return_when=cf.FIRST_COMPLETED)
                for fut in done:
                    task = running.pop(fut)
                    try:
                        yield fut.result()
                    except BrokenProcessPool:
                        broken = True
                        yield _error_record(
                            task,
                            InputError(
                                "the worker process died while processing this study "
                                "(a crash in a native library, or out of memory)",
                                path=task.path,
                            ),
                            {},
                        )
            if broken:  # the other in-flight studies are requeued once, in a fresh pool
                queue[:0] = list(running.values())
        finally:
            pool.shutdown(wait=True, cancel_futures=True)


def _ray(
    tasks: Sequence[StudyTask],
    workflow: Workflow,
    out_dir: Path,
    workers: int,
    threads: int | None,
    address: str | None,
) -> Iterator[dict[str, Any]]:
    """Across Ray actors (``medfuse[ray]``), each loading the model once: a local cluster of
    ``workers`` CPUs by default, or the cluster at ``address`` (``out_dir`` must then be on a
    filesystem every node sees). An actor that dies fails only its study and is replaced."""
    try:
        import ray
    except ImportError:
        raise ConfigError(
            "the ray engine needs Ray", hint="pip install 'medfuse[ray]' (or use --engine local)"
        ) from None

    started = not ray.is_initialized()
    if started:
        ray.init(
            address=address,
            num_cpus=None if address else workers,
            include_dashboard=False,
            log_to_driver=False,
            logging_level=logging.WARNING,
        )

    @ray.remote(num_cpus=1)
    class StudyWorker:
        def __init__(self, data: dict[str, Any], threads: int | None) -> None:
            _worker_init(data, threads)

        def run(self, task: StudyTask, out: str) -> dict[str, Any]:
            return _worker_run(task, out)

    data = {**workflow.model_dump(), "base_dir": workflow.base_dir}
    try:
        free = [StudyWorker.remote(data, threads) for _ in range(workers)]
        queue = list(tasks)
        pending: dict[Any, tuple[StudyTask, Any]] = {}
        while queue or pending:
            while queue and free:
                actor, task = free.pop(), queue.pop(0)
                pending[actor.run.remote(task, str(out_dir))] = (task, actor)
            (ref,), _ = ray.wait(list(pending), num_returns=1)
            task, actor = pending.pop(ref)
            try:
                yield ray.get(ref)
                free.append(actor)
            except ray.exceptions.RayActorError:
                free.append(StudyWorker.remote(data, threads))
                yield _error_record(
                    task,
                    InputError("the Ray worker died while processing this study", path=task.path),
                    {},
                )
    finally:
        if started:
            ray.shutdown()


def run_workflow(
    workflow: Workflow,
    inputs: Sequence[str | os.PathLike],
    out_dir: str | os.PathLike,
    *,
    workers: int | None = None,
    force: bool = False,
    engine: str | None = None,
    address: str | None = None,
    on_result: Callable[[dict[str, Any]], None] | None = None,
    on_start: Callable[[int, int], None] | None = None,
) -> RunSummary:
    """Run ``workflow`` over every study under ``inputs``, writing into ``out_dir``.

    ``workers``: processes (default: the workflow's ``run.workers``). ``force`` redoes finished
    studies (and every format of a ``partial`` one, whose failed formats alone are redone
    otherwise). ``engine``: ``"local"`` (this machine: in-process, or worker processes) or
    ``"ray"`` (Ray actors; ``address`` of an existing cluster, default a local one); default the
    workflow's ``run.engine``. Status and resume are the same with every engine. ``on_start(n_to_do, n_skipped)`` and ``on_result(record)`` (after each study) feed
    progress displays. Never raises for a single study's failure: see the records.
    """
    t0 = time.perf_counter()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    readable = workflow.export.include_phi
    tasks = discover_studies(
        inputs, readable_keys=readable, report_names=workflow.reports.filenames
    )
    if not tasks:
        raise InputError("no studies found", path=Path(inputs[0]) if inputs else None)
    n_workers = max(1, min(workers or workflow.run.workers, len(tasks)))
    threads = workflow.run.threads or max(1, (os.cpu_count() or 1) // n_workers)
    records: list[dict[str, Any]] = []
    with _run_lock(out):
        _clean_partials(out)
        status = read_status(out)
        todo, skipped = [], []
        for t in tasks:
            last = status.get(t.key, {})
            exists = (out / t.key).is_dir()
            if last.get("status") == "ok" and exists and not force:
                skipped.append(t)
            elif last.get("status") == "partial" and exists and not force:
                todo.append(  # only the formats that failed
                    dataclasses.replace(
                        t,
                        retry_formats=tuple(last.get("failed") or ()),
                        retry_created=str(last.get("created") or ""),
                        retry_model_sha256=str(last.get("model_sha256") or ""),
                    )
                )
            else:
                todo.append(t)
        if on_start is not None:
            on_start(len(todo), len(skipped))
        log.info("%d studies: %d to run, %d already finished", len(tasks), len(todo), len(skipped))
        engine = engine or workflow.run.engine
        results: Iterable[dict[str, Any]] = ()
        if todo and engine == "ray":
            results = _ray(todo, workflow, out, n_workers, threads, address or workflow.run.address)
        elif todo and n_workers > 1:
            results = _parallel(todo, workflow, out, n_workers, threads)
        elif todo:
            results = _sequential(todo, workflow, out, threads)
        for rec in results:
            _append_status(out, rec)
            records.append(rec)
            if rec["status"] == "partial":
                log.warning("study %s partial: %s", rec["key"], rec["reason"])
            elif rec["status"] != "ok":
                log.warning("study %s failed: %s", rec["key"], rec["reason"])
            if on_result is not None:
                on_result(rec)
    order = {t.key: i for i, t in enumerate(tasks)}
    records.sort(key=lambda r: order.get(r["key"], 0))
    return RunSummary(out, records, skipped, time.perf_counter() - t0)
