"""pipeline.decide called directly, with no Flask request: the same decision as the HTTP route."""

from __future__ import annotations

from datetime import date
from typing import Any

import pytest
from flask import Flask, has_request_context

from cds_service.hooks import parse_request
from cds_service.pipeline import Decision, decide
from cds_service.policy import parse_client_options
from cds_service.rules import Windows
from cds_service.state import APP_STATE_KEY, State

from .conftest import CASES_DOC, SERVICE_FOR_HOOK, TODAY, case_request

BASE_URL = "https://cds.example.org"
CASES = CASES_DOC["cases"]


def _decide(state: State, body: dict[str, Any], **changed: Any) -> Decision:
    service = state.services[SERVICE_FOR_HOOK[body["hook"]]]
    req = parse_request(body, service.hook)
    inputs: dict[str, Any] = {
        "knowledge": state.knowledge,
        "store": state.store,
        "fhir": state.fhir_access(),
        "base_url": BASE_URL,
        "today": date.fromisoformat(TODAY),
        "windows": state.windows,
        "site": state.site,
    }
    return decide(req, service, parse_client_options(req.extension), **(inputs | changed))


@pytest.fixture(scope="module")
def state(app: Flask) -> State:
    found: State = app.extensions[APP_STATE_KEY]
    return found


def _keys(cards: list[dict[str, Any]]) -> list[tuple[str, str, str]]:
    ours = "org.example.breast-surveillance-cds"
    return sorted(
        (c["indicator"], c["extension"][ours]["study"], c["extension"][ours]["order"])
        for c in cards
    )


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_decide_without_a_request_gives_each_case_its_cards(
    state: State, case: dict[str, Any]
) -> None:
    assert not has_request_context()
    decision = _decide(state, case_request(case))
    expected = sorted((c["indicator"], c["study"], c["order"]) for c in case["expect"]["cards"])
    assert _keys(decision.cards) == expected, case["name"]


def test_the_base_url_given_is_the_one_the_cards_link_to(state: State) -> None:
    seed = next(c for c in CASES if c["name"] == "seed-pet-ct")
    [card] = _decide(state, case_request(seed), base_url="https://elsewhere.example").cards
    ours = [link["url"] for link in card["links"] if "/guidance/" in link["url"]]
    assert ours and all(url.startswith("https://elsewhere.example/guidance/") for url in ours)


def test_the_windows_given_are_the_ones_the_rules_use(state: State) -> None:
    """The windows are an input: with one-day symptom windows the new-symptom case's bone
    pain no longer decides its order."""
    case = next(c for c in CASES if c["name"] == "new-bone-pain")
    default = _decide(state, case_request(case))
    narrow = _decide(
        state, case_request(case), windows=Windows(symptom_new=1, symptom_persistent=1)
    )
    assert [f.reason for f in default.findings] != [f.reason for f in narrow.findings]


def test_stages_are_reported_in_order_when_asked(state: State) -> None:
    seed = next(c for c in CASES if c["name"] == "seed-pet-ct")
    stages: list[str] = []
    decision = _decide(state, case_request(seed), lap=stages.append)
    assert stages == ["record", "facts", "rules", "cards"]
    assert decision.facts is not None and decision.origin
