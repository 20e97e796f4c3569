"""De-identification of the DICOM outputs (``ExportOptions.deidentify``, ``--deidentify``):
DICOM PS3.15 Annex E, Basic Application Level Confidentiality Profile, applied to the patient /
study / equipment attributes that ``sr.dcm`` and ``saliency/*.dcm`` copy from the source
instances.

What happens to each attribute (PS3.15 Table E.1-1 actions):

* **D / Z — replaced**: PatientName and PatientID become the study's pseudonymous key
  (``study-<12 hex digits>``, the output folder's name); PatientBirthDate, PatientSex,
  AccessionNumber, StudyID, ReferringPhysicianName, StudyDate and StudyTime become empty (they are
  Type 2: present, zero length).
* **X — removed**: addresses, telephone numbers, other IDs and names, birth name, mother's birth
  name, age, size, weight, ethnic group, occupation, patient comments and history, insurance,
  institution name / address / department, physicians and operators, station name, study
  description, protocol name, request and procedure-step attributes, referenced patient / study
  sequences, series / acquisition dates and times, and every private element — at any depth (the
  equipment of the source listed in ContributingEquipmentSequence included).
* **U — UIDs replaced**: every instance identifier (Study / Series / SOP Instance UID, Frame of
  Reference UID, the referenced SOP instances, Dimension Organization UID, the UID content items
  of the SR, the file meta's MediaStorageSOPInstanceUID) is replaced by ``2.25.<128 bits of
  HMAC-SHA256(key, uid)>``. The map is **consistent within the output set** of one prediction
  (the SR's evidence and image library reference the same replaced instances as the parametric
  maps' derivation images; the maps keep one frame of reference; ``prediction.json`` and
  ``fhir.json`` carry the same replaced study / series UIDs), and not linkable to the source UIDs
  without the key. The map belongs to the output set's
  :class:`~medfuse.export.context.ExportContext` (``context.uids``); its key is random per
  context, or ``MEDFUSE_DEID_KEY`` (keep it secret) for a map that is stable across studies and
  runs (e.g. to link one patient's studies). Standard
  UIDs (``1.2.840.10008.*``: SOP classes, transfer syntaxes, coding schemes) are kept.
* **Kept**: what medfuse itself wrote (its SeriesDescription with the not-for-clinical-use
  disclaimer, the model's name / version / weights SHA-256 as equipment, the findings), the
  geometry (orientation, spacing, positions: needed to overlay the maps) and the creation date /
  time of the output itself.

PatientIdentityRemoved is YES, DeidentificationMethod names this profile and
DeidentificationMethodCodeSequence holds (113100, DCM, "Basic Application Confidentiality
Profile"); LongitudinalTemporalInformationModified is REMOVED (the study date is gone).

Free text is not scanned: the report text is not copied into DICOM outputs, and the SR's comment
holds the disclaimer and the prediction's warnings only.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pydicom import Dataset

    from ..prediction import Prediction
    from .base import ExportOptions

__all__ = [
    "DEIDENTIFICATION_METHOD",
    "REMOVE",
    "UID_KEYWORDS",
    "UIDMap",
    "deidentify",
    "output_uid",
    "pseudonym",
]

DEIDENTIFICATION_METHOD = "DICOM PS3.15 Basic Application Level Confidentiality Profile"
BASIC_PROFILE_CODE = ("113100", "DCM", "Basic Application Confidentiality Profile")

#: Replaced by the pseudonym (the study key).
PSEUDONYM = ("PatientName", "PatientID")
#: Type 2 attributes emptied (kept present, zero length).
EMPTY = (
    "PatientBirthDate",
    "PatientSex",
    "AccessionNumber",
    "StudyID",
    "ReferringPhysicianName",
    "StudyDate",
    "StudyTime",
)
#: Removed wherever they occur (PS3.15 Table E.1-1, action X or X/Z/D).
REMOVE = frozenset(
    {
        "PatientAddress", "PatientTelephoneNumbers", "PatientTelecomInformation",
        "OtherPatientIDs", "OtherPatientIDsSequence", "OtherPatientNames", "PatientBirthName",
        "PatientMotherBirthName", "PatientBirthTime", "PatientAge", "PatientSize",
        "PatientWeight", "PatientSizeCodeSequence", "MilitaryRank", "BranchOfService",
        "MedicalRecordLocator", "EthnicGroup", "Occupation", "AdditionalPatientHistory",
        "PatientComments", "PatientReligiousPreference", "CountryOfResidence",
        "RegionOfResidence", "PatientState", "IssuerOfPatientID",
        "IssuerOfPatientIDQualifiersSequence", "InsurancePlanIdentification",
        "PatientInsurancePlanCodeSequence", "ResponsiblePerson", "ResponsiblePersonRole",
        "ResponsibleOrganization", "MedicalAlerts", "Allergies", "SmokingStatus",
        "PregnancyStatus", "LastMenstrualDate", "SpecialNeeds", "PatientPrimaryLanguageCodeSequence",
        "InstitutionName", "InstitutionAddress", "InstitutionalDepartmentName",
        "InstitutionalDepartmentTypeCodeSequence", "InstitutionCodeSequence",
        "ReferringPhysicianAddress", "ReferringPhysicianTelephoneNumbers",
        "ReferringPhysicianIdentificationSequence", "ConsultingPhysicianName",
        "ConsultingPhysicianIdentificationSequence", "PhysiciansOfRecord",
        "PhysiciansOfRecordIdentificationSequence", "PerformingPhysicianName",
        "PerformingPhysicianIdentificationSequence", "NameOfPhysiciansReadingStudy",
        "PhysiciansReadingStudyIdentificationSequence", "OperatorsName",
        "OperatorIdentificationSequence", "RequestingPhysician", "RequestingService",
        "RequestingPhysicianIdentificationSequence", "StationName", "StudyDescription",
        "ProtocolName", "SeriesDate", "SeriesTime", "AcquisitionDate", "AcquisitionTime",
        "AcquisitionDateTime", "PerformedProcedureStepDescription", "PerformedProcedureStepID",
        "PerformedProcedureStepStartDate", "PerformedProcedureStepStartTime",
        "PerformedProcedureStepEndDate", "PerformedProcedureStepEndTime",
        "PerformedStationName", "PerformedLocation", "RequestAttributesSequence",
        "ReferencedPatientSequence", "ReferencedStudySequence", "AdmittingDiagnosesDescription",
        "AdmittingDiagnosesCodeSequence", "AdmissionID", "IssuerOfAdmissionIDSequence",
        "ReasonForStudy", "RequestedProcedureDescription", "RequestedProcedureID",
        "ReasonForTheRequestedProcedure", "ScheduledProcedureStepDescription",
        "ScheduledProcedureStepID", "ImageComments", "StudyComments", "RequestedContrastAgent",
        "CurrentPatientLocation", "PatientInstitutionResidence", "VisitComments",
        "DeviceSerialNumberOfSource", "DetectorID", "GantryID", "PlateID", "CassetteID",
        "ClinicalTrialSponsorName", "ClinicalTrialProtocolID", "ClinicalTrialProtocolName",
        "ClinicalTrialSiteID", "ClinicalTrialSiteName", "ClinicalTrialSubjectID",
        "ClinicalTrialSubjectReadingID", "ClinicalTrialTimePointID",
        "ClinicalTrialCoordinatingCenterName", "TimezoneOffsetFromUTC", "FillerOrderNumberImagingServiceRequest",
        "PlacerOrderNumberImagingServiceRequest", "ContentCreatorName",
        "VerifyingObserverName", "VerifyingObserverSequence", "PersonName", "PersonAddress",
        "PersonTelephoneNumbers", "PersonIdentificationCodeSequence",
    }
)  # fmt: skip
#: Instance identifiers replaced consistently (PS3.15 Table E.1-1, action U).
UID_KEYWORDS = frozenset(
    {
        "StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID", "MediaStorageSOPInstanceUID",
        "ReferencedSOPInstanceUID", "ReferencedSOPInstanceUIDInFile", "FrameOfReferenceUID",
        "ReferencedFrameOfReferenceUID", "RelatedFrameOfReferenceUID",
        "SourceFrameOfReferenceUID", "SynchronizationFrameOfReferenceUID",
        "DimensionOrganizationUID", "ConcatenationUID", "UID", "TrackingUID", "DeviceUID",
        "IrradiationEventUID", "ObservationUID", "InstanceCreatorUID", "StorageMediaFileSetUID",
        "TransactionUID", "FiducialUID", "DoseReferenceUID", "TemplateExtensionCreatorUID",
        "TemplateExtensionOrganizationUID", "ContextGroupExtensionCreatorUID",
        "CreatorVersionUID", "RequestedSOPInstanceUID", "AffectedSOPInstanceUID",
        "FailedSOPInstanceUIDList", "PaletteColorLookupTableUID",
        "LargePaletteColorLookupTableUID", "ReferencedGeneralPurposeScheduledProcedureStepTransactionUID",
        "ObservationSubjectUIDTrial",
    }
)  # fmt: skip
STANDARD_UID_ROOT = "1.2.840.10008."


class UIDMap:
    """``uid -> 2.25.<integer>`` from HMAC-SHA256 with a key: the same UID always gives the
    same replacement under one key, and the replacement says nothing about the UID without it."""

    def __init__(self, key: bytes):
        self._key = bytes(key)
        self._done: dict[str, str] = {}

    def __call__(self, uid: str) -> str:
        uid = str(uid).strip().rstrip("\x00")
        if not uid or uid.startswith(STANDARD_UID_ROOT):
            return uid
        out = self._done.get(uid)
        if out is None:
            digest = hmac.new(self._key, uid.encode("ascii", "replace"), hashlib.sha256).digest()
            out = f"2.25.{int.from_bytes(digest[:16], 'big')}"
            self._done[uid] = out
        return out


def output_uid(uid: str | None, options: ExportOptions, uids: UIDMap) -> str | None:
    """``uid`` as the output set shows it: replaced by ``uids`` (the output set's map,
    ``ExportContext.uids``) when ``options.deidentify``."""
    if uid is None or not options.deidentify:
        return uid
    return uids(uid)


def pseudonym(prediction: Prediction) -> str:
    """The study's pseudonymous key (``prediction.key``, or the workflows' rule)."""
    from .content import study_label

    return study_label(prediction)[:64]


def deidentify(ds: Dataset, uids: UIDMap, name: str) -> Dataset:
    """A de-identified deep copy of ``ds`` (see the module docstring). A copy: highdicom shares
    elements and items between the objects it builds and their source datasets, which must
    not change (the output set's other exporters share them through its context)."""
    import copy

    from pydicom.dataset import Dataset as _Dataset
    from pydicom.sequence import Sequence

    # copy the elements and file meta as a plain Dataset: a highdicom image also holds an
    # in-memory sqlite index whose connection belongs to the thread that built it (the
    # parametric map is prepared in another thread), and deep-copying it dumps that connection
    plain = _Dataset(ds)
    for attr in ("file_meta", "preamble"):
        if getattr(ds, attr, None) is not None:
            setattr(plain, attr, getattr(ds, attr))
    ds = copy.deepcopy(plain)

    def walk(item: _Dataset, depth: int) -> None:
        for elem in list(item):
            kw = elem.keyword
            if elem.tag.is_private or kw in REMOVE:
                del item[elem.tag]
            elif elem.VR == "SQ":
                if depth < 64:
                    for sub in elem.value:
                        walk(sub, depth + 1)
            elif kw in UID_KEYWORDS and elem.VR == "UI" and elem.value:
                if elem.VM > 1:
                    elem.value = [uids(v) for v in elem.value]
                else:
                    elem.value = uids(elem.value)

    walk(ds, 0)
    for kw in PSEUDONYM:
        setattr(ds, kw, name)
    for kw in EMPTY:
        setattr(ds, kw, "")
    ds.PatientIdentityRemoved = "YES"
    ds.DeidentificationMethod = DEIDENTIFICATION_METHOD
    code = _Dataset()
    code.CodeValue, code.CodingSchemeDesignator, code.CodeMeaning = BASIC_PROFILE_CODE
    ds.DeidentificationMethodCodeSequence = Sequence([code])
    ds.LongitudinalTemporalInformationModified = "REMOVED"
    meta = getattr(ds, "file_meta", None)
    if meta is not None and "SOPInstanceUID" in ds:
        meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    return ds
