"""Typed objects passed between medfuse's stages.

Arrays follow the nibabel convention: ``Volume.array[i, j, k]`` is the voxel whose centre is at
``Volume.affine @ [i, j, k, 1]`` in RAS+ millimetres (x to the patient's Right→Left is *negative*:
R = -x_LPS). For a DICOM series, ``i`` runs along a row (DICOM column index), ``j`` along a column
(DICOM row index) and ``k`` along the slice normal.
"""

from __future__ import annotations

import enum
import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # keep `import medfuse` light
    import numpy as np

__all__ = [
    "MODALITIES",
    "Case",
    "Finding",
    "FindingStatus",
    "PreprocessingRecord",
    "Report",
    "Series",
    "Study",
    "Volume",
    "modality_names",
]

#: the two modalities, in the column order of every ``[B, 2]`` modality mask of the models
#: (``FusionOutput.mask``, ``FusionOutput.imputed``)
MODALITIES: tuple[str, str] = ("image", "report")


def modality_names(row: Any) -> tuple[str, ...]:
    """The :data:`MODALITIES` flagged in one row (``[2]``, a tensor or a sequence) of a modality
    mask."""
    flags = row.tolist() if hasattr(row, "tolist") else list(row)
    return tuple(m for m, on in zip(MODALITIES, flags, strict=True) if on)


def axcodes(affine) -> str:
    """Orientation code of a RAS affine (``"LAS"``: i points Left, j Anterior, k Superior).

    Each voxel axis gets the world axis it is closest to, the strongest pairings first, so an
    oblique affine still gets three distinct letters (as ``nibabel.aff2axcodes`` does).
    """
    import numpy as np

    m = np.asarray(affine, dtype=np.float64)[:3, :3]
    m = m / np.maximum(np.linalg.norm(m, axis=0), 1e-12)
    labels = (("L", "R"), ("P", "A"), ("I", "S"))
    codes = [""] * 3
    free_world, free_voxel = {0, 1, 2}, {0, 1, 2}
    for flat in np.argsort(-np.abs(m), axis=None):
        w, v = divmod(int(flat), 3)
        if w in free_world and v in free_voxel:
            codes[v] = labels[w][int(m[w, v] > 0)]
            free_world.discard(w)
            free_voxel.discard(v)
    return "".join(codes)


def voxel_to_world(affine: np.ndarray, ijk) -> np.ndarray:
    """RAS mm of voxel index/indices ``ijk`` (shape (3,) or (N, 3)) on the grid ``affine``."""
    import numpy as np

    ijk = np.asarray(ijk, dtype=np.float64)
    return ijk @ affine[:3, :3].T + affine[:3, 3]


@dataclass(eq=False)
class Volume:
    """A geometry-correct image volume (3D, or 4D with the extra axis last)."""

    array: np.ndarray
    affine: np.ndarray
    modality: str = "OT"
    study_instance_uid: str | None = None
    series_instance_uid: str | None = None
    frame_of_reference_uid: str | None = None
    series_description: str = ""
    source_files: tuple[str, ...] = ()
    #: What the values mean, e.g. "HU" for CT after rescale; "" when unknown.
    units: str = ""
    #: Names of the entries along a 4th axis (time points, echoes, image types).
    volume_labels: tuple[str, ...] = ()
    #: Non-fatal issues found while reading, in words (recorded, never silent).
    warnings: list[str] = field(default_factory=list)
    #: Non-identifying acquisition facts (manufacturer, patient position, kernel, ...).
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        import numpy as np

        self.affine = np.asarray(self.affine, dtype=np.float64)
        if self.affine.shape != (4, 4):
            raise ValueError(f"affine must be 4x4, got {self.affine.shape}")
        if self.array.ndim not in (3, 4):
            raise ValueError(f"array must be 3D or 4D, got shape {self.array.shape}")

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.array.shape)

    @property
    def spacing(self) -> tuple[float, float, float]:
        """Voxel size in mm along i, j, k (norms of the affine's columns)."""
        import numpy as np

        return tuple(float(v) for v in np.linalg.norm(self.affine[:3, :3], axis=0))

    @property
    def orientation(self) -> str:
        """Axis codes in the nibabel sense, e.g. ``"LAS"``: where i, j, k point to."""
        return axcodes(self.affine)

    @property
    def origin(self) -> tuple[float, float, float]:
        """RAS mm of the centre of voxel (0, 0, 0)."""
        return tuple(float(v) for v in self.affine[:3, 3])

    def voxel_to_world(self, ijk) -> np.ndarray:
        """RAS mm of voxel index/indices ``ijk`` (shape (3,) or (N, 3))."""
        return voxel_to_world(self.affine, ijk)

    def world_to_voxel(self, ras) -> np.ndarray:
        """Continuous voxel index of RAS mm point(s) ``ras`` (shape (3,) or (N, 3))."""
        import numpy as np

        inv = np.linalg.inv(self.affine)
        ras = np.asarray(ras, dtype=np.float64)
        return ras @ inv[:3, :3].T + inv[:3, 3]

    def to_nifti(self):
        """This volume as a ``nibabel.Nifti1Image`` (float32 data, affine as sform and qform)."""
        import nibabel as nib
        import numpy as np

        img = nib.Nifti1Image(np.asarray(self.array, dtype=np.float32), self.affine)
        img.header.set_xyzt_units("mm", "sec")
        img.set_sform(self.affine, code=1)
        img.set_qform(self.affine, code=1)
        return img

    def save(self, path: str | os.PathLike) -> str:
        """Write NIfTI (``.nii`` / ``.nii.gz``) atomically; returns the path written."""
        from .io.volumes import write_nifti

        return write_nifti(self, path)

    def __repr__(self) -> str:
        sp = "×".join(f"{s:.3g}" for s in self.spacing)
        return (
            f"Volume({self.modality}, shape={self.shape}, spacing={sp} mm, "
            f"orientation={self.orientation}, series={self.series_instance_uid})"
        )


@dataclass(eq=False)
class Series:
    """One readable image stack found in a study (header facts only until loaded)."""

    series_instance_uid: str
    modality: str
    description: str
    files: tuple[str, ...]
    #: "slices" (single-frame images), "mosaic" (Siemens), "enhanced" (multi-frame), "volume" (NIfTI/NRRD)
    kind: str
    rows: int
    columns: int
    #: Number of slices in one volume (after un-tiling a mosaic / splitting multi-frame).
    n_slices: int
    #: Number of volumes (time points, echoes, image types) in the stack.
    n_volumes: int = 1
    image_type: tuple[str, ...] = ()
    series_number: int | None = None
    study_instance_uid: str | None = None
    #: ImageOrientationPatient (6 floats, LPS direction cosines), when known.
    orientation_patient: tuple[float, ...] | None = None
    pixel_spacing: tuple[float, float] | None = None
    #: Estimated slice step in mm (from positions), when known.
    slice_spacing: float | None = None
    #: Orientation code of the volume this series gives ("LAS", ...), when known.
    orientation: str = ""
    transfer_syntax_uid: str = ""
    #: Split index when one SeriesInstanceUID held several incompatible stacks.
    part: int = 0
    selected: bool = False
    #: Why this series was or was not selected, in words.
    reason: str = ""
    #: Parsed headers (pydicom datasets without pixel data), kept for the loader.
    headers: list[Any] = field(default_factory=list, repr=False)
    #: (file, reason) for files of this series that cannot be placed in the volume; loading
    #: refuses the series while there are any (see ReadPolicy.on_bad_file).
    rejected: list[tuple[str, str]] = field(default_factory=list)

    @property
    def key(self) -> str:
        """Unique key: the SeriesInstanceUID, with ``#part`` when a UID was split."""
        return self.series_instance_uid + (f"#{self.part}" if self.part else "")

    def summary(self) -> dict[str, Any]:
        """JSON-friendly description (no PHI)."""
        return {
            "series_instance_uid": self.series_instance_uid,
            "key": self.key,
            "series_number": self.series_number,
            "description": self.description,
            "modality": self.modality,
            "kind": self.kind,
            "files": len(self.files),
            "rows": self.rows,
            "columns": self.columns,
            "slices": self.n_slices,
            "volumes": self.n_volumes,
            "pixel_spacing": list(self.pixel_spacing) if self.pixel_spacing else None,
            "slice_spacing": self.slice_spacing,
            "orientation": self.orientation,
            "image_type": list(self.image_type),
            "transfer_syntax_uid": self.transfer_syntax_uid,
            "selected": self.selected,
            "reason": self.reason,
            "rejected_files": [{"file": f, "reason": r} for f, r in self.rejected],
        }


@dataclass(eq=False)
class Study:
    """What was found at a path: its image series, which one was selected, and what was skipped."""

    path: str
    study_instance_uid: str | None
    series: list[Series]
    #: (file, reason) for every file that was not used (not DICOM, DICOMDIR, SR, ...).
    skipped: list[tuple[str, str]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    #: :class:`medfuse.io.dicom.ReadPolicy` used when loading (None: the default policy).
    policy: Any = field(default=None, repr=False)
    _volumes: dict[str, Volume] = field(default_factory=dict, repr=False)

    @property
    def selected(self) -> Series | None:
        return next((s for s in self.series if s.selected), None)

    def get_series(self, key: str) -> Series:
        """Find a series by SeriesInstanceUID / key, or by (case-insensitive) description."""
        from .io.select import find_series

        return find_series(self, key)

    def load(self, series: str | Series | None = None, *, workers: int | None = None) -> Volume:
        """Decode one series (the selected one by default) into a :class:`Volume`; cached."""
        from .io.study import load_series

        s = series if isinstance(series, Series) else (self.get_series(series) if series else None)
        if s is None:
            s = self.selected
            if s is None:
                from .errors import DicomError

                raise DicomError(
                    "no series could be selected", path=self.path, hint="run `medfuse info` on it"
                )
        if s.key not in self._volumes:
            self._volumes[s.key] = load_series(
                s,
                workers=workers,
                policy=self.policy,
                skipped=self.skipped,
                others=[o for o in self.series if o is not s],
            )
        return self._volumes[s.key]

    @property
    def volume(self) -> Volume:
        """The selected series as a volume."""
        return self.load()

    def summary(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "study_instance_uid": self.study_instance_uid,
            "series": [s.summary() for s in self.series],
            "selected": self.selected.key if self.selected else None,
            "skipped": [{"file": f, "reason": r} for f, r in self.skipped],
            "warnings": list(self.warnings),
        }


class FindingStatus(str, enum.Enum):
    """What a report says about a finding: there, not there, or maybe."""

    PRESENT = "present"
    ABSENT = "absent"
    UNCERTAIN = "uncertain"

    @property
    def label(self) -> int:
        """CheXpert-style label value: 1 present, 0 absent, -1 uncertain."""
        return {"present": 1, "absent": 0, "uncertain": -1}[self.value]

    @classmethod
    def from_label(cls, value: int) -> FindingStatus:
        """Inverse of :attr:`label`."""
        try:
            return {1: cls.PRESENT, 0: cls.ABSENT, -1: cls.UNCERTAIN}[int(value)]
        except (KeyError, ValueError):
            raise ValueError(f"finding label must be 1, 0 or -1, got {value!r}") from None

    def __str__(self) -> str:
        return self.value


@dataclass
class Finding:
    """One mention of a finding in a report.

    ``start``/``end`` are character offsets into :attr:`Report.text`, so that
    ``report.text[f.start:f.end] == f.text``. ``sentence`` indexes :attr:`Report.sentences`
    (-1 when unknown) and ``section`` is the canonical section name ("FINDINGS", "IMPRESSION",
    "INDICATION", ..., "BODY" for text outside any header, "" when unknown).
    """

    code: str
    text: str
    start: int
    end: int
    status: FindingStatus = FindingStatus.PRESENT
    historical: bool = False
    sentence: int = -1
    section: str = ""
    #: The trigger that decided the status ("no evidence of", "may represent"); "" when none.
    cue: str = ""
    #: The lexicon entry that matched (a synonym or a pattern), or "abbreviation: <long form>".
    term: str = ""

    def __post_init__(self) -> None:
        if not isinstance(self.status, FindingStatus):
            self.status = FindingStatus(str(self.status).lower())
        if not 0 <= self.start <= self.end:
            raise ValueError(f"bad finding span [{self.start}, {self.end})")

    @property
    def label(self) -> int:
        """1 present, 0 absent, -1 uncertain."""
        return self.status.label

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly form."""
        return {
            "code": self.code,
            "text": self.text,
            "start": self.start,
            "end": self.end,
            "status": self.status.value,
            "historical": self.historical,
            "sentence": self.sentence,
            "section": self.section,
            "cue": self.cue,
            "term": self.term,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Finding:
        known = {k: data[k] for k in cls.__dataclass_fields__ if k in data}
        return cls(**known)


@dataclass(eq=False)
class Report:
    """A free-text radiology report and what was understood of it.

    ``text`` is the report text as read (decoded, HTML markup removed, line ends normalised);
    every offset in the report refers to it. When the text is longer than the parser/encoder
    limit, only ``text[:truncated_at]`` was parsed and is given to text encoders, and a note
    says so.
    """

    text: str
    source: str = ""
    #: Canonical section name -> section text (repeated sections joined by a newline).
    sections: dict[str, str] = field(default_factory=dict)
    #: Sentences as (start, end) character offsets into ``text``.
    sentences: list[tuple[int, int]] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)
    #: Problems met while reading (bad bytes, markup removed, ...), in words.
    warnings: list[str] = field(default_factory=list)
    #: Sections in order as (name, start, end) offsets into ``text`` (header included).
    section_spans: list[tuple[str, int, int]] = field(default_factory=list)
    #: Abbreviations defined in the text: short form -> long form ("PTX" -> "pneumothorax").
    abbreviations: dict[str, str] = field(default_factory=dict)
    #: Length of the parsed prefix when the text was truncated, else None.
    truncated_at: int | None = None
    #: Informational notes (truncation, ...), in words.
    notes: list[str] = field(default_factory=list)
    #: Where the report came from beyond ``source``: CSV row id, DICOM UIDs, encoding, ...
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def encoder_text(self) -> str:
        """The text given to text encoders (the parsed prefix when truncated)."""
        return self.text if self.truncated_at is None else self.text[: self.truncated_at]

    def section_at(self, offset: int) -> str:
        """Canonical name of the section holding character ``offset`` ("" when none)."""
        for name, start, end in self.section_spans:
            if start <= offset < end:
                return name
        return ""

    def sentence_text(self, index: int) -> str:
        start, end = self.sentences[index]
        return self.text[start:end]

    def findings_for(self, code: str) -> list[Finding]:
        return [f for f in self.findings if f.code == code]

    def labels(self, codes: tuple[str, ...] | None = None) -> dict[str, int | None]:
        """Report-level labels per finding code: 1 present, 0 absent, -1 uncertain, None not
        mentioned (see :func:`medfuse.text.labels.report_labels`)."""
        from .text.labels import report_labels

        return report_labels(self, codes=codes)

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly form (labels included)."""
        return {
            "source": self.source,
            "text": self.text,
            "sections": dict(self.sections),
            "section_spans": [list(s) for s in self.section_spans],
            "sentences": [list(s) for s in self.sentences],
            "findings": [f.to_dict() for f in self.findings],
            "labels": self.labels(),
            "abbreviations": dict(self.abbreviations),
            "truncated_at": self.truncated_at,
            "warnings": list(self.warnings),
            "notes": list(self.notes),
            "meta": dict(self.meta),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Report:
        """Inverse of :meth:`to_dict` (``labels`` is derived, so it is ignored)."""
        return cls(
            text=data["text"],
            source=data.get("source", ""),
            sections=dict(data.get("sections", {})),
            sentences=[tuple(s) for s in data.get("sentences", [])],
            findings=[Finding.from_dict(f) for f in data.get("findings", [])],
            warnings=list(data.get("warnings", [])),
            section_spans=[tuple(s) for s in data.get("section_spans", [])],
            abbreviations=dict(data.get("abbreviations", {})),
            truncated_at=data.get("truncated_at"),
            notes=list(data.get("notes", [])),
            meta=dict(data.get("meta", {})),
        )

    def __repr__(self) -> str:
        counts: dict[str, int] = {}
        for f in self.findings:
            counts[f.status.value] = counts.get(f.status.value, 0) + 1
        summary = ", ".join(f"{n} {k}" for k, n in sorted(counts.items())) or "none"
        return (
            f"Report({self.source or '<text>'}, {len(self.text)} chars, "
            f"sections={list(self.sections)}, findings: {summary})"
        )


@dataclass(eq=False)
class Case:
    """One study ready for a model: the volume, the report (either may be missing), and metadata."""

    volume: Volume | None
    report: Report | None = None
    study: Study | None = None
    key: str = ""
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def modalities(self) -> tuple[str, ...]:
        return tuple(
            m for m, v in (("image", self.volume), ("report", self.report)) if v is not None
        )

    @classmethod
    def coerce(cls, obj: Any) -> Case:
        """A :class:`Case` from a Case, a :class:`Study` (its selected series is loaded), a
        :class:`Volume`, a :class:`Report` or report text, or an ``(image, report)`` tuple whose
        parts may be any of those or None."""
        from .errors import ConfigError

        if isinstance(obj, Case):
            return obj
        image: Any = None
        report: Any = None
        if isinstance(obj, tuple) and len(obj) == 2:
            image, report = obj
        elif isinstance(obj, (Study, Volume)):
            image = obj
        elif isinstance(obj, (Report, str)):
            report = obj
        else:
            raise ConfigError(
                f"expected a Case, Study, Volume, Report, report text or (image, report), "
                f"not {type(obj).__name__}"
            )
        study = image if isinstance(image, Study) else None
        if study is not None:
            image = study.volume
        if image is not None and not isinstance(image, Volume):
            raise ConfigError(
                f"the image part must be a Study or Volume, not {type(image).__name__}"
            )
        if isinstance(report, str):
            from .text.pipeline import parse_report

            report = parse_report(report)
        if report is not None and not isinstance(report, Report):
            raise ConfigError(
                f"the report part must be a Report or text, not {type(report).__name__}"
            )
        return cls(volume=image, report=report, study=study)


@dataclass(eq=False)
class PreprocessingRecord:
    """What preprocessing did to one volume, and how model voxels map back to original voxels.

    ``steps`` lists every step in order as ``{"name", "params", "shape", "spacing"}`` (shape and
    spacing *after* the step; shape is channel-first ``[C, X, Y, Z]``). Affines are RAS+ 4x4
    matrices stored as nested lists (JSON-friendly): ``original_affine`` of the input volume,
    ``model_affine`` of the model's input grid. :attr:`model_to_original` maps a model voxel
    index ``(i, j, k, 1)`` to the continuous original voxel index, so that a saliency map on the
    model grid can be resampled onto the original (DICOM) grid
    (:func:`medfuse.transforms.to_original_grid`).
    """

    original_shape: tuple[int, ...]
    original_affine: list[list[float]]
    model_affine: list[list[float]]
    output_shape: tuple[int, ...]
    steps: list[dict[str, Any]] = field(default_factory=list)
    #: The preprocessing configuration used (``PreprocessingConfig.to_dict()``).
    config: dict[str, Any] = field(default_factory=dict)

    @property
    def model_to_original(self) -> np.ndarray:
        """4x4 matrix: model voxel index -> original voxel index (``inv(A_orig) @ A_model``)."""
        import numpy as np

        return np.linalg.inv(np.asarray(self.original_affine, dtype=np.float64)) @ np.asarray(
            self.model_affine, dtype=np.float64
        )

    @property
    def original_to_model(self) -> np.ndarray:
        """4x4 matrix: original voxel index -> model voxel index."""
        import numpy as np

        return np.linalg.inv(self.model_to_original)

    def map_to_original(self, ijk) -> np.ndarray:
        """Continuous original voxel index of model voxel index/indices ``ijk`` ((3,) or (N, 3))."""
        import numpy as np

        m = self.model_to_original
        return np.asarray(ijk, dtype=np.float64) @ m[:3, :3].T + m[:3, 3]

    def map_to_model(self, ijk) -> np.ndarray:
        """Continuous model voxel index of original voxel index/indices ``ijk``."""
        import numpy as np

        m = self.original_to_model
        return np.asarray(ijk, dtype=np.float64) @ m[:3, :3].T + m[:3, 3]

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly form."""
        return {
            "original_shape": list(self.original_shape),
            "original_affine": [list(map(float, r)) for r in self.original_affine],
            "model_affine": [list(map(float, r)) for r in self.model_affine],
            "output_shape": list(self.output_shape),
            "steps": [dict(s) for s in self.steps],
            "config": dict(self.config),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PreprocessingRecord:
        """Inverse of :meth:`to_dict`."""
        return cls(
            original_shape=tuple(data["original_shape"]),
            original_affine=[list(r) for r in data["original_affine"]],
            model_affine=[list(r) for r in data["model_affine"]],
            output_shape=tuple(data["output_shape"]),
            steps=[dict(s) for s in data.get("steps", [])],
            config=dict(data.get("config", {})),
        )
