"""Reading a patient record (fhir/reader.py): what a resource's words make of it, seen in the
evidence a verdict names."""

from __future__ import annotations

from datetime import date
from typing import Any

from cds_service.fhir import build_facts, bundle_resources, parse_orders
from cds_service.rules import assess_patient

from .rules.test_false_warnings import seed
from .test_recall_words import SILENCED


def test_the_silence_names_its_evidence(app: Any) -> None:
    """The verdict's exclusion names the record and the phrase of ours that matched (never
    the chart's own words in the audit)."""
    body = seed()
    SILENCED["local-metastatic-to-bone"](body)
    knowledge = app.extensions["cds_service"].knowledge
    resources = {k: list(bundle_resources(v)) for k, v in body["prefetch"].items() if v}
    facts = build_facts(resources, knowledge)
    assert parse_orders(body["context"]["draftOrders"], None, knowledge.codes)
    patient = assess_patient(facts, date(2026, 11, 25))
    [metastatic] = [e for e in patient.exclusions if e.code == "metastatic-disease"]
    assert metastatic.evidence is not None
    assert metastatic.evidence.kind == "Condition"
    assert metastatic.evidence.how == "words 'METASTA'"
