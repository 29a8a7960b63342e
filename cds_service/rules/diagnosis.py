"""The breast cancer diagnosis: which entries count, when it was made (same-breast laterality),
and whether the patient is still in initial work-up (a new or unconfirmed diagnosis)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, timedelta

from ..facts import ConditionFact, PatientFacts
from .concepts import BREAST_CANCER, COMPLETED_TREATMENT, HISTORY, REMISSION, SURGERY
from .findings import Exclusion, Windows
from .records import HISTORICAL, UNCONFIRMED, condition_date, counts, evidence_of, within

POST_SURGERY_STAGING_DAYS = 90


def breast_cancer_conditions(facts: PatientFacts) -> list[ConditionFact]:
    return [c for c in facts.conditions if BREAST_CANCER in c.concepts and counts(c)]


def diagnosis_date(cancers: Sequence[ConditionFact]) -> date | None:
    """The most recent diagnosis: the latest onset (a new primary counts), else the earliest
    recorded date (re-recorded problem-list entries do not make a diagnosis new).

    An entry with no onset whose codes differ from those of every entry that has one (a C50.911
    recorded last month beside a C50.412 with a 2021 onset: the other breast) is a diagnosis of
    its own, dated by when it was recorded; one that shares a code with a dated entry is that
    entry recorded again."""
    entry = diagnosing_entry(cancers)
    if entry is None:
        return None
    return entry.onset or _recorded(entry)


def diagnosing_entry(cancers: Sequence[ConditionFact]) -> ConditionFact | None:
    """The entry that dates the most recent diagnosis (see ``diagnosis_date``)."""
    primary = [c for c in cancers if HISTORY not in c.concepts]
    dated_entries = [c for c in primary if c.onset]
    if dated_entries:
        dated = {code for c in dated_entries for code in c.codes}
        candidates = dated_entries + [
            c
            for c in primary
            if not c.onset
            and _recorded(c)
            and not c.codes & dated
            and not _same_breast(c.codes, dated)
        ]
        return max(candidates, key=lambda c: c.onset or _recorded(c) or date.min)
    recorded = [c for c in primary if _recorded(c)]
    return min(recorded, key=lambda c: _recorded(c) or date.max) if recorded else None


_ICD10 = "http://hl7.org/fhir/sid/icd-10-cm"


def _side(system: str, code: str) -> str | None:
    """The side an ICD-10-CM C50 code names ("1" right, "2" left, "9" unspecified), if any."""
    norm = code.upper().replace(".", "")
    if system == _ICD10 and norm.startswith("C50") and len(norm) == 6 and norm[3] != "A":
        return norm[5]
    if system == _ICD10 and norm in ("C50A1", "C50A2", "C50A0"):
        return {"C50A1": "1", "C50A2": "2", "C50A0": "9"}[norm]
    return None


def side_of(condition: ConditionFact) -> str | None:
    """ "left" or "right" when the entry's ICD-10-CM codes name one side only."""
    sides = {s for system, code in condition.codes if (s := _side(system, code)) in ("1", "2")}
    return {"1": "right", "2": "left"}[sides.pop()] if len(sides) == 1 else None


def _same_breast(codes: frozenset[tuple[str, str]], dated: set[tuple[str, str]]) -> bool:
    """Does an undated entry name the same breast as a dated one (C50.912 beside C50.412: both
    left)? Then it is that diagnosis recorded again (a visit's encounter diagnosis), not a new
    primary in the other breast. An unspecified side cannot show that: it stays a possible new
    diagnosis (the conservative reading)."""
    sides = {s for system, code in codes if (s := _side(system, code))}
    known = {s for system, code in dated if (s := _side(system, code))}
    return bool(sides & known) and "9" not in sides


def _recorded(condition: ConditionFact) -> date | None:
    """When an entry without onset was diagnosed at the latest: its recorded date, or its
    abatement when that is earlier (an entry migrated last month from an old system, ended in
    2016, was diagnosed before 2016)."""
    if condition.abatement and condition.recorded:
        return min(condition.abatement, condition.recorded)
    return condition.recorded or condition.abatement


def new_diagnosis_exclusion(
    facts: PatientFacts, cancers: Sequence[ConditionFact], today: date, windows: Windows
) -> Exclusion | None:
    """Initial work-up: a recent diagnosis with no completed definitive surgery yet.

    A breast cancer Condition left 'active' for years after treatment is history, not a new
    diagnosis: only the date decides. With no date at all and no sign of completed treatment
    we cannot tell a new diagnosis from history, so we stay silent.
    """
    history_signals = any(
        HISTORY in c.concepts or REMISSION in c.concepts or c.clinical_status in HISTORICAL
        for c in cancers
    ) or any(COMPLETED_TREATMENT in c.concepts and counts(c) for c in facts.conditions)
    diagnosed = diagnosis_date(cancers)
    surgeries = _surgery_dates(facts)
    if diagnosed is None:
        if history_signals or surgeries:
            return None
        return Exclusion("diagnosis-date-unknown", evidence_of(cancers[0], BREAST_CANCER))
    # Definitive surgery for THIS diagnosis, long enough ago that post-surgical staging is over
    # (a biopsy or surgery days ago, or one years before the diagnosis, does not count).
    settled = today - timedelta(days=POST_SURGERY_STAGING_DAYS)
    surgery_done = any(d is not None and diagnosed <= d <= settled for d in surgeries)
    if within(diagnosed, today, windows.new_diagnosis) and not surgery_done:
        entry = diagnosing_entry(cancers) or cancers[0]  # the entry that dates it
        return Exclusion("initial-staging", evidence_of(entry, BREAST_CANCER))
    return None


def _surgery_dates(facts: PatientFacts) -> list[date | None]:
    """The date (None: unknown) of each completed breast cancer surgery on record: a
    Procedure, or a Condition that records the surgery."""
    return [
        p.performed
        for p in facts.procedures
        if SURGERY in p.concepts and p.status in (None, "completed")
    ] + [condition_date(c) for c in facts.conditions if SURGERY in c.concepts and counts(c)]


def unconfirmed_exclusion(cancers: Sequence[ConditionFact]) -> Exclusion | None:
    if cancers and all(c.verification in UNCONFIRMED for c in cancers):
        return Exclusion("diagnosis-unconfirmed", evidence_of(cancers[0], BREAST_CANCER))
    return None
