"""The order's own reasons: a symptom or finding silences, a readable surveillance reason warns."""

from __future__ import annotations

import pytest

from cds_service.facts import OrderFact, ReasonFact
from cds_service.mappings import Knowledge
from cds_service.rules import evaluate

from .conftest import SURVIVOR, TODAY, ago, condition, verdict, with_conditions


def test_order_reason_symptom_silences(knowledge: Knowledge) -> None:
    order = OrderFact(
        "ServiceRequest/pet",
        "ServiceRequest",
        frozenset({"pet-ct"}),
        "PET/CT",
        reasons=(ReasonFact(frozenset({"bone-pain"}), "Rib pain"),),
    )
    assert verdict(SURVIVOR, knowledge, order) == ("silent", "order-reason:bone-pain")


def test_order_reason_reference_to_symptom_silences(knowledge: Knowledge) -> None:
    pain = condition("bone-pain", id="pain-1", onset=ago(5 * 365))
    facts = with_conditions(pain)
    order = OrderFact(
        "ServiceRequest/pet",
        "ServiceRequest",
        frozenset({"pet-ct"}),
        "PET/CT",
        reason_references=("Condition/pain-1",),
    )
    assert verdict(facts, knowledge, order) == ("silent", "order-reason:bone-pain")


def _pet_with(*reasons: ReasonFact, refs: tuple[str, ...] = ()) -> OrderFact:
    return OrderFact(
        "ServiceRequest/pet",
        "ServiceRequest",
        frozenset({"pet-ct"}),
        "PET/CT",
        reasons=reasons,
        reason_references=refs,
    )


@pytest.mark.parametrize(
    ("reason", "expected"),
    [
        (ReasonFact(frozenset({"invasive-breast-cancer"}), "Breast cancer"), "warn"),
        (ReasonFact(frozenset({"surveillance-encounter"}), "Z08"), "warn"),
        (ReasonFact(frozenset(), "Routine follow-up, history of breast cancer"), "warn"),
        (ReasonFact(frozenset(), "Pulmonary nodule"), "silent"),
        (ReasonFact(frozenset(), "Follow up; new back pain"), "silent"),
        (ReasonFact(frozenset(), ""), "silent"),
        (ReasonFact(frozenset({"metastatic-disease"}), "Bone metastases"), "silent"),
    ],
)
def test_order_reasons(knowledge: Knowledge, reason: ReasonFact, expected: str) -> None:
    assert verdict(SURVIVOR, knowledge, _pet_with(reason))[0] == expected


def test_surveillance_reason_is_noted_on_the_finding(knowledge: Knowledge) -> None:
    order = _pet_with(ReasonFact(frozenset({"surveillance-encounter"}), "Z08"))
    assert evaluate(SURVIVOR, [order], knowledge, TODAY)[0].surveillance_reason


def test_reason_reference_we_cannot_read_silences(knowledge: Knowledge) -> None:
    order = _pet_with(refs=("Condition/not-in-the-record",))
    assert verdict(SURVIVOR, knowledge, order) == ("silent", "order-reason:not-surveillance")
    order = _pet_with(refs=("Observation/some-finding",))
    assert verdict(SURVIVOR, knowledge, order)[0] == "silent"
