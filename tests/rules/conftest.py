"""Shared facts for the rules tests: ``today`` fixed, a survivor, a PET/CT order, the mappings,
and the order-select service for the tests that go through the app."""

from __future__ import annotations

from datetime import date, timedelta

import pytest

from cds_service.facts import ConditionFact, OrderFact, PatientFacts, ProcedureFact
from cds_service.mappings import Knowledge, load_dir
from cds_service.rules import REQUIRED_CONCEPTS, WARNING_ENABLERS, evaluate

from ..conftest import MAPPINGS

SELECT = "/cds-services/breast-surveillance-order-select"
TODAY = date(2026, 11, 25)


def ago(days: int) -> date:
    return TODAY - timedelta(days=days)


@pytest.fixture(scope="module")
def knowledge() -> Knowledge:
    return load_dir(MAPPINGS, REQUIRED_CONCEPTS, WARNING_ENABLERS)


def cancer(**kw: object) -> ConditionFact:
    base: dict[str, object] = {
        "id": "bc",
        "concepts": frozenset({"invasive-breast-cancer"}),
        "label": "Infiltrating duct carcinoma of breast",
        "clinical_status": "remission",
        "onset": ago(5 * 365),
    }
    base.update(kw)
    return ConditionFact(**base)  # type: ignore[arg-type]


def condition(concept: str, **kw: object) -> ConditionFact:
    base: dict[str, object] = {
        "id": concept,
        "concepts": frozenset({concept}),
        "label": concept,
        "clinical_status": "active",
    }
    base.update(kw)
    return ConditionFact(**base)  # type: ignore[arg-type]


LUMPECTOMY = ProcedureFact(
    "px", frozenset({"breast-surgery"}), "Lumpectomy", "completed", ago(5 * 365 - 30)
)
SURVIVOR = PatientFacts(conditions=(cancer(),), procedures=(LUMPECTOMY,))
PET_CT = OrderFact("ServiceRequest/pet", "ServiceRequest", frozenset({"pet-ct"}), "PET/CT")


def verdict(
    facts: PatientFacts, knowledge: Knowledge, order: OrderFact = PET_CT
) -> tuple[str, str]:
    finding = evaluate(facts, [order], knowledge, TODAY)[0]
    return finding.verdict, finding.reason


def with_conditions(*extra: ConditionFact) -> PatientFacts:
    return PatientFacts(conditions=(cancer(), *extra), procedures=(LUMPECTOMY,))
