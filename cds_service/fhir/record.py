"""One patient record (resources grouped by prefetch key) → ``PatientFacts``: each resource
once (one reached by two searches is read once), medications known by id, every resource to the
reader of its type; and where each fact came from, for validating what a card cites.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ..facts import (
    ConditionFact,
    MedicationFact,
    ObservationFact,
    PatientFacts,
    ProcedureFact,
    StageFact,
)
from ..mappings import Knowledge
from .dates import parse_date
from .elements import as_str
from .reader import ResourceReader
from .stages import StageReader

# The types read as a past or planned study, and as a medication.
PROCEDURE_TYPES = ("Procedure", "DiagnosticReport", "ServiceRequest")
MEDICATION_TYPES = ("MedicationRequest", "MedicationStatement", "MedicationAdministration")

# Where each fact came from: (type, id) -> (its place in the request, the resource).
Sources = dict[tuple[str, str], tuple[str, Mapping[str, Any]]]


def build_facts(
    resources: Mapping[str, Sequence[Mapping[str, Any]]],
    knowledge: Knowledge,
    sources: Sources | None = None,
) -> PatientFacts:
    """Reduce the record (resources grouped by prefetch key) to the facts the rules read.

    A resource is read when its codes or its words name a concept (``ResourceReader``); it is read
    leniently (an element of the wrong shape counts as absent, which the rules treat
    conservatively) and not validated here: full validation costs ~0.4 ms a resource, and
    records run to thousands. ``sources`` collects where each fact came from, so that
    ``validate_cited`` can validate the few records a card cites.
    """
    reader = ResourceReader(knowledge)
    staging = StageReader(knowledge)
    items: list[tuple[str, int, Mapping[str, Any]]] = []
    seen: dict[str, set[str]] = {}  # ids per type: one resource reached by two searches
    for key, found in resources.items():
        for index, raw in enumerate(found):
            if type(raw) is not dict:
                continue
            rid, rtype = raw.get("id"), raw.get("resourceType")
            if type(rid) is str and type(rtype) is str:  # a client's id may be anything
                ids = seen.get(rtype)
                if ids is None:
                    ids = seen[rtype] = set()
                elif rid in ids:
                    continue
                ids.add(rid)
            items.append((key, index, raw))
    for _, _, raw in items:
        if raw.get("resourceType") == "Medication" and (mid := as_str(raw.get("id"))):
            reader.medications[mid] = raw
    patient: Mapping[str, Any] = next(
        (r for _, _, r in items if r.get("resourceType") == "Patient"), {}
    )
    birth = parse_date(patient.get("birthDate"))
    conditions: list[ConditionFact] = []
    observations: list[ObservationFact] = []
    procedures: list[ProcedureFact] = []
    medications: list[MedicationFact] = []
    stages: list[StageFact] = []
    for key, index, raw in items:
        rtype = raw.get("resourceType")
        staged = len(stages)
        fact: ConditionFact | ObservationFact | ProcedureFact | MedicationFact | None
        if rtype == "Condition":
            fact = reader.condition(raw, birth)
            if fact is not None:
                conditions.append(fact)
            if "stage" in raw or fact is not None:
                dated = (
                    (fact.onset or fact.recorded) if fact else parse_date(raw.get("onsetDateTime"))
                )
                stages += staging.condition(raw, dated)
        elif rtype == "Observation":
            fact = reader.observation(raw)
            if fact is not None:
                observations.append(fact)
            if "component" in raw:  # a panel: each analyte judged as its own result
                observations += reader.component_labs(raw)
            stages += staging.observation(raw, reader.observation_name(raw.get("code"))[0])
        elif rtype in PROCEDURE_TYPES:
            fact = reader.procedure(raw)
            if fact is not None:
                procedures.append(fact)
            if rtype == "DiagnosticReport":
                stages += staging.report(raw)
        elif rtype in MEDICATION_TYPES:
            fact = reader.medication(raw)
            if fact is not None:
                medications.append(fact)
        else:
            continue
        if (fact is not None or len(stages) > staged) and sources is not None:
            sources[(str(rtype), str(raw.get("id")))] = (f"prefetch.{key}[{index}]", raw)
    return PatientFacts(
        birth_date=birth,
        gender=as_str(patient.get("gender")),
        conditions=tuple(conditions),
        observations=tuple(observations),
        procedures=tuple(procedures),
        medications=tuple(medications),
        stages=staging.linked(stages),
    )
