"""Every coded concept medfuse writes, in one table (DICOM SR, parametric maps, FHIR).

A code is ``(code value, coding scheme designator, code meaning)`` as DICOM writes it; FHIR
writes the same code with the scheme's URI (:data:`SCHEME_URIS`) and the meaning as
``display``. ``tests/unit/test_export_codes.py`` checks every finding code of the SR and FHIR
outputs against this table.

Findings (:data:`FINDING_CODES`): SNOMED CT where a concept means what the label means:

====================  ===========  ==========================================================
label                 SCT code     meaning (and why)
====================  ===========  ==========================================================
emphysema             87433001     Pulmonary emphysema
cardiomegaly          8186001      Cardiomegaly
pleural_effusion      60046008     Pleural effusion
consolidation         95436008     Lung consolidation
lung_lesion           309529002    Lung mass (finding; synonym "Mass of lung"). The label is a
                                   nodule or mass of 16–44 mm: the concept is the lung finding
                                   of a space-occupying lesion, not a size class
smoking_history       77176002     Smoker
dyspnea               267036007    Dyspnea
pneumonia             233604007    Pneumonia
suspected_malignancy  162572001    Suspected malignancy (a *situation*: the suspicion, not the
                                   diagnosis 363346000 "Malignant neoplastic disease")
hydrocephalus         230745008    Hydrocephalus
headache              25064002     Headache
====================  ===========  ==========================================================

A label without a standard code (``focal_lesion`` of the brain MR demo, any label of another
model) gets the private code ``LABEL:<label>`` of the scheme ``99MEDFUSE``, exactly so: a code
value longer than DICOM's 16 characters is written as LongCodeValue (0008,0119) instead of
CodeValue, as PS3.3 8.8 allows; the meaning is the label with spaces. FHIR writes every
finding with its label as well, system ``urn:medfuse:label``.

Private codes of the scheme ``99MEDFUSE`` (declared in the SR's
CodingSchemeIdentificationSequence):

==========================  ============================================================
``RISK``                    Survival risk score (finding type of the risk group)
``RISKCOX``                 Cox log relative hazard (higher: the event expected earlier)
``RISKDT``                  Negated expected number of discrete time bins survived
``RISKPCT``                 Risk score percentile among the model's validation cases
``LABEL:<label>``           a diagnosis label without a standard code
==========================  ============================================================
"""

from __future__ import annotations

__all__ = [
    "COMMENT",
    "FINDING_CODES",
    "IMAGING_PROCEDURE",
    "NEGATIVE",
    "POSITIVE",
    "PRIVATE_SCHEME",
    "PROBABILITY",
    "PROCEDURES",
    "QUALITATIVE_EVALUATIONS",
    "SCHEME_URIS",
    "THRESHOLD",
    "finding_code",
]

Code = tuple[str, str, str]

#: Private coding scheme designator for concepts without a standard code.
PRIVATE_SCHEME = "99MEDFUSE"
PRIVATE_SCHEME_NAME = "medfuse private codes (see medfuse.export.codes)"

#: label -> (code value, coding scheme designator, code meaning). SCT = SNOMED CT.
FINDING_CODES: dict[str, Code] = {
    "emphysema": ("87433001", "SCT", "Pulmonary emphysema"),
    "cardiomegaly": ("8186001", "SCT", "Cardiomegaly"),
    "pleural_effusion": ("60046008", "SCT", "Pleural effusion"),
    "consolidation": ("95436008", "SCT", "Lung consolidation"),
    "lung_lesion": ("309529002", "SCT", "Lung mass"),
    "smoking_history": ("77176002", "SCT", "Smoker"),
    "dyspnea": ("267036007", "SCT", "Dyspnea"),
    "pneumonia": ("233604007", "SCT", "Pneumonia"),
    "suspected_malignancy": ("162572001", "SCT", "Suspected malignancy"),
    "hydrocephalus": ("230745008", "SCT", "Hydrocephalus"),
    "headache": ("25064002", "SCT", "Headache"),
}

PROBABILITY: Code = ("122157", "DCM", "Probability")
THRESHOLD: Code = ("122411", "DCM", "Threshold Value")
POSITIVE: Code = ("10828004", "SCT", "Positive")
NEGATIVE: Code = ("260385009", "SCT", "Negative")
COMMENT: Code = ("121106", "DCM", "Comment")
QUALITATIVE_EVALUATIONS: Code = ("C0034375", "UMLS", "Qualitative Evaluations")
UNIT_PROBABILITY: Code = ("{probability}", "UCUM", "probability")
UNIT_NONE: Code = ("1", "UCUM", "no units")
UNIT_PERCENT: Code = ("%", "UCUM", "percent")
RISK_FINDING: Code = ("RISK", PRIVATE_SCHEME, "Survival risk score")
RISK_KINDS: dict[str, Code] = {
    "cox": ("RISKCOX", PRIVATE_SCHEME, "Cox log relative hazard"),
    "discrete_time": ("RISKDT", PRIVATE_SCHEME, "Negated expected time bins survived"),
}
RISK_PERCENTILE: Code = ("RISKPCT", PRIVATE_SCHEME, "Risk score percentile (validation cases)")

#: Procedure reported by source modality.
PROCEDURES: dict[str, Code] = {
    "CT": ("77477000", "SCT", "Computed tomography"),
    "MR": ("113091000", "SCT", "Magnetic resonance imaging"),
}
IMAGING_PROCEDURE: Code = ("363679005", "SCT", "Imaging procedure")

#: FHIR system URI of each coding scheme designator.
SCHEME_URIS: dict[str, str] = {
    "SCT": "http://snomed.info/sct",
    "LN": "http://loinc.org",
    "DCM": "http://dicom.nema.org/resources/ontology/DCM",
    "UCUM": "http://unitsofmeasure.org",
    PRIVATE_SCHEME: "urn:medfuse:code",
}


def finding_code(label: str) -> Code:
    """The code of a diagnosis label: :data:`FINDING_CODES`, else the private
    ``LABEL:<label>`` of :data:`PRIVATE_SCHEME` (meaning: the label with spaces, at most 64
    characters)."""
    if label in FINDING_CODES:
        return FINDING_CODES[label]
    return (f"LABEL:{label}", PRIVATE_SCHEME, label.replace("_", " ")[:64])
