"""The hook request and feedback shapes, declared once as msgspec Structs; openapi.json's
request schemas are generated from them (``python -m cds_service.schemas`` rewrites the file,
a test checks it is up to date). hooks.py validates against the same limits by hand, so that
each 400 names the element at fault in its own words."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any, Literal

import msgspec
from msgspec import Meta, Struct

from .hooks import (
    MAX_CARD_UUID,
    MAX_DRAFT_ORDERS,
    MAX_HOOK_INSTANCE,
    MAX_OVERRIDE_CODE,
    MAX_OVERRIDE_DISPLAY,
    MAX_OVERRIDE_SYSTEM,
    MAX_SUGGESTION_ID,
    MAX_USER_COMMENT,
)

OPENAPI = Path(__file__).resolve().parent / "openapi.json"
NOT_BLANK = r"\S"  # a string that is not only blanks


def _text(max_length: int | None = None, **schema: Any) -> Any:
    """A non-blank string, at most ``max_length`` characters."""
    return Annotated[
        str, Meta(min_length=1, max_length=max_length, pattern=NOT_BLANK, extra_json_schema=schema)
    ]


class Resource(Struct):
    """Any FHIR resource: its type, and its id when it has one; the rest is read later."""

    resourceType: _text()  # type: ignore[valid-type]
    id: _text() | None = None  # type: ignore[valid-type]


class BundleEntry(Struct):
    resource: Resource


class Bundle(Struct):
    """The draft orders; ``type`` is not required (real clients leave it out)."""

    resourceType: Literal["Bundle"]
    type: str | None = None
    entry: Annotated[list[BundleEntry], Meta(max_length=MAX_DRAFT_ORDERS)] | None = None


class FhirAuthorization(Struct):
    access_token: _text()  # type: ignore[valid-type]
    token_type: str | None = None
    expires_in: int | None = None
    scope: str | None = None
    subject: str | None = None
    patient: str | None = None


SELECTION = "a draft order: Type/id, the entry's fullUrl, or [base]/Type/id"


class Context(Struct):
    patientId: _text()  # type: ignore[valid-type]
    draftOrders: Bundle
    userId: _text() | None = None  # type: ignore[valid-type]
    encounterId: _text() | None = None  # type: ignore[valid-type]
    # Required (non-empty) for order-select; one naming no draft order is a 400.
    selections: Annotated[list[_text(description=SELECTION)], Meta(min_length=1)] | None = None  # type: ignore[valid-type]


class CdsRequest(Struct):
    """A CDS Hooks 2.0 call of order-select or order-sign."""

    hook: Literal["order-select", "order-sign"]
    hookInstance: _text(MAX_HOOK_INSTANCE)  # type: ignore[valid-type]
    context: Context
    # An absolute http(s) URL without userinfo or backslashes; required with fhirAuthorization.
    fhirServer: _text(format="uri") | None = None  # type: ignore[valid-type]
    fhirAuthorization: FhirAuthorization | None = None
    prefetch: dict[str, Resource | None] | None = None
    extension: dict[str, Any] | None = None


class AcceptedSuggestion(Struct):
    id: _text(MAX_SUGGESTION_ID)  # type: ignore[valid-type]


class OverrideCoding(Struct):
    code: _text(MAX_OVERRIDE_CODE) | None = None  # type: ignore[valid-type]
    system: _text(MAX_OVERRIDE_SYSTEM) | None = None  # type: ignore[valid-type]
    display: _text(MAX_OVERRIDE_DISPLAY) | None = None  # type: ignore[valid-type]


class OverrideReason(Struct):
    reason: OverrideCoding | None = None
    userComment: Annotated[str, Meta(max_length=MAX_USER_COMMENT)] | None = None


class FeedbackItem(Struct):
    """One card's outcome; what a known client leaves out is recorded as missing."""

    outcome: Literal["accepted", "overridden"]
    card: _text(MAX_CARD_UUID) | None = None  # type: ignore[valid-type]
    outcomeTimestamp: str | None = None
    acceptedSuggestions: list[AcceptedSuggestion] | None = None
    overrideReason: OverrideReason | None = None


class FeedbackRequest(Struct):
    feedback: Annotated[list[FeedbackItem], Meta(min_length=1)]


def request_schemas() -> dict[str, Any]:
    """The JSON schemas of CdsRequest and FeedbackRequest and of the shapes they use."""
    _, components = msgspec.json.schema_components(
        (CdsRequest, FeedbackRequest), ref_template="#/components/schemas/{name}"
    )
    return components


def generated_openapi() -> dict[str, Any]:
    """openapi.json with its request schemas as the Structs declare them."""
    document: dict[str, Any] = json.loads(OPENAPI.read_text(encoding="utf-8"))
    document["openapi"] = "3.1.0"  # JSON Schema's own null (CdsRequest's optional members)
    schemas = document["components"]["schemas"]
    kept = {k: v for k, v in schemas.items() if k not in request_schemas()}
    document["components"]["schemas"] = request_schemas() | kept
    return document


def render(document: dict[str, Any]) -> str:
    return json.dumps(document, indent=2, ensure_ascii=False) + "\n"


if __name__ == "__main__":
    OPENAPI.write_text(render(generated_openapi()), encoding="utf-8")
    sys.stdout.write(f"wrote {OPENAPI}\n")
