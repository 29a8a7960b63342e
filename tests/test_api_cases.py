"""Every clinical fixture through the HTTP API: expected cards, and a conformant response."""

from __future__ import annotations

from typing import Any

import pytest
from flask.testing import FlaskClient
from markdown_it import MarkdownIt

from .conformance import assert_conformant, ratings
from .conftest import CASES_DOC, SERVICE_FOR_HOOK, case_request

PAMA = "http://fhir.org/argonaut/Extension/"

CASES = CASES_DOC["cases"]


def card_key(card: dict[str, Any]) -> tuple[str, str, str]:
    ext = card["extension"]["org.example.breast-surveillance-cds"]
    return card["indicator"], ext["study"], ext["order"]


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_case(client: FlaskClient, case: dict[str, Any]) -> None:
    request = case_request(case)
    response = client.post(f"/cds-services/{SERVICE_FOR_HOOK[request['hook']]}", json=request)
    assert response.status_code == 200, response.get_data(as_text=True)
    body = response.get_json()
    assert_conformant(body)
    expected = sorted((c["indicator"], c["study"], c["order"]) for c in case["expect"]["cards"])
    got = sorted(card_key(card) for card in body["cards"])
    assert got == expected, f"{case['name']}: {case['reason']}"
    # The rating written back agrees: not-appropriate exactly on the warned orders, and only
    # the orders the criteria speak about are rated at all (README "The rating on the order").
    warned = {order for indicator, _, order in expected if indicator == "warning"}
    rated_not = {order for order, code in ratings(body).items() if code == "not-appropriate"}
    assert rated_not == warned
    assert ratings(body) == case["expect"]["ratings"], case["name"]
    for action in body.get("systemActions", []):
        urls = {e["url"] for e in action["resource"]["extension"]}
        applied = PAMA + "pama-rating-auc-applied" in urls
        reference = f"{action['resource']['resourceType']}/{action['resource']['id']}"
        assert applied == (reference in warned), "auc-applied only where the criteria applied"


def test_there_are_enough_cases() -> None:
    assert len(CASES) >= 40
    assert len({c["name"] for c in CASES}) == len(CASES)


def test_seed_returns_one_warning_for_the_pet_ct(client: FlaskClient) -> None:
    case = next(c for c in CASES if c["name"] == "seed-pet-ct")
    body = client.post(
        "/cds-services/breast-surveillance-order-select", json=case_request(case)
    ).get_json()
    [card] = body["cards"]
    assert card["indicator"] == "warning"
    assert "PET" in card["summary"]
    assert "Usually Not Appropriate" in card["detail"]
    assert "☢☢☢☢" in card["detail"] and "10-30 mSv" in card["detail"]
    for phrase in ("cascade", "survival", "mammograph", "symptom"):
        assert phrase in card["detail"].lower()
    assert card["source"]["url"].startswith("https://")


def test_card_markdown_renders_as_gfm(client: FlaskClient) -> None:
    md = MarkdownIt("commonmark").enable(["table", "strikethrough"])
    for case in CASES:
        body = client.post(
            f"/cds-services/{SERVICE_FOR_HOOK[case_request(case)['hook']]}", json=case_request(case)
        ).get_json()
        for card in body["cards"]:
            html = md.render(card["detail"])
            assert "<strong>" in html and "**" not in html, card["detail"]


def test_verdict_is_the_same_for_order_select_and_order_sign(client: FlaskClient) -> None:
    case = next(c for c in CASES if c["name"] == "seed-pet-ct")
    select = case_request(case)
    sign = {
        **select,
        "hook": "order-sign",
        "context": {k: v for k, v in select["context"].items() if k != "selections"},
    }
    a = client.post("/cds-services/breast-surveillance-order-select", json=select).get_json()
    b = client.post("/cds-services/breast-surveillance-order-sign", json=sign).get_json()
    assert [card_key(c) for c in a["cards"]] == [card_key(c) for c in b["cards"]]
