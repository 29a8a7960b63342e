"""The appropriateness rating written onto the draft order (Argonaut CDS Hooks for PAMA): where
the criteria speak, in the shape the Argonaut example has, and nowhere else."""

from __future__ import annotations

from typing import Any

from fhir.resources.R4B import get_fhir_model_class
from flask.testing import FlaskClient

from .card_requests import NS, PAMA, SELECT, post, request_of
from .conformance import ratings
from .conftest import external, load_json
from .test_interop import seed


def test_seed_rating_written_back_in_both_locations(client: FlaskClient) -> None:
    body = post(client, request_of("seed-pet-ct"))
    order = body["cards"][0]["extension"][NS]["order"]
    assert ratings(body) == {order: "not-appropriate"}
    [action] = body["systemActions"]
    assert action["type"] == "update" and action["description"]
    resource = action["resource"]
    by_url = {e["url"]: e for e in resource["extension"]}
    consult = by_url[PAMA + "pama-rating-consult-id"]["valueUri"]
    assert consult.startswith("urn:uuid:")
    assert body["cards"][0]["extension"][NS]["consultId"] == consult
    assert by_url[PAMA + "pama-rating-auc-applied"]["valueUri"].startswith(
        "https://acsearch.acr.org"
    )
    get_fhir_model_class("ServiceRequest").model_validate(resource)
    # Nothing but the extensions changed (the guide: MUST NOT make any semantic change).
    draft = next(
        e["resource"]
        for e in request_of("seed-pet-ct")["context"]["draftOrders"]["entry"]
        if f"ServiceRequest/{e['resource']['id']}" == order
    )
    assert {k: v for k, v in resource.items() if k != "extension"} == {
        k: v for k, v in draft.items() if k != "extension"
    }


def test_symptomatic_order_gets_no_not_appropriate_rating(client: FlaskClient) -> None:
    body = post(client, request_of("new-bone-pain-pet-ct"))
    assert [c["indicator"] for c in body["cards"]] == ["info"]
    assert set(ratings(body).values()) == {"no-criteria-apply"}


def test_rating_shape_matches_the_argonaut_example(client: FlaskClient) -> None:
    example = load_json(external("requests/argonaut-pama-scenario-01-rating-response.json"))
    theirs = example["extension"]["systemActions"][0]
    ours = post(client, request_of("seed-pet-ct"))["extension"]["systemActions"][0]
    assert ours["type"] == theirs["type"] == "update"

    def rating(action: dict[str, Any]) -> dict[str, Any]:
        [ext] = [e for e in action["resource"]["extension"] if e["url"].endswith("/pama-rating")]
        return ext

    assert rating(ours)["url"] == rating(theirs)["url"]
    ours_coding = rating(ours)["valueCodeableConcept"]["coding"][0]
    theirs_coding = rating(theirs)["valueCodeableConcept"]["coding"][0]
    assert ours_coding["system"] == theirs_coding["system"]
    assert ours_coding["code"] in {"appropriate", "not-appropriate", "no-criteria-apply"}


def test_no_rating_on_a_mammogram_for_a_breast_cancer_patient(client: FlaskClient) -> None:
    """The sandbox's PAMA screen (cds-hooks/sandbox @3b7e255, captured in
    sandbox-captured-order-select-ServiceRequest-mammography-breast-cancer.json): a
    mammography order (LOINC 24606-6) for a breast-cancer patient. Variant 10 does not rate
    mammography: no system action (it used to be rated no-criteria-apply, with auc-applied)."""
    body = load_json(
        external(
            "requests/sandbox-captured-order-select-ServiceRequest-mammography-breast-cancer.json"
        )
    )
    response = client.post(SELECT, json=body)
    assert response.status_code == 200
    assert "systemActions" not in response.get_json()
    assert "extension" not in response.get_json()


def test_rating_only_on_the_orders_the_criteria_rate(client: FlaskClient) -> None:
    """Argonaut PAMA scenario 01 (argonautproject/cds-hooks-for-pama @36a3db1): a lumbar MRI
    for low back pain. Not a study the breast-cancer topic rates: no system action at all."""
    body = load_json(external("requests/argonaut-pama-scenario-01-outbound-request.json"))
    response = client.post(SELECT, json=body)
    assert response.status_code == 200
    assert "systemActions" not in response.get_json()


def test_warning_rating_carries_auc_applied(client: FlaskClient) -> None:
    body = client.post(SELECT, json=seed()).get_json()
    [action] = body["systemActions"]
    urls = {e["url"]: e for e in action["resource"]["extension"]}
    assert urls[PAMA + "pama-rating"]["valueCodeableConcept"]["coding"][0]["code"] == (
        "not-appropriate"
    )
    assert PAMA + "pama-rating-auc-applied" in urls


def test_no_criteria_apply_has_no_auc_applied(client: FlaskClient) -> None:
    """A survivor whose order is a work-up: rated no-criteria-apply, no auc-applied."""
    body = seed()
    order = body["context"]["draftOrders"]["entry"][0]["resource"]
    order["priority"] = "stat"  # urgent: not routine surveillance
    answer = client.post(SELECT, json=body).get_json()
    assert answer["cards"] == []
    [action] = answer["systemActions"]
    urls = {e["url"] for e in action["resource"]["extension"]}
    assert ratings(answer) == {"ServiceRequest/seed-pet-ct-order-1": "no-criteria-apply"}
    assert PAMA + "pama-rating-auc-applied" not in urls


def test_no_rating_for_a_patient_without_invasive_breast_cancer(client: FlaskClient) -> None:
    body = seed()
    body["prefetch"]["conditions"] = {"resourceType": "Bundle", "type": "searchset", "total": 0}
    answer = client.post(SELECT, json=body).get_json()
    assert answer == {"cards": []}
