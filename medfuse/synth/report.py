"""Plain-text radiology reports that agree with a synthetic study's ground truth.

Reports have the usual sections (EXAMINATION, CLINICAL HISTORY, TECHNIQUE, COMPARISON, FINDINGS,
IMPRESSION) and state normal findings as negations ("No pleural effusion."), so a report reader
has both positive and negated mentions to find. Wording varies with the seed.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = [
    "HISTORIES_MR",
    "article",
    "chest_ct_report",
    "mr_brain_report",
    "mr_lesion_impression",
    "mr_lesion_sentence",
    "pick",
    "report_text",
]


def pick(rng: np.random.Generator, options: Sequence[str]) -> str:
    """One of ``options``, drawn with ``rng`` (one integer draw)."""
    return options[int(rng.integers(len(options)))]


def report_text(
    *,
    exam: str,
    history: str,
    technique: str,
    comparison: str,
    findings: Sequence[str],
    impression: Sequence[str],
    footer: str,
) -> str:
    """The sections every synthetic report has, in order: EXAMINATION, CLINICAL HISTORY,
    TECHNIQUE, COMPARISON, FINDINGS (``findings``, one line each), IMPRESSION (numbered) and a
    last line saying the report is synthetic (``footer``)."""
    return "\n".join(
        [
            f"EXAMINATION: {exam}",
            "",
            f"CLINICAL HISTORY: {history}",
            "",
            f"TECHNIQUE: {technique}",
            "",
            f"COMPARISON: {comparison}",
            "",
            "FINDINGS:",
            *findings,
            "",
            "IMPRESSION:",
            *(f"{i}. {item}" for i, item in enumerate(impression, 1)),
            "",
            footer,
            "",
        ]
    )


_HISTORIES_CT = (
    "Cough for three weeks.",
    "Shortness of breath.",
    "Follow-up of abnormal chest radiograph.",
    "Smoker, screening.",
    "Chest pain.",
    "Weight loss.",
)
#: Clinical histories of :func:`mr_brain_report` (one drawn per report).
HISTORIES_MR = ("Headache.", "Dizziness.", "Follow-up.", "Seizure.")


def article(n: int) -> str:
    """English article before a spoken number: "an 8 mm", "an 18 mm", "a 12 mm"."""
    s = str(n)
    return "an" if s.startswith("8") or s in ("11", "18") else "a"


def _lesion_phrase(les: dict) -> str:
    d = les["diameter_mm"]
    img = f" (series {les['series_number']}, image {les['instance_number']})"
    if les["kind"] == "mass":
        return f"There is {article(d)} {d} mm spiculated mass in the {les['location']}{img}."
    return f"There is {article(d)} {d} mm solid pulmonary nodule in the {les['location']}{img}."


def chest_ct_report(
    *,
    rng: np.random.Generator,
    case_number: int,
    slice_thickness: float,
    lesions: Sequence[dict],
    cardiomegaly: bool,
    effusion: str | None,
    emphysema: bool,
) -> tuple[str, list[str]]:
    """Report text and its impression items for a chest CT.

    ``lesions`` are ground-truth lesion records (``kind``, ``diameter_mm``, ``location``,
    ``series_number``, ``instance_number``).
    """
    history = pick(rng, _HISTORIES_CT)
    lungs: list[str] = []
    impression: list[str] = []
    for les in lesions:
        lungs.append(_lesion_phrase(les))
        if les["kind"] == "mass":
            impression.append(
                f"{les['diameter_mm']} mm {les['location']} mass, suspicious for malignancy. "
                "Tissue sampling is recommended."
            )
        else:
            follow = "3 months" if les["diameter_mm"] >= 8 else "6 to 12 months"
            impression.append(
                f"{les['diameter_mm']} mm {les['location']} pulmonary nodule. "
                f"Follow-up CT in {follow} is recommended."
            )
    if not lesions:
        lungs.append("No focal lesion. No pulmonary nodule or mass.")
    if emphysema:
        lungs.append("There is diffuse centrilobular emphysema.")
        impression.append("Emphysema.")
    else:
        lungs.append("No emphysema.")
    if effusion:
        where = {
            "both": "bilateral pleural effusions",
            "left": "left pleural effusion",
            "right": "right pleural effusion",
        }[effusion]
        pleura = f"Small {where}. No pneumothorax."
        impression.append(f"Small {where}.")
    else:
        pleura = "No pleural effusion or pneumothorax."
    if cardiomegaly:
        heart = "The heart is enlarged. No pericardial effusion."
        impression.append("Cardiomegaly.")
    else:
        heart = "Heart size is normal. No pericardial effusion."
    if not impression:
        impression.append("No acute cardiopulmonary abnormality. No focal lesion.")

    text = report_text(
        exam="CT CHEST WITHOUT CONTRAST",
        history=history,
        technique="Axial CT images of the chest were obtained without intravenous contrast and "
        f"reconstructed at {_mm(slice_thickness)} mm.",
        comparison="None.",
        findings=[
            f"Lungs and airways: {' '.join(lungs)} The central airways are patent.",
            f"Pleura: {pleura}",
            f"Heart and mediastinum: {heart} No mediastinal lymphadenopathy.",
            "Bones and soft tissues: No acute osseous abnormality.",
        ],
        impression=impression,
        footer=f"Synthetic report for medfuse synthetic case {case_number:04d}; not a real patient.",
    )
    return text, impression


def mr_lesion_sentence(les: dict, *, image_ref: bool = True) -> str:
    """The FINDINGS sentence of a brain MR lesion record (``diameter_mm``, ``location`` and, with
    ``image_ref``, ``series_number`` / ``instance_number``)."""
    d = les["diameter_mm"]
    ref = f" (series {les['series_number']}, image {les['instance_number']})" if image_ref else ""
    return (
        f"There is {article(d)} {d} mm T1-hyperintense focal lesion in the {les['location']}{ref}."
    )


def mr_lesion_impression(les: dict) -> str:
    """The IMPRESSION item of a brain MR lesion record."""
    return (
        f"{les['diameter_mm']} mm T1-hyperintense lesion in the {les['location']}. "
        "Contrast-enhanced MRI is recommended."
    )


def mr_brain_report(
    *, rng: np.random.Generator, case_number: int, slice_thickness: float, lesions: Sequence[dict]
) -> tuple[str, list[str]]:
    """Report text and impression items for a sagittal T1 brain MR."""
    history = pick(rng, HISTORIES_MR)
    findings: list[str] = []
    impression: list[str] = []
    for les in lesions:
        findings.append(mr_lesion_sentence(les))
        impression.append(mr_lesion_impression(les))
    if not lesions:
        findings.append("No focal lesion.")
        impression.append("No acute intracranial abnormality. No focal lesion.")
    findings.append("The ventricles are normal in size. No midline shift. No hydrocephalus.")
    text = report_text(
        exam="MRI BRAIN WITHOUT CONTRAST",
        history=history,
        technique=f"Sagittal T1-weighted spin echo images, {_mm(slice_thickness)} mm slices.",
        comparison="None.",
        findings=[" ".join(findings)],
        impression=impression,
        footer=f"Synthetic report for medfuse synthetic case {case_number:04d}; not a real patient.",
    )
    return text, impression


def _mm(v: float) -> str:
    return f"{v:g}"
