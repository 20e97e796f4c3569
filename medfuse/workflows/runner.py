"""The runner: discovery, the batch state and an engine composed into one run
(:func:`run_workflow`), and what it did (:class:`RunSummary`).

A run: discover the studies (:mod:`.discovery`); under the output folder's lock
(:mod:`.state`), sort them into those to skip (an ``ok`` line and its folder), those to redo
in part (``partial``: only the failed formats) and the others; hand those to do to the engine
(:mod:`.engines`); append each record to ``status.jsonl`` as it comes.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from ..config import Workflow
from ..errors import InputError
from .discovery import StudyTask, discover_studies
from .engines import make_engine, resolve_workers, usable_cpus
from .state import StudyRecord, append_status, clean_partials, read_status, run_lock

__all__ = ["RunSummary", "run_workflow"]

log = logging.getLogger(__name__)


@dataclass
class RunSummary:
    """What :func:`run_workflow` did: one status record per study, in input order."""

    out_dir: Path
    records: list[StudyRecord]
    skipped: list[StudyTask]
    wall_s: float
    #: worker processes the studies ran in (1: this process)
    workers: int = 1

    @property
    def ok(self) -> list[StudyRecord]:
        return [r for r in self.records if r.status == "ok"]

    @property
    def partial(self) -> list[StudyRecord]:
        """Studies some of whose formats failed (the others were written; see ``failed``)."""
        return [r for r in self.records if r.status == "partial"]

    @property
    def failed(self) -> list[StudyRecord]:
        """Studies that failed (``error``: nothing written)."""
        return [r for r in self.records if r.status not in ("ok", "partial")]


def _to_do(
    tasks: list[StudyTask], out: Path, force: bool
) -> tuple[list[StudyTask], list[StudyTask]]:
    """``(to run, skipped)`` by the last status record of each key (see the module docstring)."""
    status = read_status(out)
    todo, skipped = [], []
    for t in tasks:
        last = status.get(t.key)
        exists = (out / t.key).is_dir()
        if last is not None and last.status == "ok" and exists and not force:
            skipped.append(t)
        elif last is not None and last.status == "partial" and exists and not force:
            todo.append(  # only the formats that failed
                dataclasses.replace(
                    t,
                    retry_formats=tuple(last.failed or ()),
                    retry_created=str(last.created or ""),
                    retry_model_sha256=str(last.model_sha256 or ""),
                )
            )
        else:
            todo.append(t)
    return todo, skipped


def run_workflow(
    workflow: Workflow,
    inputs: Sequence[str | os.PathLike],
    out_dir: str | os.PathLike,
    *,
    workers: int | Literal["auto"] | None = None,
    force: bool = False,
    engine: str | None = None,
    address: str | None = None,
    on_result: Callable[[StudyRecord], None] | None = None,
    on_start: Callable[[int, int], None] | None = None,
) -> RunSummary:
    """Run ``workflow`` over every study under ``inputs``, writing into ``out_dir``.

    ``workers``: processes (default: the workflow's ``run.workers``; ``"auto"``:
    :func:`~.engines.auto_workers`). ``force`` redoes finished
    studies (and every format of a ``partial`` one, whose failed formats alone are redone
    otherwise). ``engine``: ``"local"`` (this machine: in-process, or worker processes) or
    ``"ray"`` (Ray actors; ``address`` of an existing cluster, default a local one); default the
    workflow's ``run.engine``. Status and resume are the same with every engine.
    ``on_start(n_to_do, n_skipped)`` and ``on_result(record)`` (after each study) feed
    progress displays. Never raises for a single study's failure: see the records.
    """
    t0 = time.perf_counter()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tasks = discover_studies(
        inputs, readable_keys=workflow.export.include_phi, report_names=workflow.reports.filenames
    )
    if not tasks:
        raise InputError("no studies found", path=Path(inputs[0]) if inputs else None)
    records: list[StudyRecord] = []
    n_workers = 1
    with run_lock(out):
        clean_partials(out)
        todo, skipped = _to_do(tasks, out, force)
        if todo:
            n_workers = resolve_workers(workers or workflow.run.workers, len(todo))
        if on_start is not None:
            on_start(len(todo), len(skipped))
        log.info(
            "%d studies: %d to run, %d already finished; %d worker process%s",
            len(tasks),
            len(todo),
            len(skipped),
            n_workers,
            "es" if n_workers > 1 else " (this one)",
        )
        if todo:
            threads = workflow.run.threads or max(1, usable_cpus() // n_workers)
            runner = make_engine(
                engine or workflow.run.engine,
                n_workers,
                threads,
                address or workflow.run.address,
                workflow.run.export_worker,
            )
            for rec in runner.run(todo, workflow, out):
                rec = append_status(out, rec)
                records.append(rec)
                if rec.status == "partial":
                    log.warning("study %s partial: %s", rec.key, rec.reason)
                elif rec.status != "ok":
                    log.warning("study %s failed: %s", rec.key, rec.reason)
                if on_result is not None:
                    on_result(rec)
    order = {t.key: i for i, t in enumerate(tasks)}
    records.sort(key=lambda r: order.get(r.key, 0))
    return RunSummary(out, records, skipped, time.perf_counter() - t0, n_workers)
