"""Issue 7: the verdict written onto the order, the better order offered, the evidence shown."""

from __future__ import annotations

import copy
import os
import uuid
from typing import Any

from fhir.resources.R4B import get_fhir_model_class
from flask.testing import FlaskClient

from cds_service.cards import new_uuid

from .conformance import assert_conformant, ratings
from .conftest import CASES_DOC, FIXTURES, external, load_json

NS = "org.example.breast-surveillance-cds"  # cards' extension key

SELECT = "/cds-services/breast-surveillance-order-select"
PAMA = "http://fhir.org/argonaut/Extension/"


def request_of(name: str) -> dict[str, Any]:
    case = next(c for c in CASES_DOC["cases"] if c["name"] == name)
    body: dict[str, Any] = load_json(FIXTURES / case["request"])
    return body


def without_mammograms(body: dict[str, Any]) -> dict[str, Any]:
    body = copy.deepcopy(body)
    entries = body["prefetch"]["procedures"].get("entry", [])
    body["prefetch"]["procedures"]["entry"] = [
        e for e in entries if "ammogra" not in str(e["resource"].get("code"))
    ]
    return body


def post(client: FlaskClient, body: dict[str, Any]) -> dict[str, Any]:
    response = client.post(SELECT, json=body, base_url="https://cds.example.org")
    assert response.status_code == 200, response.get_data(as_text=True)
    result: dict[str, Any] = response.get_json()
    assert_conformant(result)
    return result


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


def test_evidence_links_and_counselling(client: FlaskClient) -> None:
    card = post(client, request_of("seed-pet-ct"))["cards"][0]
    urls = [link["url"] for link in card["links"]]
    assert any("acsearch.acr.org" in u for u in urls)
    assert any("PMC3545667" in u for u in urls)  # ASCO
    assert any("PMC4311189" in u for u in urls)  # Choosing Wisely
    assert "https://cds.example.org/handouts/breast-surveillance" in urls
    # Counselling moved off the card (issue 18) to the guidance page it links to.
    page = "https://cds.example.org/guidance/surveillance-imaging#pet-ct"
    assert page in urls and page in card["detail"]
    assert "Talking with a patient who asks for a scan" in client.get(
        "/guidance/surveillance-imaging"
    ).get_data(as_text=True)
    assert card["source"]["topic"]["code"]


def test_handout_is_a_phone_friendly_page(client: FlaskClient) -> None:
    response = client.get("/handouts/breast-surveillance")
    assert response.status_code == 200 and response.mimetype == "text/html"
    html = response.get_data(as_text=True)
    assert 'name="viewport"' in html and "mammogram" in html and "@media print" in html
    assert "<script" not in html and "http://" not in html.split("<footer>")[0]


def test_override_code_system_is_served(client: FlaskClient) -> None:
    response = client.get("/CodeSystem/override-reason", base_url="https://cds.example.org")
    assert response.status_code == 200
    body = response.get_json(force=True)
    get_fhir_model_class("CodeSystem").model_validate(body)
    assert body["url"] == "https://cds.example.org/CodeSystem/override-reason"
    assert len(body["concept"]) >= 5


def test_public_base_url_setting_wins() -> None:
    from cds_service import create_app

    app = create_app({"today": "2026-11-25", "public_base_url": "https://cds.hospital.org/"})
    body = app.test_client().post(SELECT, json=request_of("seed-pet-ct")).get_json()
    assert body["cards"][0]["overrideReasons"][0]["system"] == (
        "https://cds.hospital.org/CodeSystem/override-reason"
    )


def test_card_uuids_are_version_4_and_differ_across_forked_workers() -> None:
    """Card uuids come from a buffer of random bytes: a forked gunicorn worker must not hand
    out the ids its parent (or a sibling) will."""
    first = new_uuid()
    assert uuid.UUID(first).version == 4
    read, write = os.pipe()
    child = os.fork()
    if child == 0:  # the child: its next id, through the pipe
        try:
            os.write(write, new_uuid().encode())
        finally:
            os._exit(0)
    os.close(write)
    os.waitpid(child, 0)
    from_child = os.read(read, 64).decode()
    os.close(read)
    ours = new_uuid()
    assert from_child and from_child != ours
    assert len({first, ours, from_child}) == 3


def test_links_follow_the_host_of_each_call(client: FlaskClient) -> None:
    """The base URL the cards link to is remembered per host, never carried over to another."""
    body = request_of("seed-pet-ct")
    for base in ("https://a.example.org", "http://b.example.org:8080", "https://a.example.org"):
        card = client.post(SELECT, json=body, base_url=base).get_json()["cards"][0]
        assert base + "/handouts/breast-surveillance" in [link["url"] for link in card["links"]]
        assert {r["system"] for r in card["overrideReasons"]} == {
            base + "/CodeSystem/override-reason"
        }
