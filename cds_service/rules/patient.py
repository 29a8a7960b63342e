"""The patient's side of the decision: is this a survivor of invasive breast cancer in routine
surveillance, and if not, why not (one Assessment shared by every order of a call)."""

from __future__ import annotations

from datetime import date

from ..facts import PatientFacts
from .concepts import BREAST_CANCER, DCIS, FAMILY_HISTORY, HISTORY
from .diagnosis import (
    breast_cancer_conditions,
    new_diagnosis_exclusion,
    unconfirmed_exclusion,
)
from .exclusions import (
    metastatic_exclusions,
    other_cancer_exclusions,
    palliative_exclusions,
    recurrence_exclusions,
    treatment_exclusions,
)
from .findings import DEFAULT_WINDOWS, Assessment, Exclusion, Windows
from .records import condition_date, counts, evidence_of
from .variant11 import variant_11


def assess_patient(
    facts: PatientFacts, today: date, windows: Windows = DEFAULT_WINDOWS
) -> Assessment:
    """Is this patient a survivor of invasive breast cancer in routine surveillance?"""
    cancers = breast_cancer_conditions(facts)
    if not cancers:
        counted = [c for c in facts.conditions if counts(c)]
        if any(DCIS in c.concepts for c in counted):
            reason = "dcis-only"
        elif any(FAMILY_HISTORY in c.concepts for c in counted):
            reason = "family-history-only"
        else:
            reason = "no-invasive-breast-cancer"
        return Assessment(False, (), (), (), (), not_applicable=reason)

    evidence = tuple(
        evidence_of(c, HISTORY if HISTORY in c.concepts else BREAST_CANCER)
        for c in sorted(cancers, key=lambda c: condition_date(c) or date.min)
    )
    symptoms, long_standing = variant_11(facts, today, windows)
    exclusions: list[Exclusion] = []
    exclusions += metastatic_exclusions(facts)
    exclusions += recurrence_exclusions(facts, cancers, today, windows)
    unconfirmed = unconfirmed_exclusion(cancers)
    if unconfirmed:
        exclusions.append(unconfirmed)
    new_dx = new_diagnosis_exclusion(facts, cancers, today, windows)
    if new_dx:
        exclusions.append(new_dx)
    exclusions += treatment_exclusions(facts, today, windows)
    exclusions += other_cancer_exclusions(facts, today)
    exclusions += palliative_exclusions(facts)
    exclusions += symptoms
    return Assessment(True, evidence, tuple(exclusions), tuple(symptoms), tuple(long_standing))
