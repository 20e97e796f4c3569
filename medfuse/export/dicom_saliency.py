"""``saliency/<label>.dcm``: the exported saliency maps as DICOM Parametric Maps (highdicom), one
instance per exported label, in one new series of the source study and frame of reference, so
that they overlay the source images.

* Each instance is multi-frame, one frame per source slice, on the source grid: same rows ×
  columns, pixel spacing and ImageOrientationPatient, and one ImagePositionPatient per source
  slice (computed from the volume affine, matched by highdicom to the source instances, which
  each frame references in its DerivationImageSequence).
* The exported labels are :func:`medfuse.export.base.saliency_maps`' (the positive findings
  by default). Stored values are 16-bit unsigned (PixelData): 0..65535 span the map's range,
  and the RealWorldValueMapping (slope = range / 65535, intercept = the minimum) gives the raw
  saliency back within half a step (7.6e-6 of the range; Grad-CAM ≥ 0, integrated gradients
  may be negative). Half the bytes of float32 (a 512² × 300 map: 157 instead of 315 MB).
* The pixels are encoded JPEG-LS Lossless (transfer syntax 1.2.840.10008.1.2.4.80, one
  fragment per frame, Basic Offset Table) by default: a 512² × 300 Grad-CAM map takes 1.3 MB
  instead of 157.5 MB (``benchmarks/exports.py``), the frames encoded in parallel threads
  (:mod:`._jpegls`, CharLS) from the float map, each converted as it is encoded.
  ``ExportOptions.dicom_saliency_compression = "none"`` writes them uncompressed (Explicit VR
  Little Endian) instead; the stored values are the same (tested).
* Unit UCUM "1" (no units), quantity (130404, DCM, "Saliency"), LUTLabel = the label (SH: its
  first 16 characters), LUTExplanation = "<method> saliency: <label>"; a LINEAR_EXACT VOI
  window over the whole stored range.
* One instance per label rather than one multi-channel instance: highdicom 0.28 gives the
  channels of a multi-channel map no dimension of their own (frames of different labels would
  share their DimensionIndexValues), and viewers load single-channel maps as one volume each.
* ContentLabel ``SALIENCY``, ContentQualification RESEARCH; SeriesDescription and
  ContentDescription say it is not for clinical use; the patient / study modules are copied
  from the source. Frame Anatomy (FrameLaterality U) for unpaired body parts, else the
  source's Laterality.

Without saliency maps on the original grid (no explanation, or a method without a map) the
exporter writes nothing; without a DICOM source it logs the reason and writes nothing (see
:mod:`medfuse.export.source`). A map whose grid differs from the source volume's is an
:class:`~medfuse.errors.ExportError`.

Viewers: 3D Slicer (DICOM module with the QuantitativeReporting extension, whose dcmqi-based
Parametric Map plugin loads each map as a scalar volume to overlay on the CT), OHIF v3.9+
(``@ohif/extension-cornerstone-dicom-pmap``: Parametric Map overlay), dcmtk ``dcmdump`` /
``dcmpmap``, highdicom ``pmread``; validated with dicom3tools ``dciodvfy`` (no errors; it warns
that it does not know the Derived Pixel Contrast term ``QUANTITY`` that highdicom writes).
"""

from __future__ import annotations

import io
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .._atomic import atomic_open
from ..disclaimer import NOT_FOR_CLINICAL_USE
from ..errors import ExportError
from . import deid, source
from .base import JPEG_LS, ExportOptions, output_path, register_exporter, saliency_maps
from .codes import BODY_REGIONS, SALIENCY_QUANTITY, UNIT_NONE

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    import numpy as np

    from ..explain.explanation import Saliency
    from ..prediction import Prediction
    from .context import ExportContext

__all__ = [
    "FOLDER",
    "SERIES_NUMBER",
    "PreparedMap",
    "build_parametric_map",
    "encoded_frame_groups",
    "file_name",
    "lut_label",
    "plane_geometry",
    "prepare",
    "retarget_parametric_map",
    "save_map",
]

log = logging.getLogger(__name__)

FORMAT = "dicom_saliency"
FOLDER = "saliency"
SERIES_NUMBER = 9002
#: BodyPartExamined of unpaired regions -> SNOMED CT region (DICOM CID 4031): the map's Frame
#: Anatomy (FrameLaterality "U"). Other body parts keep the source's Laterality (or an empty,
#: unknown one).
UNPAIRED_REGIONS = BODY_REGIONS
#: atol (mm) for "the saliency grid is the source grid"
GRID_ATOL_MM = 1e-3


def plane_geometry(affine_ras: np.ndarray, n_slices: int) -> dict[str, Any]:
    """DICOM plane geometry of a nibabel-convention volume (``array[i, j, k]``: i along a row,
    j down a column, k along the slice normal; RAS affine): ImageOrientationPatient,
    PixelSpacing (row spacing, column spacing), the slice step (mm, and as an LPS vector), and
    one ImagePositionPatient (LPS mm) per slice ``k``."""
    import numpy as np

    from ..io.geometry import LPS_TO_RAS

    lps = np.asarray(LPS_TO_RAS, dtype=np.float64) @ np.asarray(affine_ras, dtype=np.float64)
    col_i, col_j, col_k = lps[:3, 0], lps[:3, 1], lps[:3, 2]
    si, sj, sk = (float(np.linalg.norm(c)) for c in (col_i, col_j, col_k))
    orientation = [*(col_i / si), *(col_j / sj)]
    positions = [lps[:3, 3] + k * col_k for k in range(n_slices)]
    return {
        "orientation": [float(v) for v in orientation],
        "pixel_spacing": [sj, si],
        "slice_step": sk,
        "slice_step_vector": [float(v) for v in col_k],
        "positions": [[float(v) for v in p] for p in positions],
    }


def lut_label(label: str) -> str:
    """LUTLabel of a label's map (SH: at most 16 characters; the full label is in the
    LUTExplanation)."""
    return label[:16]


def file_name(sal: Saliency) -> str:
    """``saliency/<label>.dcm`` (the label made file-name safe)."""
    import re

    safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", sal.label).strip("._") or "label"
    return f"{FOLDER}/{safe}.dcm"


def _check_grid(maps: list[Saliency], prediction: Prediction) -> None:
    import numpy as np

    vol = source.source_volume(prediction)
    assert vol is not None
    for sal in maps:
        orig = sal.original
        assert orig is not None
        if tuple(orig.shape[:3]) != tuple(vol.shape[:3]) or not np.allclose(
            orig.affine, vol.affine, atol=GRID_ATOL_MM
        ):
            raise ExportError(
                f"the {sal.method} saliency map of {sal.label!r} is not on the source grid "
                f"(shape {orig.shape} vs {vol.shape[:3]})",
                hint="the explanation belongs to another volume than the prediction's case",
            )


def series_uid(prediction: Prediction, maps: list[Saliency]) -> str:
    return source.derived_uid(prediction, "pm-series", *(f"{s.label}/{s.method}" for s in maps))


#: stored values 0..STORED_MAX span each map's range (see the module docstring)
STORED_MAX = 65535
#: transfer syntax of ``ExportOptions.dicom_saliency_compression = "jpeg-ls"`` (the default)
JPEG_LS_LOSSLESS = "1.2.840.10008.1.2.4.80"
#: (5200,9230) Per-Frame Functional Groups Sequence
FRAME_GROUPS_TAG = 0x52009230


def _value_mapping(sal: Saliency) -> tuple[float, float]:
    """The real-world value slope and intercept that give the raw values of ``sal``'s map back
    from stored values 0..STORED_MAX spanning its range."""
    orig = sal.original
    assert orig is not None
    stats = orig.stats
    lo, hi = stats.min, stats.max
    return ((hi - lo) / STORED_MAX if hi > lo else 1.0), lo


def _to_stored(values: np.ndarray, slope: float, intercept: float) -> np.ndarray:
    """Float frames (overwritten) as uint16 stored values."""
    import numpy as np

    values -= np.float32(intercept)
    values *= np.float32(1.0 / slope)
    np.rint(values, out=values)
    np.clip(values, 0, STORED_MAX, out=values)
    return values.astype(np.uint16)


def _stored_frame(sal: Saliency, k: int, slope: float, intercept: float) -> np.ndarray:
    """Slice ``k`` of ``sal``'s map (``[row = j, column = i]``) as uint16 stored values."""
    assert sal.original is not None
    return _to_stored(sal.original.frames(k, k + 1)[0], slope, intercept)


def _stored_frames(sal: Saliency) -> tuple[np.ndarray, float, float]:
    """The map as DICOM frames ``[k, row = j, column = i]`` of uint16 stored values, resampled
    and converted a slab at a time, with the real-world value slope and intercept that give the
    raw values back."""
    import numpy as np

    orig = sal.original
    assert orig is not None
    slope, intercept = _value_mapping(sal)
    stored = np.empty((orig.shape[2], orig.shape[1], orig.shape[0]), np.uint16)
    for k0, values in orig.iter_frames():
        stored[k0 : k0 + len(values)] = _to_stored(values, slope, intercept)
    return stored, slope, intercept


def _value_attributes(label: str, method: str, slope: float, intercept: float) -> dict[str, Any]:
    """What differs between the maps of two labels besides pixels and identity: the real-world
    value mapping and the content description (the window is the same for every map)."""
    import highdicom as hd

    return {
        "real_world_value_mappings": [
            hd.pm.RealWorldValueMapping(
                lut_label=lut_label(label),
                lut_explanation=f"{method} saliency: {label}"[:64],
                unit=hd.sr.CodedConcept(*UNIT_NONE),
                value_range=(0, STORED_MAX),
                slope=slope,
                intercept=intercept,
                quantity_definition=hd.sr.CodedConcept(*SALIENCY_QUANTITY),
            )
        ],
        "content_description": f"{method} saliency {label}; {NOT_FOR_CLINICAL_USE}"[:64],
    }


def _instance_uid(prediction: Prediction, sal: Saliency) -> str:
    return source.derived_uid(prediction, "pm-instance", sal.label, sal.method)


def build_parametric_map(
    prediction: Prediction,
    sal: Saliency,
    options: ExportOptions,
    *,
    series_instance_uid: str,
    instance_number: int = 1,
    context: ExportContext | None = None,
) -> Any:
    """The highdicom ``ParametricMap`` of one saliency map (not written; ``context``: the
    output set's, whose source headers it references; default a new one)."""
    from .context import ExportContext

    _check_grid([sal], prediction)
    orig = sal.original
    assert orig is not None
    stored, slope, intercept = _stored_frames(sal)
    ctx = context if context is not None else ExportContext.for_prediction(prediction, options)
    pm = _highdicom_map(
        ctx.source_datasets(),
        orig.affine,
        int(orig.shape[2]),
        stored,
        options,
        prediction.model or {},
        series_instance_uid=series_instance_uid,
        sop_instance_uid=_instance_uid(prediction, sal),
        instance_number=instance_number,
        values=_value_attributes(sal.label, sal.method, slope, intercept),
    )
    _set_frames(pm, sal, lambda k: stored[k])
    return pm


def _highdicom_map(
    sources: list[Any],
    affine: np.ndarray,
    slices: int,
    stored: np.ndarray,
    options: ExportOptions,
    model: dict[str, Any],
    *,
    series_instance_uid: str,
    sop_instance_uid: str,
    instance_number: int,
    values: dict[str, Any],
    placeholder: bool = False,
) -> Any:
    """highdicom's ``ParametricMap`` of ``stored`` frames on the grid ``affine`` (with
    ``slices`` slices) derived from ``sources``, in the transfer syntax of ``options``.

    highdicom is given the frames uncompressed (their JPEG-LS encoding is :func:`_set_frames`'
    work, on threads), except ``placeholder`` frames (zeros that :func:`_set_frames` replaces):
    those highdicom encodes in the output's transfer syntax. For JPEG-LS that is 300 tiny
    frames instead of 157 MB of zeros copied and joined: :func:`prepare` 0.45 → 0.33 s at
    512² × 300, and the peak RSS of ``medfuse run`` at 512² × 500 1.62 → 1.29 GiB
    (docs/benchmarks.md)."""
    import highdicom as hd
    from pydicom.uid import ExplicitVRLittleEndian

    _one_frame_of_reference(sources)
    geom = plane_geometry(affine, slices)
    thickness = sources[0].get("SliceThickness")
    geometry = (
        {}  # highdicom takes each frame's geometry from its source instance
        if _frames_on_sources(sources, geom, stored.shape[1:])
        else {
            "pixel_measures": hd.PixelMeasuresSequence(
                pixel_spacing=geom["pixel_spacing"],
                slice_thickness=float(thickness) if thickness else geom["slice_step"],
                spacing_between_slices=geom["slice_step"],
            ),
            "plane_orientation": hd.PlaneOrientationSequence(
                coordinate_system="PATIENT", image_orientation=geom["orientation"]
            ),
            "plane_positions": [
                hd.PlanePositionSequence(coordinate_system="PATIENT", image_position=p)
                for p in geom["positions"]
            ],
        }
    )
    jpeg_ls = options.dicom_saliency_compression == JPEG_LS
    pm = hd.pm.ParametricMap(
        source_images=sources,
        pixel_array=stored,
        transfer_syntax_uid=JPEG_LS_LOSSLESS if jpeg_ls and placeholder else ExplicitVRLittleEndian,
        series_instance_uid=series_instance_uid,
        series_number=SERIES_NUMBER,
        sop_instance_uid=sop_instance_uid,
        instance_number=instance_number,
        manufacturer=options.manufacturer[:64],
        manufacturer_model_name=str(model.get("name") or "medfuse")[:64],
        software_versions=f"medfuse {model.get('medfuse_version') or ''}".strip()[:64],
        device_serial_number=str(model.get("sha256") or "unknown")[:64],
        contains_recognizable_visual_features=False,
        content_label="SALIENCY",
        content_qualification=hd.ContentQualificationValues.RESEARCH,
        series_description=f"medfuse saliency, {source.NOT_FOR_CLINICAL_USE}"[:64],
        voi_lut_transformations=[
            hd.VOILUTTransformation(
                # lists: highdicom 0.28 splits a str explanation into characters
                window_center=[STORED_MAX / 2.0],
                window_width=[float(STORED_MAX)],
                window_explanation=["saliency range"],
                voi_lut_function="LINEAR_EXACT",
            )
        ],
        **geometry,
        **values,
    )
    _add_anatomy(pm, sources[0])
    if jpeg_ls:
        pm.file_meta.TransferSyntaxUID = JPEG_LS_LOSSLESS
    return pm


def _frames_on_sources(sources: list[Any], geom: dict[str, Any], frame_shape: tuple) -> bool:
    """Whether the map's frames lie on the single-frame source instances, one on each: the
    sources' positions are the frames' (each within 1e-4 mm, in any order), and their
    orientation, pixel spacing and size are the map's.

    highdicom then takes the planes' geometry from the sources itself. Given the positions
    instead, it matches every frame against every source and, finding them all, puts the
    sources' own geometry in their place: the same dataset, but the matching is quadratic
    (0.64-0.68 s against 0.42 s to build the map at 512² × 300, docs/benchmarks.md). The
    tolerances are tighter than highdicom's (1e-3 mm for positions, 1e-5 for the direction
    cosines, a relative 1e-4 for the spacing), so a grid that passes here would have matched
    there too."""
    import numpy as np

    planes = np.asarray(geom["positions"], dtype=np.float64)
    if len(sources) != len(planes):
        return False
    try:
        if any(
            int(ds.get("NumberOfFrames") or 1) != 1
            or (int(ds.Rows), int(ds.Columns)) != tuple(frame_shape)
            or not np.allclose(
                [float(v) for v in ds.ImageOrientationPatient], geom["orientation"], rtol=0, atol=1e-6
            )
            or not np.allclose(
                [float(v) for v in ds.PixelSpacing], geom["pixel_spacing"], rtol=1e-6, atol=0
            )
            for ds in sources
        ):
            return False
        positions = np.array([[float(v) for v in ds.ImagePositionPatient] for ds in sources])
    except (AttributeError, TypeError, ValueError):  # a source without plane geometry
        return False
    normal = np.array(geom["slice_step_vector"], dtype=np.float64)
    ours, theirs = planes[np.argsort(planes @ normal)], positions[np.argsort(positions @ normal)]
    return bool(np.abs(ours - theirs).max() <= 1e-4)


def _one_frame_of_reference(sources: list[Any]) -> None:
    """A parametric map overlays its source in one frame of reference: source instances with
    several FrameOfReferenceUIDs (e.g. UIDs remapped slice by slice by a de-identification
    tool) are an :class:`ExportError` saying so (the other formats are still written)."""
    uids = {str(ds.get("FrameOfReferenceUID", "")) for ds in sources}
    if len(uids) > 1:
        raise ExportError(
            f"the {len(sources)} source instances have {len(uids)} different "
            "FrameOfReferenceUIDs: a parametric map needs the one frame of reference it overlays",
            hint="the series' UIDs were probably remapped per file by a de-identification tool",
        )


def _template_key(model: dict[str, Any], options: ExportOptions) -> tuple:
    """What a prepared map depends on besides the source series: the model's identity and the
    options written into its header."""
    return (
        model.get("name"),
        model.get("sha256"),
        model.get("medfuse_version"),
        options.manufacturer,
        options.dicom_saliency_compression,
    )


@dataclass
class PreparedMap:
    """A parametric map built by :func:`prepare` before its study's prediction existed, what it
    was built for (:func:`_template_key`), and its per-frame functional groups as written
    (:func:`encoded_frame_groups`: the same in every map of the study)."""

    key: tuple
    pm: Any
    frame_groups: bytes | None


def prepare(context: ExportContext) -> PreparedMap | None:
    """The ``prepare`` hook of ``dicom_saliency``: build the parametric map of the context's
    study before its prediction exists, for :func:`export_dicom_saliency` to retarget to the
    first exported map (as it retargets the first map to the others). What highdicom spends
    its time on (the per-frame functional groups and their references to the source
    instances) depends on the source series and the grid only; ``medfuse run`` does it in a
    thread while the model runs. None when there is nothing to prepare (no DICOM source, or no
    image map expected: ``context.image_maps``). Uses ``context.model`` (the prediction's model
    description, :func:`medfuse.prediction.model_info`) and ``context.options``."""
    import numpy as np

    volume = context.volume
    if not context.image_maps or source.volume_source_problem(volume) is not None:
        return None
    assert volume is not None
    i, j, k = (int(n) for n in volume.shape[:3])
    pm = _highdicom_map(
        context.source_datasets(),
        volume.affine,
        k,
        np.zeros((k, j, i), np.uint16),  # calloc'd: never resident, replaced when retargeted
        context.options,
        context.model,
        series_instance_uid=source.uuid_uid("prepared series"),  # both replaced on retargeting
        sop_instance_uid=source.uuid_uid("prepared instance"),
        instance_number=1,
        values=_value_attributes("prepared", "none", 1.0, 0.0),
        placeholder=True,
    )
    pm.PixelData = b""  # highdicom's encoding of the zeros: not needed
    return PreparedMap(_template_key(context.model, context.options), pm, encoded_frame_groups(pm))


def _take_template(
    prediction: Prediction, options: ExportOptions, context: ExportContext
) -> PreparedMap | None:
    """What :func:`prepare` built for this output set, once (None if there is none; a map
    built for another volume, model or options is not used, and the log says so)."""
    part = context.take_prepared(FORMAT)
    if part is None:
        return None
    if context.volume is not source.source_volume(prediction):
        log.warning("dicom_saliency: the map prepared for another volume is not used")
        return None
    if part.key != _template_key(prediction.model or {}, options):
        log.warning(
            "dicom_saliency: the map prepared for model / options %s is not used (the "
            "prediction's are %s)",
            part.key,
            _template_key(prediction.model or {}, options),
        )
        return None
    log.debug("dicom_saliency: the parametric map prepared before the prediction is used")
    return part


def encoded_frame_groups(pm: Any) -> bytes | None:
    """``pm``'s Per-Frame Functional Groups Sequence as pydicom writes it in Explicit VR Little
    Endian (the element whole: tag, VR, length, items); None when ``pm`` has none. The maps of
    one study share it; writing it cost 0.086 s per 512² × 300 map, most of a map's write
    (:func:`save_map`)."""
    from pydicom.filebase import DicomBytesIO
    from pydicom.filewriter import write_data_element

    if FRAME_GROUPS_TAG not in pm:
        return None
    fp = DicomBytesIO()
    fp.is_little_endian, fp.is_implicit_VR = True, False
    write_data_element(fp, pm[FRAME_GROUPS_TAG], pm.get("SpecificCharacterSet"))
    return fp.getvalue()


def save_map(pm: Any, fh: Any, frame_groups: bytes | None) -> None:
    """``pm.save_as(fh, enforce_file_format=True)``, with ``frame_groups`` (what
    :func:`encoded_frame_groups` gave for ``pm``, or for a map of the same study) written in
    place of encoding the per-frame functional groups again: the same bytes (tested). pydicom
    writes what comes before them and the pixel data after them (all of it when
    ``frame_groups`` is None)."""
    from pydicom import Dataset
    from pydicom.charset import default_encoding
    from pydicom.filebase import DicomFileLike
    from pydicom.filewriter import correct_ambiguous_vr_element, write_dataset
    from pydicom.valuerep import AMBIGUOUS_VR

    if frame_groups is None:
        pm.save_as(fh, enforce_file_format=True)
        return
    head = Dataset({e.tag: e for e in pm.elements() if e.tag < FRAME_GROUPS_TAG})
    tail = Dataset({e.tag: e for e in pm.elements() if e.tag > FRAME_GROUPS_TAG})
    for elem in tail.values():  # the pixel data's VR follows BitsAllocated, which is in ``pm``
        if elem.VR in AMBIGUOUS_VR:
            correct_ambiguous_vr_element(elem, pm, True)
    head.file_meta, head.preamble = pm.file_meta, pm.preamble
    head.save_as(fh, enforce_file_format=True)
    fh.write(frame_groups)
    fp = DicomFileLike(fh)
    fp.is_little_endian, fp.is_implicit_VR = True, False
    write_dataset(fp, tail, pm.get("SpecificCharacterSet") or default_encoding)


def retarget_parametric_map(
    pm: Any,
    prediction: Prediction,
    sal: Saliency,
    *,
    instance_number: int,
    series_instance_uid: str | None = None,
) -> None:
    """Make ``pm`` (built by :func:`build_parametric_map` for another label of ``prediction``,
    in place) the map of ``sal``. The maps of one prediction share their source images, grid,
    series and every per-frame functional group; they differ only in the instance UID and
    number, the pixel values and :func:`_value_attributes`. Building the 300 per-frame groups
    of a 300-slice map and matching them to the source instances is most of highdicom's work
    (about 1.5 s per map); this replaces only what differs (a test checks that the result
    equals highdicom's own)."""
    _check_grid([sal], prediction)
    slope, intercept = _value_mapping(sal)
    values = _value_attributes(sal.label, sal.method, slope, intercept)
    uid = _instance_uid(prediction, sal)
    pm.SOPInstanceUID = pm.file_meta.MediaStorageSOPInstanceUID = uid
    pm.InstanceNumber = instance_number
    if series_instance_uid is not None:  # needed for a map from :func:`prepare`
        pm.SeriesInstanceUID = series_instance_uid
    pm.ContentDescription = values["content_description"]
    # a new item (not an edited one): highdicom may share items between the instances it builds
    pm.SharedFunctionalGroupsSequence[0].RealWorldValueMappingSequence = values[
        "real_world_value_mappings"
    ]
    if _is_jpeg_ls(pm):  # each frame resampled as it is encoded: no copy of the whole map
        _set_frames(pm, sal, lambda k: _stored_frame(sal, k, slope, intercept))
    else:
        stored = _stored_frames(sal)[0]
        _set_frames(pm, sal, lambda k: stored[k])


def _is_jpeg_ls(pm: Any) -> bool:
    return str(pm.file_meta.TransferSyntaxUID) == JPEG_LS_LOSSLESS


def _set_frames(pm: Any, sal: Saliency, frame: Callable[[int], np.ndarray]) -> None:
    """Make ``sal``'s frames (``frame(k)``: slice ``k`` as uint16 stored values) ``pm``'s
    PixelData, in ``pm``'s frame order, in ``pm``'s transfer syntax.

    * JPEG-LS Lossless: each frame encoded by :mod:`._jpegls` (frames in parallel threads),
      encapsulated one fragment per frame with a Basic Offset Table, as highdicom does.
    * Explicit VR Little Endian: a buffer over the frames; pydicom then writes it in chunks
      straight to the file instead of copying the whole map twice (to bytes, then into the
      encoded dataset)."""
    order = _frame_order(pm, sal)
    if _is_jpeg_ls(pm):
        from pydicom.encaps import encapsulate

        from . import _jpegls

        pm.PixelData = encapsulate(_jpegls.encode_frames(frame, order))
        elem = pm["PixelData"]
        elem.VR, elem.is_undefined_length = "OB", True
        return
    first = frame(order[0]) if order else None
    pm.PixelData = _FrameReader(frame, order, first)


class _FrameReader(io.BufferedIOBase):
    """The read-only, seekable bytes of ``frame(order[0]), frame(order[1]), ...`` (C-ordered
    frames of one shape, ``first`` = ``frame(order[0])``) without joining them."""

    def __init__(
        self, frame: Callable[[int], np.ndarray], order: Sequence[int], first: np.ndarray | None
    ):
        super().__init__()
        self._frame, self._order = frame, order
        self._frame_bytes = first.nbytes if first is not None else 0
        self._size = self._frame_bytes * len(order)
        self._pos = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self._size}[whence]
        self._pos = max(0, base + offset)
        return self._pos

    def read(self, size: int | None = -1) -> bytes:
        if size is None or size < 0:
            return b"".join(iter(lambda: self.read(1 << 24), b""))
        if self._pos >= self._size or size == 0:
            return b""
        index, offset = divmod(self._pos, self._frame_bytes)
        frame = memoryview(self._frame(self._order[index])).cast("B")
        end = min(self._frame_bytes, offset + size)
        self._pos += end - offset
        return bytes(frame[offset:end])


def _frame_order(pm: Any, sal: Saliency) -> list[int]:
    """The slice index ``k`` of each frame of ``pm`` (highdicom may store the frames in
    another order than they were given)."""
    import numpy as np

    orig = sal.original
    assert orig is not None
    geom = plane_geometry(orig.affine, 1)
    step, origin = np.array(geom["slice_step_vector"]), np.array(geom["positions"][0])
    positions = np.array(
        [
            item.PlanePositionSequence[0].ImagePositionPatient
            for item in pm.PerFrameFunctionalGroupsSequence
        ],
        dtype=np.float64,
    )
    order = np.rint((positions - origin) @ step / (step @ step)).astype(np.intp)
    if sorted(order.tolist()) != list(range(int(orig.shape[2]))):
        raise ExportError(f"the frames of the {sal.label!r} map do not match its slices")
    return order.tolist()


def _add_anatomy(pm: Any, source: Any) -> None:
    """Frame Anatomy (shared) for an unpaired region; otherwise General Series Laterality
    (Type 2C, needed for paired body parts without frame laterality): the source's, else empty
    (unknown) rather than a guess."""
    from pydicom import Dataset

    region = UNPAIRED_REGIONS.get(str(source.get("BodyPartExamined", "")).upper().replace(" ", ""))
    if region is None:
        pm.Laterality = source.get("Laterality") or None
        return
    code = Dataset()
    code.CodeValue, code.CodingSchemeDesignator, code.CodeMeaning = region
    anatomy = Dataset()
    anatomy.AnatomicRegionSequence = [code]
    anatomy.FrameLaterality = "U"
    pm.SharedFunctionalGroupsSequence[0].FrameAnatomySequence = [anatomy]


@register_exporter(FORMAT, prepare=prepare)
def export_dicom_saliency(
    prediction: Prediction,
    out_dir: Path,
    options: ExportOptions,
    context: ExportContext | None = None,
) -> list[Path]:
    """Write ``saliency/<label>.dcm``, one Parametric Map per exported label, all in one new
    series (nothing without saliency maps on the original grid or without a DICOM source).
    ``context``: the output set's (source headers, UID map, the map :func:`prepare` built);
    default a new one."""
    from .context import ExportContext

    maps = [s for s in saliency_maps(prediction, options) if s.original is not None]
    if not maps:
        log.info("dicom_saliency: no saliency map on the original grid to export")
        return []
    if source.skip_reason(prediction, FORMAT) is not None:
        return []
    ctx = context if context is not None else ExportContext.for_prediction(prediction, options)
    _check_grid(maps, prediction)
    series = series_uid(prediction, maps)
    names = [file_name(s) for s in maps]
    if len(set(names)) != len(names):  # two methods for one label, or labels alike once made safe
        names = [n.replace(".dcm", f"_{s.method}.dcm") for n, s in zip(names, maps, strict=True)]
    written = []
    prepared = _take_template(prediction, options, ctx)
    pm = prepared.pm if prepared is not None else None
    frame_groups = prepared.frame_groups if prepared is not None else None
    for number, (sal, name) in enumerate(zip(maps, names, strict=True), start=1):
        if pm is None:
            pm = build_parametric_map(
                prediction,
                sal,
                options,
                series_instance_uid=series,
                instance_number=number,
                context=ctx,
            )
        else:
            retarget_parametric_map(
                pm, prediction, sal, instance_number=number, series_instance_uid=series
            )
        out = pm
        if options.deidentify:
            out = deid.deidentify(pm, ctx.uids, deid.pseudonym(prediction))
        path = output_path(out_dir, name)
        with atomic_open(path) as fh:
            if out is pm:  # retargeting leaves the frame groups as they are: encoded once
                frame_groups = frame_groups or encoded_frame_groups(pm)
                save_map(pm, fh, frame_groups)
            else:  # a de-identified copy: its own UIDs
                out.save_as(fh, enforce_file_format=True)
        written.append(path)
    return written
