"""Every coded concept medfuse writes, in one table (DICOM SR, parametric maps, FHIR).

A code is a :class:`Code`: ``(value, scheme_designator, meaning)`` as DICOM writes it (the
fields of highdicom's ``CodedConcept``, which :meth:`Code.concept` builds), named once here;
FHIR writes the same code with the scheme's URI (:data:`SCHEME_URIS`) and the meaning as
``display`` (:meth:`Code.coding`). The SR, the parametric maps and the FHIR bundle take their
codes from this module, and ``tests/unit/test_export_codes.py`` checks the outputs against it
and this docstring's table against :data:`FINDING_CODES`. The module imports nothing heavy
(highdicom only inside :meth:`Code.concept`).

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

Other schemes: DICOM (``DCM``: probability, threshold, comment, the saliency quantity), UCUM
units, LOINC (``LN``: the DiagnosticReport codes, :data:`REPORT_CODES`), SNOMED CT procedures
(:data:`PROCEDURES`) and body regions (:data:`BODY_REGIONS`, DICOM CID 4031).
"""

from __future__ import annotations

from typing import Any, NamedTuple

__all__ = [
    "BODY_REGIONS",
    "COMMENT",
    "FINDING_CODES",
    "IMAGING_PROCEDURE",
    "IMAGING_REPORT",
    "NEGATIVE",
    "POSITIVE",
    "PRIVATE_SCHEME",
    "PROBABILITY",
    "PROCEDURES",
    "QUALITATIVE_EVALUATIONS",
    "REPORT_CODES",
    "RISK_FINDING",
    "RISK_KINDS",
    "RISK_PERCENTILE",
    "SALIENCY_QUANTITY",
    "SCHEME_URIS",
    "SOURCE_IMAGE",
    "THRESHOLD",
    "UNIT_NONE",
    "UNIT_PERCENT",
    "UNIT_PROBABILITY",
    "Code",
    "finding_code",
    "risk_code",
]

#: Private coding scheme designator for concepts without a standard code.
PRIVATE_SCHEME = "99MEDFUSE"
PRIVATE_SCHEME_NAME = "medfuse private codes (see medfuse.export.codes)"

#: FHIR system URI of each coding scheme designator.
SCHEME_URIS: dict[str, str] = {
    "SCT": "http://snomed.info/sct",
    "LN": "http://loinc.org",
    "DCM": "http://dicom.nema.org/resources/ontology/DCM",
    "UCUM": "http://unitsofmeasure.org",
    PRIVATE_SCHEME: "urn:medfuse:code",
}


class Code(NamedTuple):
    """A coded concept: ``value``, ``scheme_designator``, ``meaning`` (highdicom's names); a
    plain tuple too, so ``value, scheme, meaning = code`` works."""

    value: str
    scheme_designator: str
    meaning: str

    def concept(self) -> Any:
        """The highdicom ``CodedConcept`` (a value over 16 characters becomes LongCodeValue)."""
        from highdicom.sr import CodedConcept

        return CodedConcept(
            value=self.value, scheme_designator=self.scheme_designator, meaning=self.meaning
        )

    def coding(self) -> dict[str, str]:
        """The FHIR ``Coding``: the scheme's URI (:data:`SCHEME_URIS`), code and display."""
        return {
            "system": SCHEME_URIS[self.scheme_designator],
            "code": self.value,
            "display": self.meaning,
        }


#: label -> code. SCT = SNOMED CT (see the table above).
FINDING_CODES: dict[str, Code] = {
    "emphysema": Code("87433001", "SCT", "Pulmonary emphysema"),
    "cardiomegaly": Code("8186001", "SCT", "Cardiomegaly"),
    "pleural_effusion": Code("60046008", "SCT", "Pleural effusion"),
    "consolidation": Code("95436008", "SCT", "Lung consolidation"),
    "lung_lesion": Code("309529002", "SCT", "Lung mass"),
    "smoking_history": Code("77176002", "SCT", "Smoker"),
    "dyspnea": Code("267036007", "SCT", "Dyspnea"),
    "pneumonia": Code("233604007", "SCT", "Pneumonia"),
    "suspected_malignancy": Code("162572001", "SCT", "Suspected malignancy"),
    "hydrocephalus": Code("230745008", "SCT", "Hydrocephalus"),
    "headache": Code("25064002", "SCT", "Headache"),
}

PROBABILITY = Code("122157", "DCM", "Probability")
THRESHOLD = Code("122411", "DCM", "Threshold Value")
POSITIVE = Code("10828004", "SCT", "Positive")
NEGATIVE = Code("260385009", "SCT", "Negative")
COMMENT = Code("121106", "DCM", "Comment")
QUALITATIVE_EVALUATIONS = Code("C0034375", "UMLS", "Qualitative Evaluations")
#: an image of the source series in the SR's image library
SOURCE_IMAGE = Code("260753009", "SCT", "Source")
#: what a parametric map's values are
SALIENCY_QUANTITY = Code("130404", "DCM", "Saliency")
UNIT_PROBABILITY = Code("{probability}", "UCUM", "probability")
UNIT_NONE = Code("1", "UCUM", "no units")
UNIT_PERCENT = Code("%", "UCUM", "percent")
RISK_FINDING = Code("RISK", PRIVATE_SCHEME, "Survival risk score")
RISK_KINDS: dict[str, Code] = {
    "cox": Code("RISKCOX", PRIVATE_SCHEME, "Cox log relative hazard"),
    "discrete_time": Code("RISKDT", PRIVATE_SCHEME, "Negated expected time bins survived"),
}
RISK_PERCENTILE = Code("RISKPCT", PRIVATE_SCHEME, "Risk score percentile (validation cases)")

#: Procedure reported by source modality.
PROCEDURES: dict[str, Code] = {
    "CT": Code("77477000", "SCT", "Computed tomography"),
    "MR": Code("113091000", "SCT", "Magnetic resonance imaging"),
}
IMAGING_PROCEDURE = Code("363679005", "SCT", "Imaging procedure")

#: LOINC code of the FHIR DiagnosticReport by (modality, BodyPartExamined); "" = any body part.
REPORT_CODES: dict[tuple[str, str], Code] = {
    ("CT", "CHEST"): Code("24627-2", "LN", "CT Chest"),
    ("CT", ""): Code("18747-6", "LN", "CT Study report"),
    ("MR", ""): Code("18755-9", "LN", "MR Study report"),
}
#: the DiagnosticReport code of any other study
IMAGING_REPORT = Code("18748-4", "LN", "Diagnostic imaging study")

#: BodyPartExamined of unpaired regions -> SNOMED CT region (DICOM CID 4031): a parametric map's
#: Frame Anatomy.
BODY_REGIONS: dict[str, Code] = {
    "CHEST": Code("816094009", "SCT", "Chest"),
    "THORAX": Code("816094009", "SCT", "Thorax"),
    "ABDOMEN": Code("818981001", "SCT", "Abdomen"),
    "PELVIS": Code("816092008", "SCT", "Pelvis"),
    "HEAD": Code("69536005", "SCT", "Head"),
    "BRAIN": Code("12738006", "SCT", "Brain"),
    "NECK": Code("45048000", "SCT", "Neck"),
    "HEART": Code("80891009", "SCT", "Heart"),
    "CHESTABDOMEN": Code("416550000", "SCT", "Chest and Abdomen"),
    "ABDOMENPELVIS": Code("818982008", "SCT", "Abdomen and Pelvis"),
    "CHESTABDPELVIS": Code("416775004", "SCT", "Chest, Abdomen and Pelvis"),
}


def finding_code(label: str) -> Code:
    """The code of a diagnosis label: :data:`FINDING_CODES`, else the private
    ``LABEL:<label>`` of :data:`PRIVATE_SCHEME` (meaning: the label with spaces, at most 64
    characters)."""
    if label in FINDING_CODES:
        return FINDING_CODES[label]
    return Code(f"LABEL:{label}", PRIVATE_SCHEME, label.replace("_", " ")[:64])


def risk_code(kind: str) -> Code:
    """The code of a risk head's kind: :data:`RISK_KINDS`, else the private ``RISK<KIND>``."""
    return RISK_KINDS.get(
        kind, Code("RISK" + kind.upper()[:12], PRIVATE_SCHEME, f"Risk score ({kind})")
    )
