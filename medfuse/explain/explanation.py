"""Typed results of :func:`medfuse.explain`: saliency volumes, token attributions, attention,
modality contributions, and the :class:`Explanation` that holds them per label.

Everything here is numpy (no torch), so an :class:`Explanation` can be pickled, exported and
rendered without a model.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Container, Iterable

    import numpy as np

    from ..regrid import OriginalGridMap
    from ..types import PreprocessingRecord, Volume

__all__ = [
    "MIN_REPORT_SHARE",
    "Explanation",
    "MethodRun",
    "ModalityContribution",
    "Saliency",
    "TokenAttribution",
    "argmax_index",
]

#: below this share of a label's output (modality contributions) the report's words are not
#: listed as its evidence (:meth:`Explanation.report_phrases`)
MIN_REPORT_SHARE = 0.10

#: one figure is drawn at a time: matplotlib is not thread-safe (exporters run in threads)
_FIGURE_LOCK = threading.Lock()


def argmax_index(arr: np.ndarray) -> tuple[int, ...]:
    """Index of the maximum of ``arr`` without copying it when it is Fortran-ordered (maps on
    the original grid are; ``np.argmax`` would first copy a 300 MB map into C order)."""
    import numpy as np

    order = "F" if arr.flags.f_contiguous and not arr.flags.c_contiguous else "C"
    flat = arr.ravel(order=order)  # a view for a contiguous array of either order
    return tuple(int(v) for v in np.unravel_index(int(np.argmax(flat)), arr.shape, order=order))


@dataclass(eq=False)
class Saliency:
    """A 3D saliency map for one label from one method.

    ``model`` is on the model's input grid ``[X, Y, Z]`` (affine ``model_affine``, RAS mm);
    ``original`` is the same map on the source volume's grid, with the source
    :class:`~medfuse.types.Volume`'s affine, as an :class:`~medfuse.regrid.OriginalGridMap`
    that resamples it slab by slab when asked (``original.array`` for the whole map; a
    :class:`~medfuse.types.Volume` given here is wrapped). None when there is no preprocessing
    record. ``signed`` is True for methods whose values can be negative (integrated gradients).
    """

    method: str
    label: str
    model: np.ndarray
    model_affine: np.ndarray
    original: OriginalGridMap | None = None
    signed: bool = False
    params: dict[str, Any] = field(default_factory=dict)
    runtime_s: float = 0.0

    def __post_init__(self) -> None:
        from ..regrid import OriginalGridMap
        from ..types import Volume

        if isinstance(self.original, Volume):
            self.original = OriginalGridMap.from_volume(self.original)

    @property
    def peak_model(self) -> tuple[int, int, int]:
        """Voxel index of the maximum on the model grid."""
        import numpy as np

        return tuple(int(v) for v in np.unravel_index(int(np.argmax(self.model)), self.model.shape))  # type: ignore[return-value]

    @property
    def peak_world(self) -> tuple[float, float, float]:
        """RAS mm of the peak (model grid)."""
        import numpy as np

        ijk = np.asarray(self.peak_model, dtype=np.float64)
        a = np.asarray(self.model_affine, dtype=np.float64)
        return tuple(float(v) for v in a[:3, :3] @ ijk + a[:3, 3])  # type: ignore[return-value]

    @property
    def peak_original(self) -> tuple[int, int, int] | None:
        """Voxel index of the maximum on the original grid (None without ``original``)."""
        if self.original is None:
            return None
        return self.original.stats.argmax

    def normalized(self) -> np.ndarray:
        """The model-grid map scaled to [0, 1] (positive part for signed maps)."""
        import numpy as np

        m = np.maximum(self.model, 0.0) if self.signed else self.model - self.model.min()
        top = float(m.max())
        return (m / top if top > 0 else m).astype(np.float32)


@dataclass(eq=False)
class TokenAttribution:
    """Per-token scores for one label, with each token's character span in ``Report.text``
    (``(-1, -1)`` for special tokens and padding)."""

    method: str
    label: str
    tokens: list[str]
    spans: list[tuple[int, int]]
    scores: np.ndarray
    params: dict[str, Any] = field(default_factory=dict)
    runtime_s: float = 0.0

    def span_scores(self) -> list[tuple[int, int, float]]:
        """``(start, end, score)`` per distinct character span (tokens sharing a span — a finding
        marker and its words — are summed), in text order; special tokens are dropped."""
        acc: dict[tuple[int, int], float] = {}
        for (s, e), v in zip(self.spans, self.scores.tolist(), strict=True):
            if s < 0 or e <= s:
                continue
            acc[(int(s), int(e))] = acc.get((int(s), int(e)), 0.0) + float(v)
        return [(s, e, v) for (s, e), v in sorted(acc.items())]

    def char_scores(self, length: int) -> np.ndarray:
        """Score per character of a text of ``length`` characters (each span's score spread over
        its characters; overlapping spans add)."""
        import numpy as np

        out = np.zeros(int(length), dtype=np.float32)
        for s, e, v in self.span_scores():
            out[s : min(e, length)] += v
        return out

    def top(self, k: int = 5) -> list[tuple[int, int, float]]:
        """The ``k`` spans with the largest absolute score."""
        return sorted(self.span_scores(), key=lambda t: -abs(t[2]))[:k]


@dataclass
class ModalityContribution:
    """Exact two-player Shapley values over {image, report} for one label.

    ``value`` is the model output (logit by default) with both modalities, ``baseline`` with both
    replaced by the model's learned missing-modality tokens; ``image + report == value -
    baseline`` exactly (the efficiency property). ``interaction`` is the part that needs both:
    ``v(IR) - v(I) - v(R) + v(∅)``.
    """

    label: str
    image: float
    report: float
    value: float
    baseline: float
    image_only: float
    report_only: float
    output: str = "logit"
    runtime_s: float = 0.0

    @property
    def interaction(self) -> float:
        return self.value - self.image_only - self.report_only + self.baseline

    def fractions(self) -> dict[str, float]:
        """Share of each modality in ``|image| + |report|``."""
        tot = abs(self.image) + abs(self.report)
        if tot == 0:
            return {"image": 0.0, "report": 0.0}
        return {"image": abs(self.image) / tot, "report": abs(self.report) / tot}

    def to_dict(self) -> dict[str, Any]:
        """The JSON view (``prediction.json``'s ``modality_contribution``)."""
        return {
            "output": self.output,
            "image": round(self.image, 6),
            "report": round(self.report, 6),
            "interaction": round(self.interaction, 6),
            "baseline": round(self.baseline, 6),
            "fractions": {k: round(v, 4) for k, v in self.fractions().items()},
        }


@dataclass
class MethodRun:
    """One method run for one label: its parameters, runtime and forward passes."""

    method: str
    label: str
    params: dict[str, Any]
    runtime_s: float
    forward_passes: int | None = None
    note: str = ""


@dataclass(eq=False)
class Explanation:
    """Everything :func:`medfuse.explain` found for one case.

    Per label: ``saliency[label][method]`` (:class:`Saliency`), ``tokens[label][method]``
    (:class:`TokenAttribution`), ``modality[label]`` (:class:`ModalityContribution`).
    ``attention`` holds label-independent cross-attention maps where the fusion has them
    (``"text_to_image"``: a map on the model grid; ``"image_to_text"``: one weight per token).
    ``runs`` lists every method run with its parameters and runtime. ``image`` is the model's
    input (first channel) on the model grid, kept for pictures.
    """

    labels: list[str]
    methods: list[str]
    probabilities: dict[str, float]
    logits: dict[str, float]
    saliency: dict[str, dict[str, Saliency]] = field(default_factory=dict)
    tokens: dict[str, dict[str, TokenAttribution]] = field(default_factory=dict)
    modality: dict[str, ModalityContribution] = field(default_factory=dict)
    attention: dict[str, Any] = field(default_factory=dict)
    runs: list[MethodRun] = field(default_factory=list)
    report_text: str | None = None
    record: PreprocessingRecord | None = None
    image: np.ndarray | None = None
    model_name: str = ""
    case_key: str = ""
    modalities_used: tuple[str, ...] = ()
    #: rendered figures: (label, method, options) -> (the saliency drawn, PNG bytes)
    _figures: dict[tuple[str, str, str], tuple[Saliency, bytes]] = field(
        default_factory=dict, init=False, repr=False
    )

    # -- access -----------------------------------------------------------------------------------
    def get_saliency(self, label: str | None = None, method: str | None = None) -> Saliency | None:
        """The saliency of ``label`` (first label by default) from ``method`` (the first method
        with a saliency by default)."""
        label = label or (self.labels[0] if self.labels else None)
        maps = self.saliency.get(label or "", {})
        if method is not None:
            return maps.get(method)
        return next(iter(maps.values()), None)

    def get_tokens(
        self, label: str | None = None, method: str | None = None
    ) -> TokenAttribution | None:
        label = label or (self.labels[0] if self.labels else None)
        attrs = self.tokens.get(label or "", {})
        if method is not None:
            return attrs.get(method)
        return next(iter(attrs.values()), None)

    @property
    def runtime_s(self) -> float:
        return float(sum(r.runtime_s for r in self.runs))

    def to_dict(
        self,
        *,
        labels: Iterable[str] | None = None,
        image_maps: Container[str] | None = None,
        volume: Volume | None = None,
        top_phrases: int = 5,
    ) -> dict[str, Any]:
        """The JSON view of the explanation (``prediction.json``'s ``explanation``, which
        :meth:`medfuse.prediction.Prediction.to_dict` writes through this).

        Per label of ``labels`` (default: every explained label): the saliency peaks (LPS mm as
        in DICOM, RAS beside, the source voxel and, with the source ``volume``, its DICOM
        InstanceNumber; ``peak`` None for a flat map) unless the label is left out of
        ``image_maps``; the modality contributions; the ``top_phrases`` report words and
        phrases with their sentence. Maps themselves are not included.
        """
        from .render import saliency_peaks

        per_label: dict[str, Any] = {}
        for label in self.labels if labels is None else labels:
            entry: dict[str, Any] = {}
            sal = self.get_saliency(label)
            if sal is not None and (image_maps is None or label in image_maps):
                peaks = saliency_peaks(sal, volume)
                entry["saliency"] = {
                    "method": sal.method,
                    "peak": peaks[0].to_dict() if peaks else None,
                    "peaks": [p.to_dict() for p in peaks],
                    "note": None if peaks else "no localised evidence (the map is flat)",
                    "coordinates": "LPS mm (DICOM patient coordinates); RAS beside",
                }
            contrib = self.modality.get(label)
            if contrib is not None:
                entry["modality_contribution"] = contrib.to_dict()
            tokens = self.get_tokens(label)
            if tokens is not None and self.report_text:
                entry["top_report_phrases"] = [
                    p.to_dict() for p in self.report_phrases(label, top_phrases)
                ]
                entry["token_method"] = tokens.method
            per_label[label] = entry
        return {
            "methods": list(self.methods),
            "runtime_s": round(self.runtime_s, 4),
            "labels": per_label,
        }

    def report_share(self, label: str) -> float | None:
        """The report's share of ``label``'s output (modality contributions), None when they
        were not computed or there is no report."""
        c = self.modality.get(label)
        return c.fractions()["report"] if c is not None and self.report_text else None

    def report_phrases(self, label: str, k: int = 5) -> list[Any]:
        """The ``k`` report phrases with the largest positive attribution for ``label``
        (:func:`~medfuse.explain.render.top_report_phrases`), none when word attributions were
        not computed or the report carries less than :data:`MIN_REPORT_SHARE` of the output:
        the words of a report that hardly moves the output are not its evidence (their ranking
        is noise: e.g. an image reference for an image finding)."""
        from .render import top_report_phrases

        tokens = self.get_tokens(label)
        share = self.report_share(label)
        if (
            tokens is None
            or not self.report_text
            or (share is not None and share < MIN_REPORT_SHARE)
        ):
            return []
        return top_report_phrases(tokens, self.report_text, k)

    # -- pictures ---------------------------------------------------------------------------------
    def figure_png(self, label: str | None = None, method: str | None = None, **kw: Any) -> bytes:
        """PNG bytes: axial / coronal / sagittal slices through the saliency peak with the overlay,
        plus maximum-intensity projections (see :func:`medfuse.explain.render.saliency_png`).
        Rendered once per map and options (the HTML and PDF exports show the same figures)."""
        from .render import saliency_png

        sal = self.get_saliency(label, method)
        if sal is None:
            raise ValueError(f"no saliency for label {label!r} method {method!r}")
        key = (sal.label, sal.method, repr(sorted(kw.items())))
        with _FIGURE_LOCK:
            cached = self._figures.get(key)
            if cached is None or cached[0] is not sal:
                cached = self._figures[key] = (sal, saliency_png(sal, self.image, **kw))
        return cached[1]

    def report_html(self, label: str | None = None, method: str | None = None) -> str:
        """The report text as HTML with attribution highlighting (all text escaped)."""
        from .render import report_html

        attr = self.get_tokens(label, method)
        return report_html(self.report_text or "", attr)

    def _repr_html_(self) -> str:
        from .render import explanation_html

        return explanation_html(self)

    def __repr__(self) -> str:
        probs = ", ".join(f"{k}={v:.2f}" for k, v in self.probabilities.items())
        return (
            f"Explanation(model={self.model_name!r}, labels={self.labels}, methods={self.methods},"
            f" p: {probs}, {self.runtime_s:.2f} s)"
        )
