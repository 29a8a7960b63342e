"""ACR Variant 11: the symptoms, signs and abnormal laboratory values that suggest distant
recurrence (current ones exclude routine surveillance; long-standing ones are only named)."""

from __future__ import annotations

from datetime import date
from typing import Literal

from ..concepts import LABS, SYMPTOMS
from ..facts import ConditionFact, ObservationFact, PatientFacts
from .concepts import IONIZED_CALCIUM
from .findings import Evidence, Exclusion, Windows
from .records import (
    ABNORMAL_HIGH,
    HISTORICAL,
    VOID_RESULT,
    condition_date,
    counts,
    evidence_of,
    within,
)

_SYMPTOM_SET = frozenset(SYMPTOMS)


def _symptom_status(
    condition: ConditionFact, today: date, windows: Windows
) -> Literal["current", "long-standing", "past"]:
    """New (recorded within the short window) or persistent (ongoing, onset within a year)."""
    when = condition_date(condition)
    if condition.clinical_status in HISTORICAL:
        if within(condition.abatement, today, windows.symptom_new):
            return "current"
        if condition.abatement is None and within(when, today, windows.symptom_new):
            return "current"
        return "past"
    if when is None:
        return "current"  # an ongoing symptom of unknown date: assume it matters
    if condition.clinical_status in {"recurrence", "relapse"}:
        return "current"  # it came back: new again, whatever its first onset
    # Recorded lately counts only without an onset: a 2009 back pain recorded last month (a
    # migration, a problem list tidied) is the 2009 back pain.
    if within(when, today, windows.symptom_new) or (
        condition.onset is None and within(condition.recorded, today, windows.symptom_new)
    ):
        return "current"
    if within(when, today, windows.symptom_persistent):
        return "current"
    if when > today:
        return "current"
    return "long-standing"


def _lab_abnormal(o: ObservationFact) -> bool:
    if o.interpretation & ABNORMAL_HIGH:
        return True
    return o.value is not None and o.reference_high is not None and o.value > o.reference_high


def _recent_finding(
    concepts: frozenset[str], status: str | None, when: date | None, today: date, days: int
) -> str | None:
    """The symptom or finding a result or report names, if it is not void and is recent
    (or undated: the conservative reading)."""
    hits = concepts & _SYMPTOM_SET
    if not hits or status in VOID_RESULT or (when is not None and not within(when, today, days)):
        return None
    return sorted(hits)[0]


def variant_11(
    facts: PatientFacts, today: date, windows: Windows
) -> tuple[list[Exclusion], list[Evidence]]:
    """Symptoms, signs and laboratory values that suggest distant recurrence."""
    current: list[Exclusion] = []
    long_standing: list[Evidence] = []
    symptom_set = frozenset(SYMPTOMS)
    for c in facts.conditions:
        hits = c.concepts & symptom_set
        if not hits or not counts(c):
            continue
        concept = sorted(hits)[0]
        status = _symptom_status(c, today, windows)
        if status == "current":
            current.append(Exclusion(f"symptom:{concept}", evidence_of(c, concept)))
        elif status == "long-standing":
            long_standing.append(evidence_of(c, concept))
    for p in facts.procedures:  # a report's conclusion naming a finding ("new lytic lesion")
        found = _recent_finding(p.concepts, p.status, p.performed, today, windows.symptom_new)
        if found:
            current.append(Exclusion(f"symptom:{found}", evidence_of(p, found)))
    for m in facts.medications:  # prescribed for a symptom lately ("oxycodone for hip pain")
        found = _recent_finding(m.concepts, m.status, m.authored, today, windows.symptom_new)
        if found:
            current.append(Exclusion(f"symptom:{found}", evidence_of(m, found)))
    lab_set = frozenset(LABS)
    # A raised ionized calcium beside a normal total calcium of the lab window is most often a
    # handling artefact; without a total calcium it counts.
    total_calcium_normal = any(
        "calcium" in o.concepts
        and o.status not in VOID_RESULT
        and (o.value is not None or o.interpretation)
        and not _lab_abnormal(o)
        and o.effective is not None
        and within(o.effective, today, windows.lab)
        for o in facts.observations
    )
    for o in facts.observations:
        if o.status in VOID_RESULT:
            continue
        found = _recent_finding(
            o.concepts | o.value_concepts, o.status, o.effective, today, windows.symptom_new
        )
        if found and o.value_bool is not False:
            current.append(Exclusion(f"symptom:{found}", evidence_of(o, found)))
            continue
        labs = o.concepts & lab_set
        if (
            labs
            and _lab_abnormal(o)
            and (o.effective is None or within(o.effective, today, windows.lab))
        ):
            if labs == {IONIZED_CALCIUM} and total_calcium_normal:
                continue  # a normal total calcium of the same weeks says more
            concept = sorted(labs)[0]
            current.append(Exclusion(f"abnormal-lab:{concept}", evidence_of(o, concept)))
    return current, long_standing
