"""Reading studies (DICOM, NIfTI, NRRD/MHA) into geometry-correct :class:`~medfuse.types.Volume` objects."""
