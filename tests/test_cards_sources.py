"""What every card points to: its source, the guideline links (chosen by role), the guidance
page and the handout at the caller's own address, and the override reasons offered."""

from __future__ import annotations

from fhir.resources.R4B import get_fhir_model_class
from flask.testing import FlaskClient

from .card_requests import SELECT, post, request_of


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


def test_public_base_url_setting_wins() -> None:
    from cds_service import create_app

    app = create_app({"today": "2026-11-25", "public_base_url": "https://cds.hospital.org/"})
    body = app.test_client().post(SELECT, json=request_of("seed-pet-ct")).get_json()
    assert body["cards"][0]["overrideReasons"][0]["system"] == (
        "https://cds.hospital.org/CodeSystem/override-reason"
    )


def test_links_follow_the_host_of_each_call(client: FlaskClient) -> None:
    """The base URL the cards link to is remembered per host, never carried over to another."""
    body = request_of("seed-pet-ct")
    for base in ("https://a.example.org", "http://b.example.org:8080", "https://a.example.org"):
        card = client.post(SELECT, json=body, base_url=base).get_json()["cards"][0]
        assert base + "/handouts/breast-surveillance" in [link["url"] for link in card["links"]]
        assert {r["system"] for r in card["overrideReasons"]} == {
            base + "/CodeSystem/override-reason"
        }


def test_override_code_system_is_served(client: FlaskClient) -> None:
    response = client.get("/CodeSystem/override-reason", base_url="https://cds.example.org")
    assert response.status_code == 200
    body = response.get_json(force=True)
    get_fhir_model_class("CodeSystem").model_validate(body)
    assert body["url"] == "https://cds.example.org/CodeSystem/override-reason"
    assert len(body["concept"]) >= 5
