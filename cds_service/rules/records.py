"""How the rules read one record: the statuses that count, its date, the look-back test, and
the Evidence that names it."""

from __future__ import annotations

from datetime import date, timedelta

from ..facts import ConditionFact, MedicationFact, ObservationFact, ProcedureFact
from .findings import Evidence

NOT_COUNTED = frozenset({"refuted", "entered-in-error"})
UNCONFIRMED = frozenset({"provisional", "differential", "unconfirmed"})
ONGOING = frozenset({"active", "recurrence", "relapse"})
HISTORICAL = frozenset({"inactive", "remission", "resolved"})
ABNORMAL_HIGH = frozenset({"H", "HH", "HU", "A", "AA", ">"})
VOID_RESULT = frozenset({"cancelled", "entered-in-error"})
# Order priorities that are not how routine surveillance or staging is ordered.
URGENT = frozenset({"urgent", "asap", "stat"})
ACTIVE_MEDICATION = frozenset({"active", "on-hold", "draft"})


def within(when: date | None, today: date, days: int) -> bool:
    """On or after ``today - days``. A date after today (a partial date such as "2026" read as
    its last day, or a clock skew) counts as today: the conservative reading."""
    return when is not None and min(when, today) >= today - timedelta(days=days)


def condition_date(condition: ConditionFact) -> date | None:
    return condition.onset or condition.recorded


def counts(condition: ConditionFact) -> bool:
    return condition.verification not in NOT_COUNTED


def evidence_of(
    record: ConditionFact | ObservationFact | ProcedureFact | MedicationFact, concept: str = ""
) -> Evidence:
    how = next((h for c, h in record.how if c == concept), "")
    if isinstance(record, ConditionFact):
        return Evidence("Condition", record.id, record.label, condition_date(record), concept, how)
    if isinstance(record, ObservationFact):
        return Evidence("Observation", record.id, record.label, record.effective, concept, how)
    if isinstance(record, ProcedureFact):
        return Evidence("Procedure", record.id, record.label, record.performed, concept, how)
    return Evidence("MedicationRequest", record.id, record.label, record.authored, concept, how)
