"""The request and feedback shapes (cds_service/schemas.py): openapi.json is generated from
them, and what they accept the hand validation of hooks.py accepts."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import msgspec
import pytest

from cds_service.hooks import MAX_HOOK_INSTANCE, parse_feedback, parse_request
from cds_service.schemas import (
    OPENAPI,
    CdsRequest,
    FeedbackRequest,
    generated_openapi,
    render,
)

from .conftest import FIXTURES, load_json

REQUESTS = sorted((FIXTURES / "requests").glob("*.json"))


def test_the_committed_openapi_json_is_the_generated_one() -> None:
    assert OPENAPI.read_text(encoding="utf-8") == render(generated_openapi()), (
        "openapi.json is out of date: run `python -m cds_service.schemas`"
    )


def test_the_schema_carries_the_validator_limits() -> None:
    schemas = json.loads(OPENAPI.read_text(encoding="utf-8"))["components"]["schemas"]
    assert schemas["CdsRequest"]["properties"]["hookInstance"]["maxLength"] == MAX_HOOK_INSTANCE
    assert "token_type" not in schemas["FhirAuthorization"]["required"]
    assert schemas["Bundle"]["required"] == ["resourceType"]


@pytest.mark.parametrize("path", REQUESTS, ids=[p.name for p in REQUESTS])
def test_every_fixture_request_fits_the_shape_and_the_validator(path: Path) -> None:
    body: dict[str, Any] = load_json(path)
    msgspec.convert(body, CdsRequest)
    parse_request(body, body["hook"])


@pytest.mark.parametrize(
    "body",
    [
        {"hook": "order-sign", "hookInstance": " ", "context": {}},
        {"hook": "order-sign", "hookInstance": "x" * (MAX_HOOK_INSTANCE + 1), "context": {}},
        {"hook": "order-sign", "hookInstance": "a", "context": {"patientId": "p"}},
    ],
)
def test_what_the_shape_refuses_the_validator_refuses(body: dict[str, Any]) -> None:
    from cds_service.errors import InvalidRequest

    with pytest.raises(msgspec.ValidationError):
        msgspec.convert(body, CdsRequest)
    with pytest.raises(InvalidRequest):
        parse_request(body, "order-sign")


def test_feedback_shape_and_validator_agree_on_a_sandbox_item() -> None:
    body = {"feedback": [{"card": "c-1", "outcome": "overridden", "overrideReason": {}}]}
    msgspec.convert(body, FeedbackRequest)
    assert parse_feedback(body, {})[0].card_uuid == "c-1"
