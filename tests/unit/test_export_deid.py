"""medfuse.export.deid: the PS3.15 basic profile on a dataset, and the UID map."""

from __future__ import annotations

import pydicom
from pydicom.dataset import Dataset

from medfuse.export import ExportContext, ExportOptions, deid


def _dataset() -> Dataset:
    ds = Dataset()
    ds.PatientName = "Doe^Jane"
    ds.PatientID = "12345"
    ds.PatientBirthDate = "19600101"
    ds.PatientAddress = "1 Main Street"
    ds.StudyInstanceUID = "1.2.3.4"
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.88.34"
    ds.StudyDescription = "CT CHEST"
    ds.SeriesDescription = "medfuse AI findings, not for clinical use"
    equipment = Dataset()
    equipment.InstitutionName = "General Hospital"
    equipment.Manufacturer = "ACME"
    ds.ContributingEquipmentSequence = [equipment]
    ref = Dataset()
    ref.ReferencedSOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
    ref.ReferencedSOPInstanceUID = "1.2.3.4.5"
    ds.ReferencedImageSequence = [ref]
    ds.add_new(0x00091010, "LO", "private value")
    return ds


def test_profile_on_a_copy():
    ds = _dataset()
    out = deid.deidentify(ds, deid.UIDMap(b"k"), "study-0123456789ab")
    assert str(ds.PatientName) == "Doe^Jane" and "PatientAddress" in ds  # the input is unchanged
    assert str(out.PatientName) == out.PatientID == "study-0123456789ab"
    assert out.PatientBirthDate == "" and "PatientAddress" not in out
    assert "StudyDescription" not in out and out.SeriesDescription == ds.SeriesDescription
    assert "InstitutionName" not in out.ContributingEquipmentSequence[0]
    assert out.ContributingEquipmentSequence[0].Manufacturer == "ACME"
    assert not [e for e in out.iterall() if e.tag.is_private]
    assert out.SOPClassUID == ds.SOPClassUID  # standard UIDs are kept
    ref = out.ReferencedImageSequence[0]
    assert ref.ReferencedSOPClassUID == "1.2.840.10008.5.1.4.1.1.2"
    assert ref.ReferencedSOPInstanceUID.startswith("2.25.")
    assert out.PatientIdentityRemoved == "YES"
    assert out.DeidentificationMethodCodeSequence[0].CodeValue == "113100"


def test_uid_map_is_consistent_and_keyed():
    a, b = deid.UIDMap(b"one"), deid.UIDMap(b"two")
    assert a("1.2.3") == a("1.2.3") != a("1.2.4")
    assert a("1.2.3") != b("1.2.3")
    assert a("1.2.840.10008.1.2.1") == "1.2.840.10008.1.2.1"
    uid = a("1.2.3")
    assert uid.startswith("2.25.") and len(uid) <= 64
    assert pydicom.uid.UID(uid).is_valid


def test_key_per_output_set_or_from_the_environment(monkeypatch):
    """One UID map per export context (one output set), with a random key unless
    MEDFUSE_DEID_KEY is set."""
    opts = ExportOptions(deidentify=True)
    monkeypatch.delenv("MEDFUSE_DEID_KEY", raising=False)
    c1, c2 = ExportContext(opts), ExportContext(opts)
    assert c1.uids("1.2.3") == c1.uids("1.2.3") != c2.uids("1.2.3")
    assert deid.output_uid("1.2.3", opts, c1.uids) == c1.uids("1.2.3")
    assert deid.output_uid("1.2.3", ExportOptions(), c1.uids) == "1.2.3"
    monkeypatch.setenv("MEDFUSE_DEID_KEY", "site secret")
    assert ExportContext(opts).uids("1.2.3") == ExportContext(opts).uids("1.2.3")
