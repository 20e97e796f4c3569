"""A built cohort: the manifest's usable cases, their cached inputs, targets and splits.

    ds = medfuse.Dataset.from_manifest("train.csv", labels=["cardiomegaly"],
                                       preprocessing=model.preprocessing)
    ds                      # in Jupyter: counts, failures, prevalence per split
    ds.split_indices()      # {"train": array([...]), "val": array([...]), "test": array([])}

Building reads every study once (:class:`~medfuse.data.cache.ImageCache`), reads every report
file once, fills labels from the reports when asked, and assigns splits: the manifest's
``split`` column, else a seeded split grouped by patient and stratified on the rarest positive
label of each group. A case whose image or report cannot be read is left out and listed in
:attr:`Dataset.failures` (and in ``dataset_report.json`` / ``.html``); the others are used.

The dataset is also what the trainer and the evaluator iterate (the same interface as the
synthetic cohort): ``labels``, ``label_matrix()``, ``times``, ``events``, ``image_present()``,
``report_present()``, ``reports()`` and ``inputs(preprocessing)``, whose rows are read from the
per-case cache files on demand, so memory does not grow with the number of cases.
"""

from __future__ import annotations

import html
import json
import logging
import os
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ConfigError
from .labels import LabelTable
from .manifest import SPLITS, Manifest, ManifestRow, read_manifest

__all__ = ["BuildFailure", "CaseImages", "Dataset", "assign_splits"]

log = logging.getLogger(__name__)

Progress = Callable[[str, int, int], None]


@dataclass(frozen=True)
class BuildFailure:
    """A case left out of the dataset, and why."""

    row: int
    case_id: str
    stage: str  # "manifest", "image" or "report"
    error: str
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "row": self.row,
            "case_id": self.case_id,
            "stage": self.stage,
            "error": self.error,
            "reason": self.reason,
        }


class CaseImages:
    """Model inputs of a dataset's cases, read from the cache per request:
    ``images[idx]`` → ``[len(idx), C, X, Y, Z]`` float16 (zeros where a case has no image)."""

    def __init__(self, cache: Any, keys: Sequence[str | None], shape: tuple[int, ...]):
        self.cache = cache
        self.keys = list(keys)
        self.shape = (len(self.keys), *shape)

    def __len__(self) -> int:
        return len(self.keys)

    def __getitem__(self, idx: Any) -> np.ndarray:
        index = np.atleast_1d(np.arange(len(self.keys))[idx])
        out = np.zeros((len(index), *self.shape[1:]), dtype=np.float16)
        for n, i in enumerate(index):
            k = self.keys[int(i)]
            if k is not None:
                out[n] = self.cache.load(k)
        return out


def assign_splits(
    rows: Sequence[ManifestRow],
    targets: np.ndarray,
    *,
    val_fraction: float = 0.2,
    test_fraction: float = 0.0,
    seed: int = 0,
) -> np.ndarray:
    """Split names per row: seeded, grouped by patient (a patient's rows share a split) and
    stratified on the rarest positive label of each group."""
    if not (0 <= val_fraction < 1 and 0 <= test_fraction < 1 and val_fraction + test_fraction < 1):
        raise ConfigError("val_fraction + test_fraction must lie in [0, 1)")
    groups: dict[str, list[int]] = {}
    for i, r in enumerate(rows):
        groups.setdefault(r.group, []).append(i)
    prevalence = np.nan_to_num(np.nanmean(np.where(targets == 1, 1.0, 0.0), axis=0), nan=1.0)
    strata: dict[int, list[str]] = {}
    for g, idx in groups.items():
        pos = np.flatnonzero(np.any(targets[idx] == 1, axis=0))
        stratum = int(pos[np.argmin(prevalence[pos])]) if pos.size else -1
        strata.setdefault(stratum, []).append(g)
    rng = np.random.default_rng([seed, 0x5B1D])
    out = np.empty(len(rows), dtype=object)
    for stratum in sorted(strata):
        names = sorted(strata[stratum])
        rng.shuffle(names)
        n = len(names)
        n_test = round(n * test_fraction)
        n_val = round(n * val_fraction)
        for k, g in enumerate(names):
            split = "test" if k < n_test else "val" if k < n_test + n_val else "train"
            for i in groups[g]:
                out[i] = split
    return out.astype(str)


class Dataset:
    """A built cohort (see the module docstring). Use :meth:`from_manifest`."""

    def __init__(
        self,
        manifest: Manifest,
        rows: list[ManifestRow],
        label_table: LabelTable,
        texts: list[str | None],
        image_keys: list[str | None],
        image_facts: list[dict[str, Any] | None],
        splits: np.ndarray,
        failures: list[BuildFailure],
        *,
        cache: Any = None,
        uncertain: str = "ignore",
        seconds: float = 0.0,
    ):
        self.manifest = manifest
        self.rows = rows
        self.label_table = label_table
        self.texts = texts
        self.image_keys = image_keys
        self.image_facts = image_facts
        self.splits = splits
        self.failures = failures
        self.cache = cache
        self.uncertain = uncertain
        self.seconds = seconds
        self._targets = label_table.targets(uncertain)

    # -- building ---------------------------------------------------------------------------------
    @classmethod
    def from_manifest(
        cls,
        manifest: str | os.PathLike | Manifest,
        labels: Sequence[str] | None = None,
        *,
        preprocessing: Any = None,
        images: bool = True,
        labels_from_reports: bool = False,
        not_mentioned: str = "negative",
        uncertain: str = "ignore",
        cache_dir: str | os.PathLike | None = None,
        workers: int = 1,
        engine: str = "local",
        val_fraction: float = 0.2,
        test_fraction: float = 0.0,
        seed: int = 0,
        on_invalid: str = "error",
        progress: Progress | None = None,
    ) -> Dataset:
        """Validate ``manifest`` and build the dataset.

        ``preprocessing``: the model's :class:`~medfuse.transforms.PreprocessingConfig` (or its
        dict; default: medfuse's defaults); ``images=False`` skips the images (text-only
        models). ``labels_from_reports`` / ``not_mentioned`` / ``uncertain``: see
        :mod:`medfuse.data.labels`. ``workers`` / ``engine``: how images are preprocessed
        (processes, or Ray with ``engine="ray"``). ``val_fraction`` / ``test_fraction`` /
        ``seed``: the split made when the manifest has no ``split`` column.
        """
        import time

        from ..errors import MedfuseError
        from ..io.reports import read_report
        from .cache import ImageCache, build_images, cached_report_labels
        from .labels import UNCERTAIN_POLICIES, check_report_codes
        from .labels import labels_from_reports as fill

        if uncertain not in UNCERTAIN_POLICIES:
            raise ConfigError(
                f"uncertain must be one of {sorted(UNCERTAIN_POLICIES)}, got {uncertain!r}"
            )
        if labels_from_reports and labels is not None:
            check_report_codes(labels)
        t0 = time.perf_counter()
        man = (
            manifest
            if isinstance(manifest, Manifest)
            else read_manifest(
                manifest, labels, on_invalid=on_invalid, allow_missing_labels=labels_from_reports
            )
        )
        names = list(labels) if labels is not None else list(man.labels)
        if not names:
            raise ConfigError("no label columns: name them in data.labels", path=man.path)
        failures = [
            BuildFailure(
                p.row, p.case_id, "manifest", "invalid", f"column {p.column!r}: {p.reason}"
            )
            for p in man.invalid
        ]
        bad: set[int] = set()
        # reports: files read once (text only; the text encoder tokenizes later)
        texts: list[str | None] = []
        for n, r in enumerate(man.rows):
            text = r.report_text
            if r.report is not None:
                try:
                    text = read_report(r.report, parse=False).text
                except (MedfuseError, OSError, ValueError) as exc:  # unreadable: row left out
                    reason = getattr(exc, "reason", None) or str(exc)
                    failures.append(
                        BuildFailure(r.row, r.case_id, "report", type(exc).__name__, reason)
                    )
                    bad.add(n)
            texts.append(text if text and text.strip() else None)
            if progress is not None:
                progress("reports", n + 1, len(man.rows))
        # images
        keys: list[str | None] = [None] * len(man.rows)
        facts: list[dict[str, Any] | None] = [None] * len(man.rows)
        cache = None
        if images and man.has_images:
            cache = ImageCache(cache_dir, preprocessing or {})
            with_image = [n for n, r in enumerate(man.rows) if r.image is not None and n not in bad]
            results = build_images(
                cache,
                [man.rows[n].image for n in with_image],  # type: ignore[misc]
                workers=workers,
                engine=engine,
                progress=(lambda d, t: progress("images", d, t)) if progress else None,
            )
            for n, res in zip(with_image, results, strict=True):
                if res["ok"]:
                    keys[n] = res["key"]
                    facts[n] = res
                else:
                    r = man.rows[n]
                    failures.append(
                        BuildFailure(r.row, r.case_id, "image", res["error"], res["reason"])
                    )
                    bad.add(n)
        keep = [n for n in range(len(man.rows)) if n not in bad]
        if not keep:
            raise ConfigError(
                "no case of the manifest could be read",
                path=man.path,
                hint="; ".join(f"{f.case_id}: {f.reason}" for f in failures[:5]),
            )
        rows = [man.rows[n] for n in keep]
        texts = [texts[n] for n in keep]
        values = np.asarray([[r.labels.get(k, np.nan) for k in names] for r in rows], np.float32)
        if labels_from_reports:
            labeled = cached_report_labels(
                cache_dir,
                texts,
                progress=(lambda d, t: progress("report labels", d, t)) if progress else None,
            )
            table = fill(values, names, labeled, not_mentioned=not_mentioned)
        else:
            table = LabelTable(names, values, np.zeros(values.shape, dtype=bool))
        if man.has_split:
            splits = np.asarray([r.split for r in rows], dtype=str)
        else:
            splits = assign_splits(
                rows,
                table.targets(uncertain),
                val_fraction=val_fraction,
                test_fraction=test_fraction,
                seed=seed,
            )
        _check_groups(rows, splits, man.path)
        return cls(
            man,
            rows,
            table,
            texts,
            [keys[n] for n in keep],
            [facts[n] for n in keep],
            splits,
            sorted(failures, key=lambda f: f.row),
            cache=cache,
            uncertain=uncertain,
            seconds=time.perf_counter() - t0,
        )

    @classmethod
    def for_model(
        cls, manifest: str | os.PathLike | Manifest, model: Any, **kwargs: Any
    ) -> Dataset:
        """The manifest's cases as ``model`` reads them: its labels, its preprocessing, images
        only when it has an image encoder; rows with problems left out and listed (an
        evaluation uses what it can). ``kwargs`` go to :meth:`from_manifest`."""
        kwargs.setdefault("on_invalid", "skip")
        return cls.from_manifest(
            manifest,
            model.labels,
            preprocessing=model.preprocessing,
            images=model.image_encoder is not None,
            **kwargs,
        )

    # -- the cohort interface the trainer and evaluator use ---------------------------------------
    def __len__(self) -> int:
        return len(self.rows)

    @property
    def labels(self) -> list[str]:
        return list(self.label_table.names)

    @property
    def case_ids(self) -> list[str]:
        return [r.case_id for r in self.rows]

    def label_matrix(self, clean: bool = False, names: Sequence[str] | None = None) -> np.ndarray:
        """Targets [cases, labels] float32, NaN where masked (unknown, or uncertain under the
        ``ignore`` policy); columns in the order of ``names`` (default :attr:`labels`). Real
        labels have no noise-free version: ``clean`` (the synthetic cohort's option) changes
        nothing."""
        if names is None:
            return self._targets
        missing = [n for n in names if n not in self.labels]
        if missing:
            raise ConfigError(f"the dataset has no label(s) {missing}; it has {self.labels}")
        return self._targets[:, [self.labels.index(n) for n in names]]

    @property
    def has_survival(self) -> bool:
        return any(r.time is not None for r in self.rows)

    @property
    def times(self) -> np.ndarray:
        return np.asarray([np.nan if r.time is None else r.time for r in self.rows], np.float32)

    @property
    def events(self) -> np.ndarray:
        return np.asarray([np.nan if r.event is None else r.event for r in self.rows], np.float32)

    def image_present(self) -> np.ndarray:
        return np.asarray([k is not None for k in self.image_keys], dtype=bool)

    def report_present(self) -> np.ndarray:
        return np.asarray([t is not None for t in self.texts], dtype=bool)

    def reports(self) -> list[str | None]:
        """Report texts, None where a case has no report."""
        return list(self.texts)

    def inputs(self, preprocessing: Any = None, *, progress: Any = None) -> CaseImages:
        """The cached model inputs (rows read on demand); ``preprocessing`` must be the one the
        dataset was built with. (``progress`` is accepted for the cohort interface; the
        inputs were built with the dataset.)"""
        if self.cache is None:
            raise ConfigError("the dataset was built without images")
        if preprocessing is not None:
            from ..transforms import PreprocessingConfig

            want = (
                preprocessing
                if isinstance(preprocessing, PreprocessingConfig)
                else PreprocessingConfig.from_dict(dict(preprocessing))
            )
            if want.to_dict() != self.cache.preprocessing.to_dict():
                raise ConfigError(
                    "the dataset was built with another preprocessing than the model's",
                    hint="build it with preprocessing=model.preprocessing",
                )
        shape = next(tuple(f["shape"]) for f in self.image_facts if f is not None)
        return CaseImages(self.cache, self.image_keys, shape)

    def split_indices(self) -> dict[str, np.ndarray]:
        return {s: np.flatnonzero(self.splits == s) for s in SPLITS}

    def subset(self, index: Sequence[int] | np.ndarray) -> Dataset:
        idx = [int(i) for i in np.asarray(index).reshape(-1)]
        return Dataset(
            self.manifest,
            [self.rows[i] for i in idx],
            self.label_table.subset(idx),
            [self.texts[i] for i in idx],
            [self.image_keys[i] for i in idx],
            [self.image_facts[i] for i in idx],
            self.splits[idx],
            self.failures,
            cache=self.cache,
            uncertain=self.uncertain,
        )

    # -- what was built ---------------------------------------------------------------------------
    def summary(self) -> dict[str, Any]:
        """Counts, failures, label prevalence and modality availability per split, scanners and
        spacing / value ranges. Holds no patient or study identifier except the manifest's own
        ``case_id`` of failed rows (so they can be found and fixed)."""
        out: dict[str, Any] = {
            "manifest": str(self.manifest.path),
            "manifest_sha256": self.manifest.sha256,
            "rows": len(self.manifest.rows) + len(self.manifest.invalid),
            "used": len(self),
            "failed": len(self.failures),
            "seconds": round(self.seconds, 2),
            "labels": self.labels,
            "uncertain_policy": self.uncertain,
            "label_origin": self.label_table.sources(),
            "weak_labels": self.label_table.weak,
            "splits": {},
            "failures": [f.to_dict() for f in self.failures],
        }
        img, rep = self.image_present(), self.report_present()
        for split, idx in self.split_indices().items():
            if not idx.size:
                continue
            vals = self.label_table.values[idx]
            out["splits"][split] = {
                "n": int(idx.size),
                "modalities": {
                    "image_and_report": int((img[idx] & rep[idx]).sum()),
                    "image_only": int((img[idx] & ~rep[idx]).sum()),
                    "report_only": int((~img[idx] & rep[idx]).sum()),
                },
                "labels": {
                    name: {
                        "positive": int((vals[:, j] == 1).sum()),
                        "negative": int((vals[:, j] == 0).sum()),
                        "uncertain": int((vals[:, j] == -1).sum()),
                        "unknown": int((~np.isfinite(vals[:, j])).sum()),
                        "prevalence": _prevalence(vals[:, j]),
                    }
                    for j, name in enumerate(self.labels)
                },
            }
            if self.has_survival:
                ev = self.events[idx]
                out["splits"][split]["events"] = int(np.nansum(ev))
        facts = [f for f in self.image_facts if f is not None]
        if facts:
            sp = np.asarray([f["spacing"] for f in facts], dtype=float)
            vr = np.asarray([f["value_range"] for f in facts], dtype=float)
            out["images"] = {
                "n": len(facts),
                "modalities": dict(Counter(f["modality"] for f in facts)),
                "scanners": dict(Counter(f["manufacturer"] or "unknown" for f in facts)),
                "spacing_mm": {
                    "min": sp.min(0).round(3).tolist(),
                    "max": sp.max(0).round(3).tolist(),
                },
                "value_range": {"min": float(vr[:, 0].min()), "max": float(vr[:, 1].max())},
                "units": dict(Counter(f["units"] or "unknown" for f in facts)),
                "with_reader_warnings": sum(bool(f["warnings"]) for f in facts),
                "model_input_shape": facts[0]["shape"],
            }
        return out

    def write_report(self, folder: str | os.PathLike) -> Path:
        """``dataset_report.json`` and ``dataset_report.html`` in ``folder``."""
        from .._atomic import atomic_write_text

        out = Path(folder)
        out.mkdir(parents=True, exist_ok=True)
        s = self.summary()
        atomic_write_text(out / "dataset_report.json", json.dumps(s, indent=2) + "\n")
        atomic_write_text(
            out / "dataset_report.html",
            "<!doctype html><meta charset='utf-8'><title>medfuse dataset report</title>"
            "<style>body{font-family:sans-serif;max-width:60em;margin:1em auto}"
            "td,th{padding:2px 8px;border-bottom:1px solid #ddd;text-align:left}</style>"
            + _html(s),
        )
        return out / "dataset_report.json"

    def _repr_html_(self) -> str:
        return _html(self.summary())

    def __repr__(self) -> str:
        n = {k: int(v.size) for k, v in self.split_indices().items() if v.size}
        return (
            f"Dataset({len(self)} cases of {self.manifest.path.name}, splits {n}, "
            f"labels {self.labels}, {len(self.failures)} left out)"
        )


def _prevalence(v: np.ndarray) -> float | None:
    known = v[np.isin(v, (0.0, 1.0))]
    return round(float(known.mean()), 4) if known.size else None


def _check_groups(rows: Sequence[ManifestRow], splits: np.ndarray, path: Path) -> None:
    seen: dict[str, str] = {}
    for r, s in zip(rows, splits, strict=True):
        if r.patient_id and seen.setdefault(r.patient_id, str(s)) != s:
            raise ConfigError(
                f"row {r.row}, column 'patient_id': patient {r.patient_id!r} is in two splits",
                path=path,
            )


def _html(s: dict[str, Any]) -> str:
    e = html.escape
    parts = [
        f"<h2>Dataset: {e(Path(s['manifest']).name)}</h2>",
        f"<p>{s['used']} of {s['rows']} rows used; {s['failed']} left out; built in "
        f"{s['seconds']} s. Uncertain labels: {e(s['uncertain_policy'])}.</p>",
    ]
    if s["weak_labels"]:
        parts.append(f"<p>Report-derived (weak) labels: {e(', '.join(s['weak_labels']))}.</p>")
    head = "".join(f"<th>{e(sp)} (n={v['n']})</th>" for sp, v in s["splits"].items())
    rows = [
        "<tr><td>image + report / image only / report only</td>"
        + "".join(
            "<td>{image_and_report} / {image_only} / {report_only}</td>".format(**v["modalities"])
            for v in s["splits"].values()
        )
        + "</tr>"
    ]
    for name in s["labels"]:
        cells = []
        for v in s["splits"].values():
            lab = v["labels"][name]
            prev = "–" if lab["prevalence"] is None else f"{lab['prevalence']:.3f}"
            cells.append(
                f"<td>{prev} ({lab['positive']}+ / {lab['negative']}− / {lab['uncertain']}? / "
                f"{lab['unknown']} unknown)</td>"
            )
        rows.append(f"<tr><td>{e(name)}</td>{''.join(cells)}</tr>")
    parts.append(
        f"<table><tr><th></th>{head}</tr>{''.join(rows)}</table><p>Label cells: prevalence "
        "among known values (positive + / negative − / uncertain ? / unknown).</p>"
    )
    if "images" in s:
        im = s["images"]

        def counts(d: dict[str, int]) -> str:
            return e(", ".join(f"{k} {v}" for k, v in d.items()))

        parts.append(
            f"<p>Images: {im['n']}; modalities {counts(im['modalities'])}; scanners "
            f"{counts(im['scanners'])}; spacing {im['spacing_mm']['min']} to "
            f"{im['spacing_mm']['max']} mm; values {im['value_range']['min']:.0f} to "
            f"{im['value_range']['max']:.0f} ({counts(im['units'])}); model input "
            f"{im['model_input_shape']}; {im['with_reader_warnings']} with reader warnings.</p>"
        )
    if s["failures"]:
        items = "".join(
            f"<tr><td>{f['row']}</td><td>{e(f['case_id'])}</td><td>{e(f['stage'])}</td>"
            f"<td>{e(f['error'])}</td><td>{e(f['reason'])}</td></tr>"
            for f in s["failures"]
        )
        parts.append(
            "<h3>Left out</h3><table><tr><th>row</th><th>case_id</th><th>stage</th>"
            f"<th>error</th><th>reason</th></tr>{items}</table>"
        )
    return "".join(parts)
