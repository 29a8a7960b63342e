"""What the rules read: clinical records reduced to concepts, dates and statuses.

Frozen dataclasses with no I/O and no FHIR library types: ``fhir`` builds them, ``rules``
judges them, so the clinical logic is tested without parsing anything.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date


@dataclass(frozen=True)
class RecordFact:
    """What every clinical record holds: its id, the concepts it names and its label, and for
    each concept the code or our phrase that named it. ``how`` is keyword-only, so a record's
    own fields follow ``label`` in the constructor."""

    id: str
    concepts: frozenset[str]
    label: str
    how: tuple[tuple[str, str], ...] = field(default=(), kw_only=True)  # (concept, code or phrase)


@dataclass(frozen=True)
class ConditionFact(RecordFact):
    clinical_status: str | None = None
    verification: str | None = None
    onset: date | None = None
    recorded: date | None = None
    abatement: date | None = None
    stage_concepts: frozenset[str] = frozenset()
    profiles: frozenset[str] = frozenset()
    codes: frozenset[tuple[str, str]] = frozenset()  # (system, code) of Condition.code


@dataclass(frozen=True)
class ObservationFact(RecordFact):
    status: str | None = None
    effective: date | None = None
    value_concepts: frozenset[str] = frozenset()
    value: float | None = None
    value_bool: bool | None = None
    reference_high: float | None = None
    interpretation: frozenset[str] = frozenset()


@dataclass(frozen=True)
class ProcedureFact(RecordFact):
    status: str | None = None
    performed: date | None = None


@dataclass(frozen=True)
class MedicationFact(RecordFact):
    status: str | None = None
    authored: date | None = None
    ended: date | None = None


@dataclass(frozen=True)
class ReasonFact:
    """One ``reasonCode`` of an order: the concepts its codes map to, and its text or display."""

    concepts: frozenset[str]
    text: str = ""


@dataclass(frozen=True)
class OrderFact:
    """A draft order from ``context.draftOrders``."""

    reference: str  # "ServiceRequest/abc" (or the resource type alone when it has no id)
    resource_type: str
    concepts: frozenset[str]
    text: str  # code.text, else the first display: names the order in the card
    codings: tuple[tuple[str, str], ...] = ()
    body_site_text: str = ""
    reasons: tuple[ReasonFact, ...] = ()
    reason_references: tuple[str, ...] = ()
    priority: str | None = None  # routine | urgent | asap | stat
    # The order's own words beyond its name: note, orderDetail, patientInstruction,
    # supportingInfo displays (its reasons are in ``reasons``).
    words: tuple[str, ...] = ()


@dataclass(frozen=True)
class StageFact:
    """One reading of a cancer's stage: a coded stage group or T/N/M category, or stage words.

    ``group``, ``t``, ``n``, ``m`` are read from words ("IA", "T1c", "N0", "MX"); ``concepts``
    are the value concepts of a coded stage (``stage-group-early-value``, ``t1-value``, ...).
    ``focus`` is the id of the Condition it belongs to, when the record says."""

    id: str
    kind: str  # the resource type it came from
    label: str
    basis: str | None = None  # "clinical" | "pathological" | "post-therapy"
    group: str | None = None
    t: str | None = None
    n: str | None = None
    m: str | None = None
    concepts: frozenset[str] = frozenset()
    when: date | None = None
    focus: str | None = None
    side: str | None = None  # "left" | "right": the side its own words name (unfocused text)
    how: str = ""  # the code ("system|code") or the words that named it


@dataclass(frozen=True)
class PatientFacts:
    birth_date: date | None = None
    gender: str | None = None
    conditions: tuple[ConditionFact, ...] = ()
    observations: tuple[ObservationFact, ...] = ()
    procedures: tuple[ProcedureFact, ...] = ()
    medications: tuple[MedicationFact, ...] = ()
    stages: tuple[StageFact, ...] = ()
