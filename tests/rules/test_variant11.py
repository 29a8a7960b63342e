"""Variant 11: symptoms and abnormal labs (new, persistent, long-standing, resolved), and the
configurable look-back windows."""

from __future__ import annotations

import pytest
from flask.testing import FlaskClient

from cds_service.facts import ObservationFact, OrderFact, PatientFacts
from cds_service.mappings import Knowledge
from cds_service.rules import Windows, evaluate

from ..conftest import FIXTURES, load_json
from .conftest import (
    LUMPECTOMY,
    PET_CT,
    SELECT,
    TODAY,
    ago,
    cancer,
    condition,
    verdict,
    with_conditions,
)


def test_new_symptom_gives_targeted_info_not_warning(knowledge: Knowledge) -> None:
    facts = with_conditions(condition("headache", onset=ago(20)))
    assert verdict(facts, knowledge) == ("info-targeted", "symptom:headache")


def test_symptom_with_its_targeted_study_gives_no_card(knowledge: Knowledge) -> None:
    facts = with_conditions(condition("bone-pain", onset=ago(20)))
    bone_scan = OrderFact(
        "ServiceRequest/b", "ServiceRequest", frozenset({"bone-scan-whole-body"}), "Bone scan"
    )
    assert verdict(facts, knowledge, bone_scan) == ("silent", "symptom:bone-pain")


def test_persistent_symptom_silences(knowledge: Knowledge) -> None:
    facts = with_conditions(condition("cough", onset=ago(200)))
    ct = OrderFact("ServiceRequest/c", "ServiceRequest", frozenset({"ct-chest"}), "CT chest")
    assert verdict(facts, knowledge, ct) == ("silent", "symptom:cough")


def test_long_standing_symptom_does_not_silence_but_is_mentioned(knowledge: Knowledge) -> None:
    facts = with_conditions(condition("back-pain", onset=ago(6 * 365)))
    finding = evaluate(facts, [PET_CT], knowledge, TODAY)[0]
    assert finding.verdict == "warn"
    assert [e.concept for e in finding.long_standing] == ["back-pain"]


def test_resolved_symptom_counts_only_when_recent(knowledge: Knowledge) -> None:
    old = with_conditions(
        condition("cough", clinical_status="resolved", onset=ago(800), abatement=ago(700))
    )
    recent = with_conditions(
        condition("cough", clinical_status="resolved", onset=ago(100), abatement=ago(10))
    )
    assert verdict(old, knowledge)[0] == "warn"
    assert verdict(recent, knowledge)[0] != "warn"


def test_refuted_symptom_does_not_silence(knowledge: Knowledge) -> None:
    facts = with_conditions(condition("bone-pain", onset=ago(10), verification="refuted"))
    assert verdict(facts, knowledge)[0] == "warn"


def test_symptom_of_unknown_date_silences(knowledge: Knowledge) -> None:
    facts = with_conditions(condition("jaundice"))
    assert verdict(facts, knowledge)[0] != "warn"


@pytest.mark.parametrize(
    ("interpretation", "value", "high", "days", "warns"),
    [
        (frozenset({"H"}), 180.0, None, 30, False),
        (frozenset(), 180.0, 120.0, 30, False),
        (frozenset(), 100.0, 120.0, 30, True),
        (frozenset({"H"}), 180.0, 120.0, 2 * 365, True),
        (frozenset({"N"}), 80.0, 120.0, 10, True),
    ],
)
def test_abnormal_lab_window(
    knowledge: Knowledge,
    interpretation: frozenset[str],
    value: float,
    high: float | None,
    days: int,
    warns: bool,
) -> None:
    alp = ObservationFact(
        "alp",
        frozenset({"alkaline-phosphatase"}),
        "ALP",
        "final",
        ago(days),
        value=value,
        reference_high=high,
        interpretation=interpretation,
    )
    facts = PatientFacts(conditions=(cancer(),), observations=(alp,), procedures=(LUMPECTOMY,))
    assert (verdict(facts, knowledge)[0] == "warn") is warns


def test_windows_are_configurable(knowledge: Knowledge) -> None:
    facts = with_conditions(
        condition("cough", onset=ago(200), clinical_status="resolved", abatement=ago(150))
    )
    assert evaluate(facts, [PET_CT], knowledge, TODAY)[0].verdict == "warn"
    wide = Windows(symptom_new=180)
    assert evaluate(facts, [PET_CT], knowledge, TODAY, wide)[0].verdict != "warn"


def test_targeted_card_cites_variant_11(client: FlaskClient) -> None:
    body = load_json(FIXTURES / "requests" / "new-bone-pain-pet-ct.json")
    [card] = client.post(SELECT, json=body).get_json()["cards"]
    assert "Variant 11" in card["source"]["label"]
