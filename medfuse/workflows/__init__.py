"""Run a workflow over DICOM studies: discover, pair reports, predict, explain, export, resume.

    from medfuse.config import load_workflow
    from medfuse.workflows import run_workflow
    summary = run_workflow(load_workflow("workflows/chest_ct_triage.yaml"), ["sample_cases"], "out")
    summary.failed        # [] when every study finished

The rooms, each a module (a study goes through them in this order):

* :mod:`.discovery`: which studies are under the inputs (:func:`discover_studies`: an input
  path that directly holds DICOM files, a report file, a DICOMDIR or a ``dicom/`` sub-folder,
  or that is a NIfTI / NRRD / MHA file, is **one study**; any other folder is a **folder of
  studies**, each entry one study), and each one's output folder name (:func:`study_key`:
  pseudonymous ``study-<12 hex digits>`` from the study's path unless the workflow sets
  ``export.include_phi``, which uses the folder name);
* :mod:`.reports`: the report of each study (:func:`find_report`, as
  :class:`medfuse.config.ReportSource` describes);
* :mod:`.study`: one study read, predicted, explained and exported (the exporters' ``prepare``
  hooks in a thread beside the model) into its output folder, giving its
  :class:`StudyRecord`;
* :mod:`.state`: ``out/status.jsonl`` (one :class:`StudyRecord` per line: ``ok``;
  ``partial`` when some formats failed and the others were written, naming each failed format
  and why; ``error`` with the reason; timings), the run lock, the atomic commit of each study's
  folder (written into a hidden temporary folder, renamed to ``out/<key>/`` when complete);
* :mod:`.engines`: where the studies run (in this process, worker processes, Ray actors),
  behind one interface;
* :mod:`.runner`: :func:`run_workflow`, which composes them. A re-run skips studies with an
  ``ok`` line whose folder exists (``force`` redoes them), redoes only the failed formats of a
  ``partial`` study (into a copy of its folder, renamed over it when done) and retries the
  failed ones; an interrupted run leaves no half-written output folder.

This package owns running a workflow over many studies: the rooms above and their
``status.jsonl``. It composes the other rooms' public functions (io, models, prediction,
explain, export) and must not reach into their internals; only the CLI imports it.
"""

from __future__ import annotations

from .discovery import StudyTask, discover_studies, safe_name, study_key
from .reports import find_report
from .runner import RunSummary, run_workflow
from .state import STATUS_FILE, StudyRecord, read_status
from .study import process_study

__all__ = [
    "STATUS_FILE",
    "RunSummary",
    "StudyRecord",
    "StudyTask",
    "discover_studies",
    "find_report",
    "process_study",
    "read_status",
    "run_workflow",
    "safe_name",
    "study_key",
]
