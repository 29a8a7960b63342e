"""Draft orders as real EHR clients send them (fhir/orders.py): the selection forms that name a
draft order, a selection naming nothing, an order of an earlier FHIR version.

Each test names the public source of the shape it sends (moved from test_interop.py, issue 17).
"""

from __future__ import annotations

import pytest
from flask.testing import FlaskClient

from .test_interop import NS, SELECT, SIGN, as_sign, seed

# --- selections in the forms clients send ------------------------------------------------


@pytest.mark.parametrize(
    ("full_url", "selection"),
    [
        # Type/id: the hook's own definition (HL7/cds-hooks-library order-select.md).
        (None, "ServiceRequest/seed-pet-ct-order-1"),
        # The entry's fullUrl as urn:uuid (transaction-style Bundles, FHIR R4 bundle.html).
        (
            "urn:uuid:5e0d5c1c-3b0b-4c5e-9a57-0c0f1d7c7d11",
            "urn:uuid:5e0d5c1c-3b0b-4c5e-9a57-0c0f1d7c7d11",
        ),
        # An absolute [base]/Type/id fullUrl, as reason-healthcare/hl7-codex-ocpa's draftOrders
        # Bundles carry (codex-ocpa-ExampleOrderSelectBundle.json), given as the selection.
        (
            "https://ehr.example.org/fhir/ServiceRequest/seed-pet-ct-order-1",
            "https://ehr.example.org/fhir/ServiceRequest/seed-pet-ct-order-1",
        ),
        # An absolute selection while the entry has no fullUrl.
        (None, "https://ehr.example.org/fhir/ServiceRequest/seed-pet-ct-order-1/_history/1"),
    ],
)
def test_selection_forms_match_the_draft_order(
    client: FlaskClient, full_url: str | None, selection: str
) -> None:
    body = seed()
    if full_url:
        body["context"]["draftOrders"]["entry"][0]["fullUrl"] = full_url
    body["context"]["selections"] = [selection]
    response = client.post(SELECT, json=body)
    assert response.status_code == 200, response.get_data(as_text=True)
    [card] = response.get_json()["cards"]
    assert card["extension"][NS]["order"] == "ServiceRequest/seed-pet-ct-order-1"


@pytest.mark.parametrize(
    "selection",
    ["ServiceRequest/not-in-draft-orders", "urn:uuid:00000000-0000-4000-8000-000000000000"],
)
def test_selection_naming_nothing_is_a_400(client: FlaskClient, selection: str) -> None:
    body = seed()
    body["context"]["selections"] = ["ServiceRequest/seed-pet-ct-order-1", selection]
    response = client.post(SELECT, json=body)
    assert response.status_code == 400
    assert response.get_json()["issue"][0]["expression"] == ["context.selections[1]"]


# --- an order of an earlier FHIR version -------------------------------------------------


def test_stu3_procedure_request_is_a_clear_400(client: FlaskClient) -> None:
    """HL7/cds-hooks-library order-select "Example (STU3)" uses ProcedureRequest."""
    body = as_sign(seed())
    order = body["context"]["draftOrders"]["entry"][0]["resource"]
    order["resourceType"] = "ProcedureRequest"
    response = client.post(SIGN, json=body)
    assert response.status_code == 400
    issue = response.get_json()["issue"][0]
    assert "ProcedureRequest" in issue["diagnostics"]
    assert issue["expression"] == ["context.draftOrders.entry[0].resource.resourceType"]
