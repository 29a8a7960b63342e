"""The fact a relevant Procedure, report, record order or medication becomes once its concepts
are known (label, status, dates), and the concepts a Condition's mCODE profile says.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..facts import MedicationFact, ProcedureFact
from .dates import first_date
from .elements import NO_CONCEPTS, as_str, concept_label

# mCODE STU4 profiles that say what a Condition is whatever its code (shared/terminology.md §1f):
# a SecondaryCancerCondition is metastatic disease even when its code is one we do not map.
PROFILE_CONCEPTS = {
    "http://hl7.org/fhir/us/mcode/StructureDefinition/mcode-secondary-cancer-condition": (
        "metastatic-disease"
    ),
}


# Where each date is, in the order read: the first one found counts.
_PERFORMED = (
    "performedDateTime",
    "performedPeriod.end",
    "performedPeriod.start",
    "effectiveDateTime",
    "effectivePeriod.end",
    "occurrenceDateTime",
    "occurrencePeriod.start",
    "issued",
    "authoredOn",
)
_AUTHORED = ("authoredOn", "effectiveDateTime", "effectivePeriod.start")
_ENDED = ("dispenseRequest.validityPeriod.end", "effectivePeriod.end")


def _identity(raw: Mapping[str, Any], named_by: str) -> tuple[str, str, str | None]:
    """A record's id ("" without one), its label (from its ``named_by`` element) and status."""
    return as_str(raw.get("id")) or "", concept_label(raw.get(named_by)), as_str(raw.get("status"))


def procedure_fact(
    raw: Mapping[str, Any], concepts: frozenset[str], how: tuple[tuple[str, str], ...] = ()
) -> ProcedureFact:
    """A Procedure, or a DiagnosticReport or ServiceRequest of a past or planned study."""
    rid, label, status = _identity(raw, "code")
    performed = first_date(raw, *_PERFORMED)
    return ProcedureFact(rid, concepts, label, status, performed=performed, how=how)


def medication_fact(
    raw: Mapping[str, Any], concepts: frozenset[str], how: tuple[tuple[str, str], ...] = ()
) -> MedicationFact:
    """A MedicationRequest, MedicationStatement or MedicationAdministration."""
    rid, label, status = _identity(raw, "medicationCodeableConcept")
    authored, ended = first_date(raw, *_AUTHORED), first_date(raw, *_ENDED)
    return MedicationFact(rid, concepts, label, status, authored=authored, ended=ended, how=how)


def profile_concepts(raw: Mapping[str, Any]) -> frozenset[str]:
    meta = raw.get("meta")
    if type(meta) is not dict:
        return NO_CONCEPTS
    profiles = meta.get("profile")
    if type(profiles) is not list:
        return NO_CONCEPTS
    found = NO_CONCEPTS
    for p in profiles:
        concept = _profile_concept(p)
        if concept:
            found = found | {concept}
    return found


def _profile_concept(profile: Any) -> str | None:
    """The concept a profile URL (``|version`` or not) says; most say none (US Core)."""
    if type(profile) is not str:
        return None
    concept = PROFILE_CONCEPTS.get(profile)
    if concept is None and "|" in profile:
        concept = PROFILE_CONCEPTS.get(profile.split("|", 1)[0])
    return concept
