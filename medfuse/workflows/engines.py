"""Engines: where the studies run. One interface, :class:`Engine` (``run(tasks, workflow,
out_dir)`` yields each study's :class:`~.state.StudyRecord` as it finishes), three engines:

* :class:`SerialEngine`: in this process, reading the next study in a thread while the
  current one computes, and writing the DICOM outputs in the export worker beside it
  (:mod:`.export_worker`);
* :class:`ProcessEngine`: across worker processes (spawned; each loads the model once, and ends
  when this process does: :func:`exit_with_parent`); a worker that dies fails only the studies
  it held, and the pool is restarted;
* :class:`RayEngine`: across Ray actors (``medfuse[ray]``), on a local or remote cluster.

:func:`make_engine` picks one from the run's settings. Every engine runs a study the same way
(:func:`.study.load_study`, then :func:`.study.process_study`); the status file, resume and
the output folder are the runner's (:mod:`.runner`). Owns processes, threads and the model's
placement; never writes the status file.
"""

from __future__ import annotations

import concurrent.futures as cf
import logging
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from ..errors import ConfigError, InputError
from .study import error_record, load_study, process_study

if TYPE_CHECKING:
    from ..config import Workflow
    from .discovery import StudyTask
    from .export_worker import ExportWorker
    from .state import StudyRecord

__all__ = [
    "Engine",
    "ProcessEngine",
    "RayEngine",
    "SerialEngine",
    "auto_workers",
    "exit_with_parent",
    "make_engine",
    "resolve_workers",
    "setup_model",
]

log = logging.getLogger(__name__)


class Engine(Protocol):
    """Runs studies: yields one record per task, in the order they finish."""

    def run(
        self, tasks: Sequence[StudyTask], workflow: Workflow, out_dir: Path
    ) -> Iterator[StudyRecord]: ...


def setup_model(workflow: Workflow, threads: int | None) -> Any:
    """The workflow's model on its device, in eval mode (``threads``: torch's CPU threads)."""
    import torch

    from ..models.model import load_model

    if threads:
        torch.set_num_threads(threads)
    device = workflow.run.device
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    model = load_model(workflow.model_ref(), map_location=device)
    return model.to(device).eval()


@dataclass
class SerialEngine:
    """In this process, reading the next study in a thread while the current one computes;
    the DICOM exports in a second process as ``export_worker`` asks (:meth:`export_worker_for`)."""

    threads: int | None = None
    #: ``run.export_worker``: "auto", True or False
    export_worker: bool | str = "auto"

    def run(
        self, tasks: Sequence[StudyTask], workflow: Workflow, out_dir: Path
    ) -> Iterator[StudyRecord]:
        worker = self.export_worker_for(workflow)
        if worker is not None:
            worker.start()  # its imports overlap the model's loading
        try:
            model = setup_model(workflow, self.threads)
            csv_cache: dict = {}
            with cf.ThreadPoolExecutor(1, thread_name_prefix="medfuse-prefetch") as pool:
                pending = pool.submit(load_study, tasks[0], workflow, csv_cache) if tasks else None
                for i in range(len(tasks)):
                    item = pending.result()  # type: ignore[union-attr]
                    pending = (
                        pool.submit(load_study, tasks[i + 1], workflow, csv_cache)
                        if i + 1 < len(tasks)
                        else None
                    )
                    yield process_study(item, model, workflow, out_dir, worker)
        finally:
            if worker is not None:
                worker.close()

    def export_worker_for(self, workflow: Workflow) -> ExportWorker | None:
        """The run's :class:`~.export_worker.ExportWorker`, or None. ``True``: one for every
        study, waited for. ``"auto"``: one when this process may use two CPUs or more, for
        studies of :data:`~.export_worker.AUTO_MIN_VOXELS` or more that come once it has
        started. ``False``, or no format it can write: none."""
        from .export_worker import AUTO_MIN_VOXELS, ExportWorker

        mode = self.export_worker
        if not mode or not ExportWorker.capable(workflow.export.formats):
            return None
        if mode != "auto":
            return ExportWorker(min_voxels=0, wait=True)
        return ExportWorker(AUTO_MIN_VOXELS) if usable_cpus() >= 2 else None


def exit_with_parent(interval_s: float = 1.0) -> None:
    """In a worker process: end it once its parent has gone (killed with SIGKILL, say), rather
    than leave it waiting for work that never comes (a daemon thread checks every
    ``interval_s``)."""
    import threading
    import time

    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(interval_s)
        os._exit(1)

    threading.Thread(target=watch, name="medfuse-parent-watch", daemon=True).start()


# worker-process state (one model per worker process, loaded once by its initializer)
_WORKER: dict[str, Any] = {}


def _worker_init(workflow_data: dict[str, Any], threads: int | None) -> None:
    from ..config import Workflow

    exit_with_parent()
    wf = Workflow.model_validate(workflow_data)
    _WORKER.update(workflow=wf, model=setup_model(wf, threads), csv={})


def _worker_run(task: StudyTask, out_dir: str) -> StudyRecord:
    wf = _WORKER["workflow"]
    item = load_study(task, wf, _WORKER["csv"])
    return process_study(item, _WORKER["model"], wf, Path(out_dir))


def _workflow_data(workflow: Workflow) -> dict[str, Any]:
    return {**workflow.model_dump(), "base_dir": workflow.base_dir}


@dataclass
class ProcessEngine:
    """Across ``workers`` processes (spawned; each loads the model once). A worker that dies
    (e.g. a crash in a native decoder) fails only the studies it held; the pool is restarted."""

    workers: int
    threads: int | None = None

    def run(
        self, tasks: Sequence[StudyTask], workflow: Workflow, out_dir: Path
    ) -> Iterator[StudyRecord]:
        import multiprocessing as mp
        from concurrent.futures.process import BrokenProcessPool

        data = _workflow_data(workflow)
        queue = list(tasks)
        while queue:
            pool = cf.ProcessPoolExecutor(
                self.workers,
                mp_context=mp.get_context("spawn"),
                initializer=_worker_init,
                initargs=(data, self.threads),
            )
            broken = False
            try:
                running: dict[cf.Future, StudyTask] = {}
                while (queue or running) and not broken:
                    while queue and len(running) < self.workers:
                        task = queue.pop(0)
                        running[pool.submit(_worker_run, task, str(out_dir))] = task
                    done, _ = cf.wait(running, return_when=cf.FIRST_COMPLETED)
                    for fut in done:
                        task = running.pop(fut)
                        try:
                            yield fut.result()
                        except BrokenProcessPool:
                            broken = True
                            yield error_record(
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


@dataclass
class RayEngine:
    """Across Ray actors (``medfuse[ray]``), each loading the model once: a local cluster of
    ``workers`` CPUs by default, or the cluster at ``address`` (``out_dir`` must then be on a
    filesystem every node sees). An actor that dies fails only its study and is replaced."""

    workers: int
    threads: int | None = None
    address: str | None = None

    def run(
        self, tasks: Sequence[StudyTask], workflow: Workflow, out_dir: Path
    ) -> Iterator[StudyRecord]:
        try:
            import ray
        except ImportError:
            raise ConfigError(
                "the ray engine needs Ray",
                hint="pip install 'medfuse[ray]' (or use --engine local)",
            ) from None

        started = not ray.is_initialized()
        if started:
            ray.init(
                address=self.address,
                num_cpus=None if self.address else self.workers,
                include_dashboard=False,
                log_to_driver=False,
                logging_level=logging.WARNING,
            )

        @ray.remote(num_cpus=1)
        class StudyWorker:
            def __init__(self, data: dict[str, Any], threads: int | None) -> None:
                _worker_init(data, threads)

            def run(self, task: StudyTask, out: str) -> StudyRecord:
                return _worker_run(task, out)

        data = _workflow_data(workflow)
        try:
            free = [StudyWorker.remote(data, self.threads) for _ in range(self.workers)]
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
                    free.append(StudyWorker.remote(data, self.threads))
                    yield error_record(
                        task,
                        InputError(
                            "the Ray worker died while processing this study", path=task.path
                        ),
                        {},
                    )
        finally:
            if started:
                ray.shutdown()


#: ``run.workers: auto`` gives every worker process at least this many studies: a worker's
#: start-up (imports, the model) costs about one or two studies (docs/scaling.md)
AUTO_STUDIES_PER_WORKER = 2
#: ... and at most one worker per this much available memory (a worker's peak RSS: 1.3 GiB
#: with a 512² × 500 CT, docs/benchmarks.md)
AUTO_MEMORY_PER_WORKER = 2 * 1024**3


def usable_cpus() -> int:
    """The CPUs this process may run on (its affinity mask where the platform has one)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def _available_memory() -> int | None:
    """Bytes of memory available to new processes (Linux ``MemAvailable``), else None."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def auto_workers(n_studies: int) -> int:
    """Worker processes for ``run.workers: auto`` and ``n_studies`` to run: one per usable CPU,
    but at most one per :data:`AUTO_STUDIES_PER_WORKER` studies and one per
    :data:`AUTO_MEMORY_PER_WORKER` of available memory; 1 (this process) for a small batch.

    Most of a study's work (DICOM headers, highdicom, pydicom, the PDF) holds Python's GIL, so
    one process uses about one core; on 2 cores, two worker processes ran a batch of 512² × 300
    CT studies 1.5–2.4× faster than one (docs/scaling.md)."""
    from ..config import MAX_WORKERS

    memory = _available_memory()
    by_memory = max(1, memory // AUTO_MEMORY_PER_WORKER) if memory else usable_cpus()
    return max(1, min(usable_cpus(), by_memory, n_studies // AUTO_STUDIES_PER_WORKER, MAX_WORKERS))


def resolve_workers(requested: int | str, n_studies: int) -> int:
    """Worker processes for ``n_studies`` to run: ``requested`` (``run.workers`` or
    ``--workers``), no more than the studies, or :func:`auto_workers` for ``"auto"``."""
    if requested == "auto":
        return auto_workers(n_studies)
    return max(1, min(int(requested), n_studies))


def make_engine(
    name: str,
    workers: int,
    threads: int | None,
    address: str | None = None,
    export_worker: bool | str = "auto",
) -> Engine:
    """``"ray"``: :class:`RayEngine`; ``"local"``: :class:`ProcessEngine` with more than one
    worker, else :class:`SerialEngine` (``export_worker``: ``run.export_worker``)."""
    if name == "ray":
        return RayEngine(workers, threads, address)
    if workers > 1:
        return ProcessEngine(workers, threads)
    return SerialEngine(threads, export_worker)
