"""Discovery: two services, legal and narrow prefetch templates derived from the mappings."""

from __future__ import annotations

import re

from flask import Flask
from flask.testing import FlaskClient

from cds_service import rules

from .conformance import assert_no_empty

LEGAL_TOKEN = re.compile(r"\{\{(context\.(patientId|userId|encounterId)|userPractitionerId)\}\}")


def test_discovery_lists_one_service_per_hook(client: FlaskClient) -> None:
    response = client.get("/cds-services")
    assert response.status_code == 200
    body = response.get_json()
    assert_no_empty(body)
    services = body["services"]
    assert sorted(s["hook"] for s in services) == ["order-select", "order-sign"]
    for service in services:
        assert set(service) == {
            "hook",
            "id",
            "title",
            "description",
            "usageRequirements",
            "prefetch",
            "extension",
        }
        options = service["extension"]["org.example.breast-surveillance-cds.configuration-options"]
        assert {o["code"] for o in options} >= {"warnings", "max-cards"}
        assert all(o["type"] in {"boolean", "integer"} and "default" in o for o in options)
        for template in service["prefetch"].values():
            tokens = re.findall(r"\{\{[^}]*\}\}", template)
            assert tokens and all(LEGAL_TOKEN.fullmatch(t) for t in tokens), template


def _expected(app: Flask, concepts: list[str], systems: list[str]) -> set[str]:
    code_map = app.extensions["cds_service"].knowledge.codes
    return {f"{s}|{c}" for concept in concepts for s, c in code_map.codes_of(concept, systems)}


def _codes(template: str) -> set[str]:
    return set(template.split("&code=", 1)[1].split(","))


def test_observation_template_lists_exactly_the_codes_the_rules_read(app: Flask) -> None:
    prefetch = app.extensions["cds_service"].services["breast-surveillance-order-sign"].prefetch
    wanted = _expected(
        app,
        [
            *rules.LABS,
            rules.STAGE_GROUP,
            rules.M_CATEGORY,
            *rules.STAGE_OBSERVATIONS,
            rules.DISEASE_STATUS,
            *rules.SYMPTOMS,
        ],
        ["http://loinc.org", "http://snomed.info/sct"],
    )
    assert _codes(prefetch["observations"]) == wanted
    assert _codes(prefetch["procedures"]) == _expected(
        app,
        [rules.SURGERY, rules.CHEMOTHERAPY, rules.MAMMOGRAPHY],
        ["http://snomed.info/sct", "http://www.ama-assn.org/go/cpt"],
    )
    everything = ["http://loinc.org", "http://www.ama-assn.org/go/cpt", "http://www.radlex.org"]
    everything.append("http://snomed.info/sct")
    for key in ("mammogramReports", "mammogramOrders"):
        assert _codes(prefetch[key]) == _expected(app, [rules.MAMMOGRAPHY], everything)
    assert _codes(prefetch["medications"]) == _expected(
        app,
        [rules.ENDOCRINE, rules.FULVESTRANT, *rules.SYSTEMIC_THERAPY],
        ["http://www.nlm.nih.gov/research/umls/rxnorm"],
    )
