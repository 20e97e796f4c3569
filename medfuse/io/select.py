"""Which series of a study a model should use.

Rules, applied in this order (the first that decides wins; ``medfuse info`` prints the reason for
every series):

1. **User override** – ``series=`` given as a SeriesInstanceUID, a part key (``UID#1``) or a
   case-insensitive substring of the SeriesDescription; it must match exactly one series part.
2. **Eligibility** – modality in the wanted list (default CT, then MR); not a localizer / scout
   (ImageType ``LOCALIZER`` or a description such as "scout", "topogram", "surview"); at least
   ``min_slices`` slices (default 3).
3. **Ranking** among the eligible – the wanted modality earlier in the list; ORIGINAL before
   DERIVED images; more slices; thinner slice spacing; lower SeriesNumber; then the UID.
"""

from __future__ import annotations

from ..errors import DicomError
from ..types import Series, Study

__all__ = ["DEFAULT_MODALITIES", "find_series", "select_series"]

DEFAULT_MODALITIES = ("CT", "MR")
LOCALIZER_WORDS = ("localizer", "localiser", "scout", "topogram", "surview", "survey", "scanogram")


def _ineligible(s: Series, modalities: tuple[str, ...], min_slices: int) -> str | None:
    if s.modality not in modalities:
        return f"modality {s.modality} is not one of {', '.join(modalities)}"
    if "LOCALIZER" in s.image_type:
        return "localizer (ImageType LOCALIZER)"
    desc = s.description.lower()
    word = next((w for w in LOCALIZER_WORDS if w in desc), None)
    if word:
        return f"localizer (description contains {word!r})"
    if s.n_slices < min_slices:
        return f"only {s.n_slices} slice(s); a volume needs at least {min_slices}"
    return None


def _rank(s: Series, modalities: tuple[str, ...]) -> tuple:
    derived = bool(s.image_type) and s.image_type[0] == "DERIVED"
    return (
        modalities.index(s.modality),
        derived,
        -s.n_slices,
        s.slice_spacing if s.slice_spacing else float("inf"),
        s.series_number if s.series_number is not None else 10**9,
        s.key,
    )


def find_series(study: Study, key: str) -> Series:
    """The one series part matching a UID, a part key or a description substring."""
    for s in study.series:
        if s.key == key:
            return s
    by_uid = [s for s in study.series if s.series_instance_uid == key]
    if by_uid:  # a UID that was split into parts: part 0 is the largest
        return min(by_uid, key=lambda s: s.part)
    hits = [s for s in study.series if key.lower() in s.description.lower()]
    if len(hits) == 1:
        return hits[0]
    available = (
        "; ".join(f"{s.key} ({s.description or 'no description'})" for s in study.series) or "none"
    )
    if not hits:
        raise DicomError(
            f"no series matches {key!r}", path=study.path, hint=f"available: {available}"
        )
    raise DicomError(
        f"{len(hits)} series match {key!r}; give the SeriesInstanceUID",
        path=study.path,
        hint=f"available: {available}",
    )


def select_series(
    study: Study,
    series: str | None = None,
    *,
    modalities: tuple[str, ...] = DEFAULT_MODALITIES,
    min_slices: int = 3,
) -> Series | None:
    """Mark the series a model should use (``Series.selected``) and give every series a reason."""
    for s in study.series:
        s.selected = False
    if series:
        chosen = find_series(study, series)
        for s in study.series:
            s.reason = (
                "selected by the user" if s is chosen else "not the series the user asked for"
            )
        chosen.selected = True
        return chosen
    eligible = []
    for s in study.series:
        why = _ineligible(s, modalities, min_slices)
        s.reason = why or ""
        if why is None:
            eligible.append(s)
    if not eligible:
        return None
    eligible.sort(key=lambda s: _rank(s, modalities))
    chosen = eligible[0]
    chosen.selected = True
    chosen.reason = "selected" + (
        f" (best of {len(eligible)} eligible)" if len(eligible) > 1 else ""
    )
    for s in eligible[1:]:
        s.reason = "eligible, ranked below the selected one"
    return chosen
