"""What every card points to: its source, the guideline links (chosen by role), the guidance
page and the handout at the caller's own address, and the override reasons offered."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from fhir.resources.R4B import get_fhir_model_class
from flask.testing import FlaskClient

from cds_service import create_app
from cds_service.errors import MappingError
from cds_service.mappings import load_dir
from cds_service.rules import REQUIRED_CONCEPTS

from .card_requests import SELECT, mappings_with, post, request_of
from .conftest import SERVICE_FOR_HOOK, TODAY


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


def _cards(client: FlaskClient, name: str) -> list[dict[str, Any]]:
    body = request_of(name)
    response = client.post(f"/cds-services/{SERVICE_FOR_HOOK[body['hook']]}", json=body)
    cards: list[dict[str, Any]] = response.get_json()["cards"]
    return cards


def test_guideline_links_are_chosen_by_role_not_position(
    tmp_path: Path, client: FlaskClient
) -> None:
    """The information cards name the sources their role says, whatever the file's order."""
    reordered = mappings_with(tmp_path, "acr-variant-10.json", lambda doc: doc["links"].reverse())
    other = create_app({"today": TODAY, "mappings_dir": str(reordered)}).test_client()
    for name in ("tumor-marker-cea", "new-bone-pain-pet-ct"):
        [card] = _cards(client, name)
        [same] = _cards(other, name)
        assert card["source"] == same["source"]
        assert {link["url"] for link in card["links"]} == {link["url"] for link in same["links"]}
    [marker] = _cards(client, "tumor-marker-cea")
    assert "PMC3545667" in marker["source"]["url"]  # ASCO, the role "asco-follow-up"
    assert not any("acsearch.acr.org" in link["url"] for link in marker["links"])


def test_a_guideline_file_without_a_link_role_stops_start_up(tmp_path: Path) -> None:
    folder = mappings_with(tmp_path, "acr-variant-10.json", lambda doc: doc["links"].pop())
    with pytest.raises(MappingError, match="one link per role"):
        load_dir(folder, REQUIRED_CONCEPTS)
