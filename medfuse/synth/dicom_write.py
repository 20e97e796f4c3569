"""Write a volume as a genuine single-frame DICOM series (CT Image Storage / MR Image Storage).

The files are meant to be indistinguishable, for a reader, from a scanner's: complete Patient /
Study / Series / Frame of Reference / Equipment / Image Plane / Image Pixel / CT or MR Image / VOI
LUT / SOP Common modules, proper file meta, and every UID generated deterministically from the seed
(``pydicom.uid.generate_uid`` with entropy sources), so the same call writes byte-identical files.
They pass ``dciodvfy`` (dicom3tools) without errors.

Array convention: ``volume[i, j, k]`` is column ``i``, row ``j`` of slice ``k`` (nibabel sense);
slice ``k`` is written as the Rows × Columns pixel matrix ``volume[:, :, k].T`` at
``ImagePositionPatient = geometry.position(k)``.

Things a reader must not rely on are deliberately not given to it: file names are not in slice
order (``file_naming="shuffled"``, the default) and, on request, InstanceNumber is not monotonic
with position (``scramble_instance_numbers=True``).
"""

from __future__ import annotations

import datetime as _dt
import logging
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import (
    PYDICOM_ROOT_UID,
    UID,
    CTImageStorage,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGLSLossless,
    MRImageStorage,
    RLELossless,
    generate_uid,
)

from ..errors import ConfigError
from .geometry import Geometry

__all__ = [
    "TRANSFER_SYNTAXES",
    "PatientInfo",
    "SeriesUIDs",
    "make_uids",
    "write_series",
]

log = logging.getLogger(__name__)

#: Short names accepted for ``transfer_syntax`` → (UID, preferred encoding plugin, None = native).
#: RLE falls back to pydicom's own encoder when pylibjpeg-rle is missing (valid, other bytes).
TRANSFER_SYNTAXES: dict[str, tuple[UID, str | None]] = {
    "explicit": (ExplicitVRLittleEndian, None),
    "implicit": (ImplicitVRLittleEndian, None),
    "rle": (RLELossless, "pylibjpeg"),
    "jpegls": (JPEGLSLossless, "pyjpegls"),
    "jpeg2000": (JPEG2000Lossless, "pylibjpeg"),
}

FILE_NAMINGS = ("shuffled", "uid", "ordered")

#: UID root of the generated UIDs (pydicom's root for generated UIDs).
UID_PREFIX = PYDICOM_ROOT_UID

_SOFTWARE = "medfuse-synth 1"


@dataclass(frozen=True)
class PatientInfo:
    """Fake, non-identifying patient and study data written into every file."""

    name: str = "MEDFUSE^SYNTH0001"
    patient_id: str = "SYNTH0001"
    accession: str = "SYN00000001"
    study_id: str = "1"
    sex: str = "O"
    study_date: str = "20240101"
    study_time: str = "101500"

    @classmethod
    def for_case(cls, number: int, seed: int) -> PatientInfo:
        """Deterministic fake identity for case ``number`` of a cohort made with ``seed``."""
        day = _dt.date(2020, 1, 1) + _dt.timedelta(days=(int(seed) * 37 + number * 11) % 1500)
        minute = (int(seed) * 7 + number * 13) % 600
        return cls(
            name=f"MEDFUSE^SYNTH{number:04d}",
            patient_id=f"SYNTH{number:04d}",
            accession=f"SYN{(int(seed) % 10**5):05d}{number:04d}"[:16],
            study_id=str(number),
            study_date=day.strftime("%Y%m%d"),
            study_time=f"{8 + minute // 60:02d}{minute % 60:02d}00",
        )


@dataclass(frozen=True)
class SeriesUIDs:
    """The UIDs of one series; ``sop`` gives the SOPInstanceUID of slice ``k``."""

    study: str
    series: str
    frame_of_reference: str
    seed: int
    key: str
    _sop_cache: dict[int, str] = field(default_factory=dict, compare=False, repr=False)

    def sop(self, k: int) -> str:
        if k not in self._sop_cache:
            self._sop_cache[k] = str(
                generate_uid(UID_PREFIX, ["medfuse.synth", str(self.seed), self.key, "sop", str(k)])
            )
        return self._sop_cache[k]


def make_uids(seed: int, key: str = "", *, study_key: str | None = None) -> SeriesUIDs:
    """Deterministic UIDs for a series identified by (``seed``, ``key``). Series sharing
    ``study_key`` share the StudyInstanceUID and FrameOfReferenceUID."""
    sk = key if study_key is None else study_key

    def uid(*parts: str) -> str:
        return str(generate_uid(UID_PREFIX, ["medfuse.synth", str(seed), *parts]))

    return SeriesUIDs(
        study=uid(sk, "study"),
        series=uid(key, "series"),
        frame_of_reference=uid(sk, "frame-of-reference"),
        seed=int(seed),
        key=key,
    )


def _ds(v: float, nd: int = 6) -> str:
    """A DS string of at most 16 characters, without trailing zeros or "-0"."""
    s = f"{round(float(v), nd):.{nd}f}".rstrip("0").rstrip(".")
    if s in ("-0", ""):
        s = "0"
    if len(s) > 16:
        s = f"{float(v):.10g}"
    return s


def write_series(
    out_dir: str | os.PathLike,
    source: np.ndarray | Callable[[int], np.ndarray],
    geometry: Geometry,
    *,
    modality: str = "CT",
    seed: int = 0,
    uids: SeriesUIDs | None = None,
    patient: PatientInfo | None = None,
    series_number: int = 1,
    series_description: str = "",
    body_part: str | None = None,
    transfer_syntax: str = "explicit",
    file_naming: str = "shuffled",
    scramble_instance_numbers: bool = False,
    ct_pixel: str = "unsigned",
    window: Sequence[tuple[float, float, str]] | None = None,
    slice_thickness: float | None = None,
    extra: Mapping[str, Any] | None = None,
    progress: Callable[[int], None] | None = None,
) -> dict:
    """Write ``source`` on ``geometry`` as one DICOM series into ``out_dir``.

    ``source`` is the volume (shape ``geometry.shape``: CT in HU as integers, MR as non-negative
    integers) or a function ``k -> volume[:, :, k]`` so that a large series can be streamed slice by
    slice. ``transfer_syntax`` is one of :data:`TRANSFER_SYNTAXES` (``explicit`` default; ``rle``,
    ``jpegls`` and ``jpeg2000`` are lossless compressed). CT is stored as ``ct_pixel="unsigned"``
    (uint16, value = HU + 1024, RescaleIntercept -1024, 12 bits stored) or ``"signed"`` (int16,
    value = HU, intercept 0). ``window`` is a list of (centre, width, explanation); ``extra`` maps
    DICOM keywords to values added to every file. ``progress(n)`` is called after each file.

    Returns a JSON-friendly description: file names, SOPInstanceUIDs, InstanceNumbers and positions
    (all in slice order, ``k = 0`` first), the UIDs and the transfer syntax.
    """
    modality = modality.upper()
    if modality not in ("CT", "MR"):
        raise ConfigError(f"modality must be 'CT' or 'MR', got {modality!r}")
    if transfer_syntax not in TRANSFER_SYNTAXES:
        raise ConfigError(
            f"unknown transfer syntax {transfer_syntax!r}; choose one of {', '.join(TRANSFER_SYNTAXES)}"
        )
    if file_naming not in FILE_NAMINGS:
        raise ConfigError(
            f"file_naming must be one of {', '.join(FILE_NAMINGS)}, got {file_naming!r}"
        )
    if ct_pixel not in ("unsigned", "signed"):
        raise ConfigError(f"ct_pixel must be 'unsigned' or 'signed', got {ct_pixel!r}")
    ts_uid, plugin = TRANSFER_SYNTAXES[transfer_syntax]
    if plugin is not None:
        plugin = _check_encoder(ts_uid, plugin)

    nx, ny, nz = geometry.shape
    if transfer_syntax == "jpeg2000" and min(nx, ny) < 32:
        raise ConfigError(
            f"JPEG 2000 needs images of at least 32x32 pixels (OpenJPEG's 6 resolution levels), "
            f"got {ny} rows x {nx} columns"
        )
    if isinstance(source, np.ndarray):
        if tuple(source.shape) != tuple(geometry.shape):
            raise ConfigError(
                f"volume shape {source.shape} differs from geometry shape {geometry.shape}"
            )
        vol = source

        def get_slice(k: int) -> np.ndarray:
            return vol[:, :, k]
    elif callable(source):
        get_slice = source
    else:
        raise ConfigError("source must be a numpy volume or a function k -> slice")

    uids = uids or make_uids(seed, f"series-{series_number}")
    patient = patient or PatientInfo()
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), series_number, 0xD1C0]))
    name_perm = rng.permutation(nz)
    inst_perm = rng.permutation(nz) if scramble_instance_numbers else np.arange(nz)

    # Pixel storage.
    if modality == "CT":
        signed = ct_pixel == "signed"
        bits_stored = 16 if signed else 12
        offset = 0 if signed else 1024
        lo, hi = (-1024, 3071)
        store_dtype = np.dtype("<i2") if signed else np.dtype("<u2")
    else:
        signed = False
        bits_stored, offset, lo, hi = 12, 0, 0, 4095
        store_dtype = np.dtype("<u2")

    base = _base_dataset(
        geometry,
        modality=modality,
        uids=uids,
        patient=patient,
        series_number=series_number,
        series_description=series_description,
        body_part=body_part,
        signed=signed,
        bits_stored=bits_stored,
        offset=offset,
        window=window,
        slice_thickness=slice_thickness,
        extra=extra,
    )
    sop_class = CTImageStorage if modality == "CT" else MRImageStorage

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    files: list[str] = []
    sops: list[str] = []
    instance_numbers: list[int] = []
    positions: list[list[float]] = []
    normal = geometry.normal
    for k in range(nz):
        sl = np.asarray(get_slice(k))
        if sl.shape != (nx, ny):
            raise ConfigError(f"slice {k} has shape {sl.shape}, expected {(nx, ny)}")
        if sl.size and (sl.min() < lo or sl.max() > hi):
            raise ConfigError(
                f"slice {k} has values outside {lo}..{hi} ({sl.min()}..{sl.max()}); "
                "clip the volume before writing"
            )
        pixels = np.ascontiguousarray((sl.astype(np.int32) + offset).T).astype(store_dtype)
        sop = uids.sop(k)
        inst = int(inst_perm[k]) + 1
        pos = geometry.position(k)

        ds = Dataset()
        ds.update(base)
        ds.SOPClassUID = sop_class
        ds.SOPInstanceUID = sop
        ds.InstanceNumber = inst
        ds.ImagePositionPatient = [_ds(p, 4) for p in pos]
        ds.SliceLocation = _ds(float(np.dot(pos, normal)), 4)
        ds.SmallestImagePixelValue = int(pixels.min())
        ds.LargestImagePixelValue = int(pixels.max())
        ds.PixelData = pixels.tobytes()

        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = sop_class
        meta.MediaStorageSOPInstanceUID = sop
        meta.TransferSyntaxUID = ts_uid if plugin is None else ExplicitVRLittleEndian
        ds.file_meta = meta
        if plugin is not None:
            ds.compress(ts_uid, encoding_plugin=plugin, generate_instance_uid=False)
            ds.LossyImageCompression = "00"

        if file_naming == "shuffled":
            fname = f"IM{int(name_perm[k]) + 1:05d}.dcm"
        elif file_naming == "uid":
            fname = f"{sop}.dcm"
        else:
            fname = f"IM{k + 1:05d}.dcm"
        pydicom.dcmwrite(out / fname, ds, enforce_file_format=True)
        files.append(fname)
        sops.append(sop)
        instance_numbers.append(inst)
        positions.append([float(p) for p in pos])
        if progress is not None:
            progress(k + 1)

    log.debug("wrote %d %s files (%s) to %s", nz, modality, transfer_syntax, out)
    return {
        "modality": modality,
        "sop_class_uid": str(sop_class),
        "transfer_syntax": transfer_syntax,
        "transfer_syntax_uid": str(ts_uid),
        "study_instance_uid": uids.study,
        "series_instance_uid": uids.series,
        "frame_of_reference_uid": uids.frame_of_reference,
        "series_number": series_number,
        "files": files,
        "sop_instance_uids": sops,
        "instance_numbers": instance_numbers,
        "image_positions_lps": positions,
        "pixel": {
            "bits_stored": bits_stored,
            "pixel_representation": int(signed),
            "rescale_intercept": -offset if modality == "CT" else None,
            "rescale_slope": 1 if modality == "CT" else None,
        },
    }


def _check_encoder(ts_uid: UID, plugin: str) -> str:
    """The encoding plugin to use for ``ts_uid`` (``plugin`` if installed)."""
    from pydicom.pixels import get_encoder

    enc = get_encoder(ts_uid)
    if plugin in enc.available_plugins:
        return plugin
    if ts_uid == RLELossless and "pydicom" in enc.available_plugins:
        log.info("pylibjpeg-rle not installed; using pydicom's slower RLE encoder")
        return "pydicom"
    hint = {
        "pyjpegls": "pip install pyjpegls",
        "pylibjpeg": "pip install pylibjpeg pylibjpeg-openjpeg",
    }.get(plugin, "install a pydicom encoding plugin")
    raise ConfigError(f"no encoder for {ts_uid.name} (plugin {plugin!r} missing)", hint=hint)


def _base_dataset(
    geometry: Geometry,
    *,
    modality: str,
    uids: SeriesUIDs,
    patient: PatientInfo,
    series_number: int,
    series_description: str,
    body_part: str | None,
    signed: bool,
    bits_stored: int,
    offset: int,
    window: Sequence[tuple[float, float, str]] | None,
    slice_thickness: float | None,
    extra: Mapping[str, Any] | None,
) -> Dataset:
    """The attributes shared by every file of the series."""
    nx, ny, _ = geometry.shape
    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 100"
    # Patient
    ds.PatientName = patient.name
    ds.PatientID = patient.patient_id
    ds.PatientBirthDate = ""
    ds.PatientSex = patient.sex
    ds.PatientIdentityRemoved = "YES"
    ds.DeidentificationMethod = "Synthetic phantom generated by medfuse; no real patient"
    # Study
    ds.StudyInstanceUID = uids.study
    ds.StudyDate = patient.study_date
    ds.StudyTime = patient.study_time
    ds.ReferringPhysicianName = ""
    ds.StudyID = patient.study_id
    ds.AccessionNumber = patient.accession
    ds.StudyDescription = "CT CHEST" if modality == "CT" else "MR BRAIN"
    # Series
    ds.Modality = modality
    ds.SeriesInstanceUID = uids.series
    ds.SeriesNumber = series_number
    ds.SeriesDate = patient.study_date
    ds.SeriesTime = patient.study_time
    ds.SeriesDescription = series_description or ("CHEST AXIAL" if modality == "CT" else "T1 SAG")
    ds.BodyPartExamined = body_part or ("CHEST" if modality == "CT" else "HEAD")
    ds.PatientPosition = geometry.patient_position
    # Frame of reference
    ds.FrameOfReferenceUID = uids.frame_of_reference
    ds.PositionReferenceIndicator = ""
    # Equipment
    ds.Manufacturer = "medfuse"
    ds.ManufacturerModelName = "synthetic phantom"
    ds.SoftwareVersions = _SOFTWARE
    # General image / acquisition
    ds.ContentDate = patient.study_date
    ds.ContentTime = patient.study_time
    ds.AcquisitionDate = patient.study_date
    ds.AcquisitionTime = patient.study_time
    ds.AcquisitionNumber = 1
    ds.BurnedInAnnotation = "NO"
    # Image plane
    ds.PixelSpacing = [_ds(s) for s in geometry.pixel_spacing]
    ds.ImageOrientationPatient = [_ds(c, 8) for c in geometry.iop]
    thickness = geometry.spacing[2] if slice_thickness is None else slice_thickness
    ds.SliceThickness = _ds(thickness)
    # Image pixel
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows = ny
    ds.Columns = nx
    ds.BitsAllocated = 16
    ds.BitsStored = bits_stored
    ds.HighBit = bits_stored - 1
    ds.PixelRepresentation = int(signed)

    if modality == "CT":
        ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
        ds.RescaleIntercept = _ds(-offset)
        ds.RescaleSlope = "1"
        ds.RescaleType = "HU"
        ds.KVP = "120"
        ds.DataCollectionDiameter = "500"
        ds.ReconstructionDiameter = _ds(max(nx * geometry.spacing[0], ny * geometry.spacing[1]), 3)
        ds.GantryDetectorTilt = "0"
        ds.ConvolutionKernel = "STANDARD"
        ds.SpacingBetweenSlices = _ds(geometry.spacing[2])
        win = window or [(40.0, 400.0, "SOFT TISSUE"), (-600.0, 1500.0, "LUNG")]
    else:
        ds.ImageType = ["ORIGINAL", "PRIMARY", "OTHER"]
        ds.ScanningSequence = "SE"
        ds.SequenceVariant = "NONE"
        ds.ScanOptions = ""
        ds.MRAcquisitionType = "2D"
        ds.SequenceName = "se2d1"
        ds.RepetitionTime = "500"
        ds.EchoTime = "12"
        ds.EchoTrainLength = 1
        ds.NumberOfAverages = "1"
        ds.ImagingFrequency = "63.87"
        ds.ImagedNucleus = "1H"
        ds.MagneticFieldStrength = "1.5"
        ds.SpacingBetweenSlices = _ds(geometry.spacing[2])
        ds.FlipAngle = "90"
        win = window or [(600.0, 1200.0, "BRAIN")]
    ds.WindowCenter = [_ds(c) for c, _, _ in win] if len(win) > 1 else _ds(win[0][0])
    ds.WindowWidth = [_ds(w) for _, w, _ in win] if len(win) > 1 else _ds(win[0][1])
    ds.WindowCenterWidthExplanation = [e for _, _, e in win] if len(win) > 1 else win[0][2]
    for kw, value in (extra or {}).items():
        setattr(ds, kw, value)
    return ds
