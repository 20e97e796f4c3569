"""Training targets of a cohort: the manifest's label columns, optionally filled in from the
reports by medfuse's report labeler, and an uncertainty policy.

Values are ``1`` (positive), ``0`` (negative), ``-1`` (uncertain) and NaN (unknown). With
``labels_from_reports`` every missing or empty cell of a case with a report gets the labeler's
value for that finding code (:func:`medfuse.text.labels.report_labels`): present → 1, uncertain
→ -1, absent → 0, and *not mentioned* → ``not_mentioned`` (0 by default: a report that does not
mention a finding is read as its absence, as CheXpert-style labelers do; ``"ignore"`` leaves it
unknown). A case without a report keeps its unknown cells unknown.

:meth:`LabelTable.targets` turns the values into loss targets: unknown is always masked (NaN,
never a negative); uncertain follows the policy ``ignore`` (masked, the default), ``positive``
(U-Ones) or ``negative`` (U-Zeros).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import ConfigError

if TYPE_CHECKING:
    from ..types import Report

__all__ = [
    "UNCERTAIN_POLICIES",
    "LabelTable",
    "check_report_codes",
    "labeler_output",
    "labels_from_reports",
]

#: Uncertain (-1) label → loss target.
UNCERTAIN_POLICIES: dict[str, float] = {"ignore": np.nan, "positive": 1.0, "negative": 0.0}
NOT_MENTIONED = ("negative", "ignore")


@dataclass
class LabelTable:
    """Label values of the cases (rows) and where each came from."""

    names: list[str]
    #: [cases, labels] float32: 1, 0, -1 or NaN
    values: np.ndarray
    #: [cases, labels] bool: the value came from the report labeler (a weak label)
    from_report: np.ndarray

    def targets(self, uncertain: str = "ignore") -> np.ndarray:
        """Loss targets [cases, labels] float32 with NaN where the loss is masked."""
        if uncertain not in UNCERTAIN_POLICIES:
            raise ConfigError(
                f"uncertain must be one of {sorted(UNCERTAIN_POLICIES)}, got {uncertain!r}"
            )
        t = self.values.astype(np.float32, copy=True)
        t[t == -1] = UNCERTAIN_POLICIES[uncertain]
        return t

    def subset(self, index: Sequence[int] | np.ndarray) -> LabelTable:
        idx = np.asarray(index, dtype=np.int64)
        return LabelTable(list(self.names), self.values[idx], self.from_report[idx])

    def sources(self) -> dict[str, dict[str, int]]:
        """Per label: how many values came from the manifest, from reports, or are unknown."""
        out = {}
        for j, name in enumerate(self.names):
            known = np.isfinite(self.values[:, j])
            rep = self.from_report[:, j] & known
            out[name] = {
                "manifest": int((known & ~rep).sum()),
                "report": int(rep.sum()),
                "unknown": int((~known).sum()),
            }
        return out

    @property
    def weak(self) -> list[str]:
        """Labels with at least one report-derived (weak) value."""
        return [n for j, n in enumerate(self.names) if bool(self.from_report[:, j].any())]


def check_report_codes(names: Sequence[str]) -> None:
    """:class:`ConfigError` unless every name is one of the report labeler's finding codes."""
    from ..text.lexicon import FINDING_CODES

    unknown_codes = [n for n in names if n not in FINDING_CODES]
    if unknown_codes:
        raise ConfigError(
            f"labels_from_reports can fill only the report labeler's finding codes; "
            f"{unknown_codes} are not among them",
            hint=f"finding codes: {', '.join(FINDING_CODES)}; give those columns in the manifest",
        )


def labeler_output(report: Report) -> dict[str, int | None]:
    """The report labeler's value of every finding code for one parsed report."""
    from ..text.labels import report_labels

    return report_labels(report)


def labels_from_reports(
    values: np.ndarray,
    names: Sequence[str],
    labeled: Sequence[dict[str, Any] | None],
    *,
    not_mentioned: str = "negative",
) -> LabelTable:
    """Fill the unknown cells of ``values`` from the labeler's output per case
    (:func:`labeler_output`; None: the case has no report)."""
    check_report_codes(names)
    if not_mentioned not in NOT_MENTIONED:
        raise ConfigError(f"not_mentioned must be one of {NOT_MENTIONED}, got {not_mentioned!r}")
    vals = np.array(values, dtype=np.float32, copy=True)
    filled = np.zeros(vals.shape, dtype=bool)
    blank = 0.0 if not_mentioned == "negative" else np.nan
    for i, got in enumerate(labeled):
        if got is None:
            continue
        gaps = ~np.isfinite(vals[i])
        if not gaps.any():
            continue
        for j, name in enumerate(names):
            if gaps[j]:
                v = got[name]
                vals[i, j] = blank if v is None else float(v)
                filled[i, j] = bool(np.isfinite(vals[i, j]))
    return LabelTable(list(names), vals, filled)
