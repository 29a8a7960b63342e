"""Requests others wrote (../shared/external/requests): real clients must get a 200."""

from __future__ import annotations

from typing import Any

import pytest
from flask.testing import FlaskClient

from .conformance import assert_conformant, assert_no_card
from .conftest import SERVICE_FOR_HOOK, external, load_json

CAPTURES = [
    "sandbox-captured-order-select-ServiceRequest.json",
    "sandbox-captured-order-select-ServiceRequest-mammography-breast-cancer.json",
    "sandbox-captured-order-select-MedicationRequest.json",
    "sandbox-captured-order-sign-MedicationRequest.json",
    "argonaut-pama-scenario-01-outbound-request.json",
    "argonaut-pama-scenario-02-outbound-request.json",
    "davinci-crd-r4-ordersign-requestWithHydratedPrefetchBundle.json",
]


@pytest.mark.parametrize("name", CAPTURES)
def test_real_requests_get_200_and_no_card(client: FlaskClient, name: str) -> None:
    """None of these orders is Variant 10 imaging (MRA chest, lumbar CT, CTA chest, mammography,
    medications, a device): each is answered without reading the record, with no card."""
    body = load_json(external(f"requests/{name}"))
    response = client.post(f"/cds-services/{SERVICE_FOR_HOOK[body['hook']]}", json=body)
    assert response.status_code == 200, response.get_data(as_text=True)
    assert_conformant(response.get_json())
    assert_no_card(response.get_json())


@pytest.mark.parametrize(
    ("name", "hook"),
    [
        ("cds-hooks-docs-order-select-r4-context.json", "order-select"),
        ("cds-hooks-docs-order-sign-r4-context.json", "order-sign"),
    ],
)
def test_spec_example_contexts(client: FlaskClient, name: str, hook: str) -> None:
    context = load_json(external(f"requests/{name}"))["context"]
    body: dict[str, Any] = {
        "hook": hook,
        "hookInstance": "0b3f5a8e-1f6c-4b8a-9d0e-5a2c7f3e9b10",
        "context": context,
    }
    response = client.post(f"/cds-services/{SERVICE_FOR_HOOK[hook]}", json=body)
    assert response.status_code == 200
    assert_no_card(response.get_json())


@pytest.mark.parametrize(
    "name", ["codex-ocpa-ExampleOrderSelectBundle.json", "codex-ocpa-ExampleOrderSignBundle.json"]
)
def test_chemotherapy_regimen_draft_orders(client: FlaskClient, name: str) -> None:
    bundle = load_json(external(f"requests/{name}"))
    body = {
        "hook": "order-sign",
        "hookInstance": "5f1f7f0c-7a9b-4f9e-8c55-0e4f7b1f2a3d",
        "context": {"userId": "Practitioner/1", "patientId": "p1", "draftOrders": bundle},
    }
    response = client.post("/cds-services/breast-surveillance-order-sign", json=body)
    assert response.status_code == 200
    assert_no_card(response.get_json())


def test_patient_view_capture_is_refused_with_outcome(client: FlaskClient) -> None:
    body = load_json(external("requests/sandbox-captured-patient-view-none.json"))
    response = client.post("/cds-services/breast-surveillance-order-select", json=body)
    assert response.status_code == 400
    assert response.get_json()["issue"][0]["expression"] == ["hook"]
