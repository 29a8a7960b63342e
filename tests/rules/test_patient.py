"""Who is a survivor of invasive breast cancer in routine surveillance, and who is not."""

from __future__ import annotations

import pytest

from cds_service.facts import PatientFacts
from cds_service.mappings import Knowledge
from cds_service.rules import assess_patient

from .conftest import SURVIVOR, TODAY, cancer, condition, verdict


def test_asymptomatic_survivor_gets_a_warning(knowledge: Knowledge) -> None:
    assert verdict(SURVIVOR, knowledge) == ("warn", "variant-10")


def test_no_breast_cancer_no_scenario(knowledge: Knowledge) -> None:
    assert verdict(PatientFacts(), knowledge) == ("silent", "no-invasive-breast-cancer")


def test_dcis_only_is_not_invasive(knowledge: Knowledge) -> None:
    facts = PatientFacts(conditions=(condition("dcis"),))
    assert verdict(facts, knowledge) == ("silent", "dcis-only")


def test_family_history_never_counts(knowledge: Knowledge) -> None:
    facts = PatientFacts(conditions=(condition("family-history-breast-cancer"),))
    assert verdict(facts, knowledge) == ("silent", "family-history-only")


@pytest.mark.parametrize("status", ["refuted", "entered-in-error"])
def test_refuted_breast_cancer_does_not_make_a_survivor(knowledge: Knowledge, status: str) -> None:
    facts = PatientFacts(conditions=(cancer(verification=status),))
    assert verdict(facts, knowledge)[0] == "silent"


def test_assessment_names_its_evidence() -> None:
    assessment = assess_patient(SURVIVOR, TODAY)
    assert assessment.survivor
    assert [e.id for e in assessment.evidence] == ["bc"]
    assert assessment.exclusions == ()
