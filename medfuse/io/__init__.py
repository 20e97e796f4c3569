"""Reading studies (DICOM, NIfTI, NRRD/MHA) into geometry-correct :class:`~medfuse.types.Volume` objects.

This room owns reading: the DICOM scan, frames, geometry and pixels, NIfTI / NRRD / MHA,
reports (:func:`read_report`), the series selection rules and :class:`ReadPolicy`; it returns
the typed objects of :mod:`medfuse.types`. It must not touch models, explanations, exporters,
workflows or the CLI (it imports types, errors and ``_atomic``, and the text room lazily to
parse a report).
"""
