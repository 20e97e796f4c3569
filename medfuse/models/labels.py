"""The chest CT labels: one list for the ``chest_ct_*`` presets (:mod:`medfuse.models.model`),
the synthetic fusion cohort the demo model is trained on (:mod:`medfuse.train.cohort`) and so
the shipped ``chest_ct_demo`` model (its card; ``tests/unit/test_sources_of_truth.py`` checks
that they agree). A leaf module: it imports nothing, so the cohort reads it without torch."""

from __future__ import annotations

__all__ = ["CHEST_CT_LABELS", "CHEST_CT_LABEL_SOURCES"]

#: Diagnosis labels of the chest CT presets and the synthetic fusion cohort, in head order.
CHEST_CT_LABELS: tuple[str, ...] = (
    "emphysema",
    "cardiomegaly",
    "pleural_effusion",
    "consolidation",
    "lung_lesion",
    "smoking_history",
    "dyspnea",
    "pneumonia",
    "suspected_malignancy",
)
#: Where the evidence for each label lies in the synthetic cohort: "image", "report" or "both"
#: (the model card's ``training_data.label_sources``).
CHEST_CT_LABEL_SOURCES: dict[str, str] = {
    "emphysema": "image",
    "cardiomegaly": "image",
    "pleural_effusion": "image",
    "consolidation": "image",
    "lung_lesion": "image",
    "smoking_history": "report",
    "dyspnea": "report",
    "pneumonia": "both",
    "suspected_malignancy": "both",
}
