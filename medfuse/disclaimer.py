"""Every "not for clinical use" statement medfuse writes, in one place.

One phrase, :data:`NOT_FOR_CLINICAL_USE`, in the wordings each output needs:

==============================  =================================================================
:data:`MODEL_CARD_STATEMENT`    the model card's ``not_for_clinical_use`` (and the reports'
                                footer that quotes it)
:data:`REPORT_SYNTHETIC`        the HTML / PDF reports of a model trained on synthetic data
:data:`REPORT_GENERIC`          the HTML / PDF reports of any other model
:data:`SHORT`                   DICOM descriptions (64 characters at most) and the FHIR bundle
==============================  =================================================================

A leaf module (imports nothing), so the card, the exporters and anything else read it freely.
"""

from __future__ import annotations

__all__ = [
    "MODEL_CARD_STATEMENT",
    "NOT_FOR_CLINICAL_USE",
    "REPORT_GENERIC",
    "REPORT_SYNTHETIC",
    "SHORT",
    "report_disclaimer",
]

#: the phrase every statement contains
NOT_FOR_CLINICAL_USE = "not for clinical use"

MODEL_CARD_STATEMENT = (
    "Research software. Not a medical device: not cleared or approved for clinical use, and "
    "not to be used for diagnosis, treatment or any clinical decision."
)
REPORT_SYNTHETIC = (
    f"Research output from a model trained on synthetic data; {NOT_FOR_CLINICAL_USE}."
)
REPORT_GENERIC = f"Research output; {NOT_FOR_CLINICAL_USE}."
SHORT = f"synthetic demo output, {NOT_FOR_CLINICAL_USE}"


def report_disclaimer(synthetic_training_data: bool) -> str:
    """:data:`REPORT_SYNTHETIC` for a model trained on synthetic data, else
    :data:`REPORT_GENERIC`."""
    return REPORT_SYNTHETIC if synthetic_training_data else REPORT_GENERIC
