"""Real Synthea records (../shared/external/synthea): no false warning, and parsed without error."""

from __future__ import annotations

from datetime import date
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from cds_service.fhir import build_facts, bundle_resources, count_invalid, parse_orders
from cds_service.rules import evaluate

from .conformance import assert_no_card
from .conftest import EXTERNAL, external, load_json

FILES = {
    "Joie_Morissette_c47db034-eb1c-4100-9448-4d4b3cb6535c.json": "no-invasive-breast-cancer",
    "Rachael_McDermott_e9e965ba-8c43-4020-b728-f8e28d507661.json": "no-invasive-breast-cancer",
    "Freda_OConnell_00347da0-395c-40ed-ae52-96f1587480b5.json": "no-invasive-breast-cancer",
    "Dulcie_Dooley_753d9863.json": "stage-iv",
}
KEYS = {
    "Patient": "patient",
    "Condition": "conditions",
    "Observation": "observations",
    "Procedure": "procedures",
    "MedicationRequest": "medications",
}


def as_request(bundle: dict[str, Any]) -> dict[str, Any]:
    """The whole record as prefetch (a superset of what the templates ask for)."""
    groups: dict[str, list[dict[str, Any]]] = {key: [] for key in KEYS.values()}
    patient_id = ""
    for resource in bundle_resources(bundle):
        key = KEYS.get(str(resource.get("resourceType")))
        if key:
            groups[key].append(dict(resource))
        if resource.get("resourceType") == "Patient":
            patient_id = str(resource["id"])
    prefetch: dict[str, Any] = {
        key: {
            "resourceType": "Bundle",
            "type": "searchset",
            "entry": [{"resource": r} for r in items],
        }
        for key, items in groups.items()
        if key != "patient"
    }
    prefetch["patient"] = groups["patient"][0]
    order = {
        "resourceType": "ServiceRequest",
        "id": "pet",
        "status": "draft",
        "intent": "order",
        "subject": {"reference": f"Patient/{patient_id}"},
        "code": {"coding": [{"system": "http://www.ama-assn.org/go/cpt", "code": "78815"}]},
    }
    return {
        "hook": "order-select",
        "hookInstance": "6b0c4a8e-8f7e-4a7b-9f55-1d2f3e4a5b6c",
        "context": {
            "userId": "Practitioner/1",
            "patientId": patient_id,
            "selections": ["ServiceRequest/pet"],
            "draftOrders": {"resourceType": "Bundle", "entry": [{"resource": order}]},
        },
        "prefetch": prefetch,
    }


@pytest.mark.parametrize(("name", "reason"), FILES.items(), ids=list(FILES))
def test_synthea_pet_ct_gives_no_card(
    app: Flask, client: FlaskClient, name: str, reason: str
) -> None:
    bundle = load_json(external(f"synthea/{name}"))
    request = as_request(bundle)
    response = client.post("/cds-services/breast-surveillance-order-select", json=request)
    assert response.status_code == 200
    assert_no_card(response.get_json())
    # And the reason is the right one (explainability, without PHI).
    knowledge = app.extensions["cds_service"].knowledge
    resources = {
        key: list(bundle_resources(value)) if isinstance(value, dict) else []
        for key, value in request["prefetch"].items()
    }
    facts = build_facts(resources, knowledge)
    orders = parse_orders(
        request["context"]["draftOrders"], ["ServiceRequest/pet"], knowledge.codes
    )
    [finding] = evaluate(facts, orders, knowledge, date(2026, 11, 25))
    assert finding.reason == reason
    record = [r for items in resources.values() for r in items]
    assert count_invalid(record) == 0, "Synthea resources are valid R4 and must parse"


def test_synthea_folder_note() -> None:
    if not EXTERNAL.exists():
        pytest.skip(f"{EXTERNAL} is absent")
    assert {p.name for p in (EXTERNAL / "synthea").glob("*.json")} >= set(FILES)
