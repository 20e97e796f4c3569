"""The per-study export context: what the exporters of one output set share.

    from medfuse.export import ExportContext, ExportOptions, export_each, prepare_context

    ctx = prepare_context(["json", "dicom_sr"], ExportOptions(), study=study, volume=volume,
                          model=model_info(model))   # before the prediction (e.g. in a thread)
    pred = medfuse.predict(model, case)
    export_each(pred, "out/case1", ["json", "dicom_sr"], context=ctx)

One :class:`ExportContext` is made per study and handed to every exporter of its output set
(``export`` / ``export_each`` make one themselves when given none;
:func:`medfuse.export.prepare_context` makes one and runs the chosen formats' ``prepare`` hooks
on it). It holds:

* the **source headers**, read once (:meth:`ExportContext.source_datasets`, completed by
  :func:`medfuse.export.source.conform_header`) for every exporter and ``prepare`` hook that
  needs them;
* the **UID map** of the de-identified outputs (:attr:`ExportContext.uids`: keyed with
  ``MEDFUSE_DEID_KEY`` when set, else with a random key held by this context alone), so that
  ``prediction.json``, ``fhir.json``, ``sr.dcm`` and ``saliency/*.dcm`` carry the same replaced
  UIDs;
* the **prepared parts**: what each chosen format's ``prepare`` hook built before the
  prediction existed (:attr:`ExportContext.prepared`, by format name; the parametric map's
  structure, for instance);
* **shared renderings** (:meth:`ExportContext.shared`): work two exporters would otherwise
  repeat, such as the saliency figures that ``report.html`` and ``report.pdf`` both show.

The context lives as long as the caller keeps it: nothing is held at module level, so no
state passes from one study to the next (:data:`medfuse.export.source.ACTIVE_CONTEXT` points to
a context only while one of its exporters or hooks runs, in that thread). It is thread-safe
(the exporters run in threads, a ``prepare`` hook runs beside the model).

Owns what one output set shares; never writes a file, and never changes the prediction.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

from ..errors import ExportError
from .deid import UIDMap
from .source import (
    ACTIVE_CONTEXT,
    conform_header,
    read_header,
    read_volume_headers,
    volume_source_problem,
)

if TYPE_CHECKING:
    from pydicom import Dataset

    from ..prediction import Prediction
    from ..types import Study, Volume
    from .base import ExportOptions

__all__ = ["ExportContext"]

log = logging.getLogger(__name__)
T = TypeVar("T")


def _deid_key() -> bytes:
    env = os.environ.get("MEDFUSE_DEID_KEY", "")
    return hashlib.sha256(env.encode("utf-8")).digest() if env else os.urandom(32)


@dataclass(eq=False)
class ExportContext:
    """What the exporters of one study's output set share (see the module docstring).

    ``options``: the export options. ``study`` / ``volume``: the study and the image volume
    the prediction is (or will be) made from (None for a report-only prediction). ``model``:
    the prediction's model description (:func:`medfuse.prediction.model_info`), for ``prepare``
    hooks that build parts naming the model. ``image_maps``: whether the prediction is expected
    to carry image saliency maps (False lets a hook preparing a map output skip its work).
    """

    options: ExportOptions
    study: Study | None = None
    volume: Volume | None = None
    model: dict[str, Any] = field(default_factory=dict)
    image_maps: bool = True
    #: what each format's ``prepare`` hook returned, by format name
    prepared: dict[str, Any] = field(default_factory=dict)
    #: the UID map of the de-identified outputs (the same for every exporter of the set)
    uids: UIDMap = field(default_factory=lambda: UIDMap(_deid_key()))

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._datasets: list[Dataset] | None = None
        self._first: Dataset | None = None
        self._shared: dict[Any, Any] = {}

    @classmethod
    def for_prediction(cls, prediction: Prediction, options: ExportOptions) -> ExportContext:
        """A context for ``prediction`` with nothing prepared (what ``export`` makes when it
        is given none)."""
        case = prediction.case
        return cls(
            options,
            study=case.study if case is not None else None,
            volume=case.volume if case is not None else None,
            model=dict(prediction.model or {}),
        )

    # -- source headers --------------------------------------------------------------------------
    def source_datasets(self) -> list[Dataset]:
        """The source instances' headers, read once (:func:`.source.volume_datasets`): an
        :class:`~medfuse.errors.ExportError` when there is no DICOM source or a file cannot be
        read."""
        with self._lock:  # the other exporters wait for the one reading
            if self._datasets is None:
                self._datasets = read_volume_headers(self.volume)  # type: ignore[arg-type]
            return self._datasets

    @contextlib.contextmanager
    def active(self) -> Iterator[ExportContext]:
        """Within the block, in this thread, :func:`medfuse.export.source.volume_datasets` of
        this context's volume returns this context's headers (``export_each`` activates the
        context around each exporter, and the workflows around the ``prepare`` hooks)."""
        token = ACTIVE_CONTEXT.set(self)
        try:
            yield self
        finally:
            ACTIVE_CONTEXT.reset(token)

    def source_header(self) -> Dataset | None:
        """The first source header (the one already read when there), or None when there is no
        DICOM source or it cannot be read: for exporters that want descriptive attributes only."""
        vol = self.volume
        if volume_source_problem(vol) is not None:
            return None
        assert vol is not None
        with self._lock:
            if self._datasets:
                return self._datasets[0]
            if self._first is None:
                try:
                    self._first = conform_header(read_header(vol.source_files[0]), vol)
                except ExportError as exc:
                    log.warning("source header not readable: %s", exc)
                    return None
            return self._first

    # -- prepared parts and shared renderings ------------------------------------------------------
    def take_prepared(self, name: str) -> Any:
        """What format ``name``'s ``prepare`` hook built, handed over once (None when nothing
        was prepared): the exporter may change it."""
        with self._lock:
            return self.prepared.pop(name, None)

    def shared(self, key: Any, build: Callable[[], T]) -> T:
        """``build()``, once per ``key`` for the exporters of this output set (two threads that
        ask at once may both build; the first result is kept)."""
        with self._lock:
            if key in self._shared:
                return self._shared[key]
        value = build()
        with self._lock:
            return self._shared.setdefault(key, value)
