"""Concept groups that more than one module reads: the symptoms and signs of Variant 11 and
the laboratory analytes (ids defined in ``mappings/*.json``)."""

from __future__ import annotations

SYMPTOMS = (
    "bone-pain",
    "back-pain",
    "cough",
    "dyspnea",
    "weight-loss",
    "jaundice",
    "abdominal-pain",
    "hepatomegaly",
    "headache",
    "seizure",
    "neurological-deficit",
    "abnormal-liver-or-bone-labs-diagnosis",
    "pathological-fracture",
    "other-sign-or-finding",
)
LABS = (
    "alkaline-phosphatase",
    "aspartate-aminotransferase",
    "alanine-aminotransferase",
    "bilirubin-total",
    "calcium",
    "calcium-ionized",
    "lactate-dehydrogenase",
    # A raised tumour marker is a "laboratory value" suggesting recurrence (Variant 11).
    "tumor-marker",
)
