"""What takes a survivor out of routine surveillance: metastasis, recurrence, treatment,
another cancer."""

from __future__ import annotations

import pytest

from cds_service.facts import MedicationFact, ObservationFact, PatientFacts
from cds_service.mappings import Knowledge

from .conftest import LUMPECTOMY, ago, cancer, condition, verdict, with_conditions


def test_metastatic_disease_silences(knowledge: Knowledge) -> None:
    facts = with_conditions(condition("metastatic-disease", onset=ago(400)))
    assert verdict(facts, knowledge) == ("silent", "metastatic-disease")


def test_stage_iv_observation_silences(knowledge: Knowledge) -> None:
    stage = ObservationFact(
        "st",
        frozenset({"stage-group-observation"}),
        "Stage",
        "final",
        ago(2000),
        frozenset({"stage-iv-value"}),
    )
    facts = PatientFacts(conditions=(cancer(),), observations=(stage,), procedures=(LUMPECTOMY,))
    assert verdict(facts, knowledge) == ("silent", "stage-iv")


def test_stage_iv_on_condition_stage_silences(knowledge: Knowledge) -> None:
    facts = PatientFacts(
        conditions=(cancer(stage_concepts=frozenset({"stage-iv-value"})),), procedures=(LUMPECTOMY,)
    )
    assert verdict(facts, knowledge) == ("silent", "stage-iv")


@pytest.mark.parametrize("status", ["recurrence", "relapse"])
def test_recurrence_silences(knowledge: Knowledge, status: str) -> None:
    facts = PatientFacts(conditions=(cancer(clinical_status=status),), procedures=(LUMPECTOMY,))
    assert verdict(facts, knowledge) == ("silent", "recurrence")


def test_active_chemotherapy_silences(knowledge: Knowledge) -> None:
    chemo = MedicationFact("m", frozenset({"chemotherapy"}), "paclitaxel", "active", ago(20))
    facts = PatientFacts(conditions=(cancer(),), procedures=(LUMPECTOMY,), medications=(chemo,))
    assert verdict(facts, knowledge) == ("silent", "active-chemotherapy")


def test_endocrine_therapy_is_not_active_treatment(knowledge: Knowledge) -> None:
    ai = MedicationFact("m", frozenset({"endocrine-therapy"}), "anastrozole", "active", ago(20))
    facts = PatientFacts(conditions=(cancer(),), procedures=(LUMPECTOMY,), medications=(ai,))
    assert verdict(facts, knowledge) == ("warn", "variant-10")


def test_other_active_cancer_silences(knowledge: Knowledge) -> None:
    facts = with_conditions(condition("other-primary-malignancy", onset=ago(120)))
    assert verdict(facts, knowledge) == ("silent", "other-cancer")


def test_a_node_positive_stage_recorded_years_after_the_diagnosis_is_a_regional_recurrence(
    knowledge: Knowledge,
) -> None:
    """A survivor's N1 (coded or written) recorded last week, years after the diagnosis, is a
    regional recurrence ("rpN1a"), not the original stage; the original pN1 of the diagnosis
    is not."""
    from dataclasses import replace

    from cds_service.facts import StageFact

    survivor = with_conditions()
    late = StageFact("n", "Observation", "pN1a", n="N1a", when=ago(7), how="stage words")
    assert verdict(replace(survivor, stages=(late,)), knowledge)[0] == "silent"
    coded = replace(late, n=None, concepts=frozenset({"n1-value"}))
    assert verdict(replace(survivor, stages=(coded,)), knowledge)[0] == "silent"
    original = replace(late, when=ago(5 * 365 + 30))
    assert verdict(replace(survivor, stages=(original,)), knowledge) == verdict(survivor, knowledge)
