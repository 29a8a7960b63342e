"""The warning card's suggestions: remove the order, order a mammogram instead (only when none
is on record or among the drafts), nothing to remove for an order without an id."""

from __future__ import annotations

from fhir.resources.R4B import get_fhir_model_class
from flask.testing import FlaskClient

from .card_requests import NS, post, request_of, without_mammograms
from .test_interop import SIGN, as_sign, seed


def test_removal_suggestion_and_override_reasons(client: FlaskClient) -> None:
    card = post(client, request_of("seed-pet-ct"))["cards"][0]
    assert card["selectionBehavior"] == "at-most-one"
    remove = card["suggestions"][0]
    assert remove["isRecommended"] is True and remove["uuid"]
    [action] = remove["actions"]
    order = card["extension"][NS]["order"]
    assert action == {"type": "delete", "description": action["description"], "resourceId": order}
    reasons = card["overrideReasons"]
    assert len(reasons) >= 4
    assert {r["system"] for r in reasons} == {"https://cds.example.org/CodeSystem/override-reason"}
    assert {"symptoms-not-documented", "shared-decision", "snooze-6-months"} <= {
        r["code"] for r in reasons
    }


def test_mammogram_offered_only_when_none_in_the_last_year(client: FlaskClient) -> None:
    with_history = post(client, request_of("seed-pet-ct"))["cards"][0]
    assert [s["label"] for s in with_history["suggestions"]][1:] == []
    card = post(client, without_mammograms(request_of("seed-pet-ct")))["cards"][0]
    offer = card["suggestions"][1]
    kinds = [a["type"] for a in offer["actions"]]
    assert kinds == ["delete", "create"]
    created = offer["actions"][1]["resource"]
    get_fhir_model_class("ServiceRequest").model_validate(created)
    codes = {(c["system"], c["code"]) for c in created["code"]["coding"]}
    assert codes == {("http://www.ama-assn.org/go/cpt", "77067"), ("http://loinc.org", "24606-6")}
    assert all(c["display"] for c in created["code"]["coding"]) and created["code"]["text"]
    assert created["subject"]["reference"].endswith(
        request_of("seed-pet-ct")["context"]["patientId"]
    )


def test_no_mammogram_offered_when_one_is_among_the_drafts(client: FlaskClient) -> None:
    body = without_mammograms(request_of("select-pet-ct-unselected-mammogram"))
    card = post(client, body)["cards"][0]
    assert len(card["suggestions"]) == 1


def test_no_mammogram_offered_after_bilateral_mastectomy(client: FlaskClient) -> None:
    body = without_mammograms(request_of("seed-pet-ct"))
    body["prefetch"]["conditions"]["entry"].append(
        {
            "resource": {
                "resourceType": "Condition",
                "id": "z90-13",
                "subject": {"reference": f"Patient/{body['context']['patientId']}"},
                "code": {
                    "coding": [{"system": "http://hl7.org/fhir/sid/icd-10-cm", "code": "Z90.13"}]
                },
                "recordedDate": "2021-09-01",
            }
        }
    )
    assert len(post(client, body)["cards"][0]["suggestions"]) == 1


def test_draft_order_without_id_says_no_removal_is_offered(client: FlaskClient) -> None:
    body = as_sign(seed())
    del body["context"]["draftOrders"]["entry"][0]["resource"]["id"]
    response = client.post(SIGN, json=body)
    assert response.status_code == 200
    [card] = response.get_json()["cards"]
    assert "without an id" in card["detail"]
    assert "suggestions" not in card or all(
        a["type"] != "delete" for s in card["suggestions"] for a in s.get("actions", [])
    )
