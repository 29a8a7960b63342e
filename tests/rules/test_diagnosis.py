"""The diagnosis: its date, a new diagnosis in initial work-up, a personal history code."""

from __future__ import annotations

from cds_service.facts import ConditionFact, PatientFacts
from cds_service.mappings import Knowledge

from .conftest import ago, cancer, condition, verdict


def test_recent_diagnosis_without_surgery_is_initial_staging(knowledge: Knowledge) -> None:
    facts = PatientFacts(conditions=(cancer(onset=ago(60), clinical_status="active"),))
    assert verdict(facts, knowledge) == ("silent", "initial-staging")


def test_decades_old_active_condition_is_history(knowledge: Knowledge) -> None:
    facts = PatientFacts(conditions=(cancer(onset=ago(20 * 365), clinical_status="active"),))
    assert verdict(facts, knowledge) == ("warn", "variant-10")


def test_unknown_diagnosis_date_without_history_is_silent(knowledge: Knowledge) -> None:
    facts = PatientFacts(conditions=(cancer(onset=None, clinical_status="active"),))
    assert verdict(facts, knowledge) == ("silent", "diagnosis-date-unknown")


def test_personal_history_code_is_enough(knowledge: Knowledge) -> None:
    z85 = condition("personal-history-breast-cancer", onset=None)
    z85 = ConditionFact(
        **{
            **z85.__dict__,
            "concepts": frozenset({"personal-history-breast-cancer", "invasive-breast-cancer"}),
        }
    )
    assert verdict(PatientFacts(conditions=(z85,)), knowledge) == ("warn", "variant-10")
