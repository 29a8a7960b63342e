"""CDS Hooks 2.0 response checks, ported from the spec's invariants (cds-resp-1…7)."""

from __future__ import annotations

import uuid
from typing import Any

INDICATORS = {"info", "warning", "critical"}


def assert_no_empty(value: Any, path: str = "$") -> None:
    """The spec forbids null, "", [] and {} except the top-level ``cards`` array."""
    if isinstance(value, dict):
        for key, item in value.items():
            where = f"{path}.{key}"
            assert item is not None and item != "" and item != {}, f"empty value at {where}"
            if item == [] and where != "$.cards":
                raise AssertionError(f"empty array at {where}")
            assert_no_empty(item, where)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            assert_no_empty(item, f"{path}[{index}]")


def assert_conformant(body: Any) -> None:
    assert isinstance(body, dict) and isinstance(body.get("cards"), list)
    assert_no_empty(body)
    uuids = set()
    for card in body["cards"]:
        uuid.UUID(card["uuid"])
        assert card["uuid"] not in uuids
        uuids.add(card["uuid"])
        assert isinstance(card["summary"], str) and 0 < len(card["summary"]) < 140
        assert card["indicator"] in INDICATORS
        assert card["source"]["label"]
        topic = card["source"].get("topic")
        if topic:
            assert topic["system"] and topic["code"]
        if "suggestions" in card:
            assert card["selectionBehavior"] in {"at-most-one", "any"}  # cds-resp-6
            for suggestion in card["suggestions"]:
                assert suggestion["label"]
                for action in suggestion.get("actions", []):
                    assert action["type"] in {"create", "update", "delete"}
                    assert action["description"]
                    if action["type"] == "delete":  # cds-resp-2
                        assert "resourceId" in action and "resource" not in action
        for reason in card.get("overrideReasons", []):  # cds-resp-4
            assert reason["code"] and reason["system"] and reason["display"]
        for link in card.get("links", []):
            assert link["label"] and link["url"] and link["type"] in {"absolute", "smart"}
            if link["type"] != "smart":  # cds-resp-3
                assert "appContext" not in link
        if "extension" in card:
            assert isinstance(card["extension"], dict)
    for action in body.get("systemActions", []):
        assert action["type"] in {"create", "update", "delete"} and action["description"]


PAMA_RATING = "http://fhir.org/argonaut/Extension/pama-rating"


def ratings(body: dict[str, Any]) -> dict[str, str]:
    """Order reference → PAMA rating code written back by the response's systemActions."""
    out = {}
    top = body.get("systemActions", [])
    assert top == body.get("extension", {}).get("systemActions", []), "both locations agree"
    for action in top:
        resource = action["resource"]
        [rating] = [e for e in resource["extension"] if e["url"] == PAMA_RATING]
        out[f"{resource['resourceType']}/{resource['id']}"] = rating["valueCodeableConcept"][
            "coding"
        ][0]["code"]
    return out


def assert_no_card(body: dict[str, Any]) -> None:
    """No card, and no order rated not-appropriate."""
    assert body["cards"] == []
    assert "not-appropriate" not in ratings(body).values()
