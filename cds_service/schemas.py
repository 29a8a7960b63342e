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
Text = Annotated[str, Meta(min_length=1, pattern=NOT_BLANK)]
Url = Annotated[str, Meta(min_length=1, pattern=NOT_BLANK, extra_json_schema={"format": "uri"})]
SELECTION = "a draft order: Type/id, the entry's fullUrl, or [base]/Type/id"
Selection = Annotated[str, Meta(min_length=1, pattern=NOT_BLANK, description=SELECTION)]
HookInstance = Annotated[str, Meta(min_length=1, max_length=MAX_HOOK_INSTANCE, pattern=NOT_BLANK)]
CardUuid = Annotated[str, Meta(min_length=1, max_length=MAX_CARD_UUID, pattern=NOT_BLANK)]
SuggestionId = Annotated[str, Meta(min_length=1, max_length=MAX_SUGGESTION_ID, pattern=NOT_BLANK)]
Code = Annotated[str, Meta(min_length=1, max_length=MAX_OVERRIDE_CODE, pattern=NOT_BLANK)]
System = Annotated[str, Meta(min_length=1, max_length=MAX_OVERRIDE_SYSTEM, pattern=NOT_BLANK)]
Display = Annotated[str, Meta(min_length=1, max_length=MAX_OVERRIDE_DISPLAY, pattern=NOT_BLANK)]
Comment = Annotated[str, Meta(max_length=MAX_USER_COMMENT)]


class Resource(Struct):
    """Any FHIR resource: its type, and its id when it has one; the rest is read later."""

    resourceType: Text
    id: Text | None = None


class BundleEntry(Struct):
    resource: Resource


class Bundle(Struct):
    """The draft orders; ``type`` is not required (real clients leave it out)."""

    resourceType: Literal["Bundle"]
    type: str | None = None
    entry: Annotated[list[BundleEntry], Meta(max_length=MAX_DRAFT_ORDERS)] | None = None


class FhirAuthorization(Struct):
    """The EHR's token for its FHIR server (requires fhirServer). Only the token is read; the
    other members CDS Hooks 2.0 defines (expires_in, scope, subject, patient) are accepted."""

    access_token: Text
    token_type: str | None = None


class Context(Struct):
    patientId: Text
    draftOrders: Bundle
    userId: Text | None = None
    encounterId: Text | None = None
    # Required (non-empty) for order-select; one naming no draft order is a 400.
    selections: Annotated[list[Selection], Meta(min_length=1)] | None = None


class CdsRequest(Struct):
    """A CDS Hooks 2.0 call of order-select or order-sign."""

    hook: Literal["order-select", "order-sign"]
    hookInstance: HookInstance
    context: Context
    # An absolute http(s) URL without userinfo or backslashes; required with fhirAuthorization.
    fhirServer: Url | None = None
    fhirAuthorization: FhirAuthorization | None = None
    prefetch: dict[str, Resource | None] | None = None
    extension: dict[str, Any] | None = None


class AcceptedSuggestion(Struct):
    id: SuggestionId


class OverrideCoding(Struct):
    code: Code | None = None
    system: System | None = None
    display: Display | None = None


class OverrideReason(Struct):
    reason: OverrideCoding | None = None
    userComment: Comment | None = None


class FeedbackItem(Struct):
    """One card's outcome; what a known client leaves out is recorded as missing."""

    outcome: Literal["accepted", "overridden"]
    card: CardUuid | None = None
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
