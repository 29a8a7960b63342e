"""CDS Hooks 2.0 wire format: the request as the service reads it, and omit-empty responses.

Validation is explicit so that every 400 names the path of the element at fault
(``context.draftOrders.entry[0].resource``), and tolerant of what real clients send:
``null`` for optional elements, draftOrders Bundles without ``type``, empty codings. The same
shapes and limits are declared for the OpenAPI description in schemas.py.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson

from .errors import InvalidRequest
from .fhir.client import unambiguous_url
from .store import Call, Feedback, FeedbackItem, column_length

# What the store can hold: longer values are refused here with a 400 naming the element, not
# cut or left to fail in the database (PostgreSQL refuses them, SQLite would store them).
MAX_HOOK_INSTANCE = column_length(Call.hook_instance)
MAX_CARD_UUID = column_length(Feedback.card_uuid)
MAX_OVERRIDE_CODE = column_length(Feedback.override_code)
MAX_OVERRIDE_SYSTEM = column_length(Feedback.override_system)
MAX_OVERRIDE_DISPLAY = column_length(Feedback.override_display)
MAX_SUGGESTION_ID = 200
MAX_USER_COMMENT = 10_000
# Orders judged per call: a request with more draft orders is refused (400 naming the limit)
# rather than judged in part; an EHR signs far fewer imaging orders at once.
MAX_DRAFT_ORDERS = 100

ORDER_HOOKS = frozenset({"order-select", "order-sign"})


@dataclass(frozen=True)
class CdsRequest:
    hook: str
    hook_instance: str
    patient_id: str
    draft_orders: Mapping[str, Any]
    selections: tuple[str, ...] | None
    fhir_server: str | None
    access_token: str | None
    prefetch: Mapping[str, Any]
    user_id: str | None = None
    encounter_id: str | None = None
    extension: Mapping[str, Any] | None = None


def _type_name(value: Any) -> str:
    return {dict: "object", list: "array", str: "string", bool: "boolean"}.get(
        type(value), "null" if value is None else "number"
    )


def _require_str(
    node: Mapping[str, Any], key: str, path: str, *, required: bool = True
) -> str | None:
    value = node.get(key)
    if value is None:
        if required:
            raise InvalidRequest(f"{path} is required", [path])
        return None
    if not isinstance(value, str) or not value.strip():
        raise InvalidRequest(f"{path} must be a non-empty string, not {_type_name(value)}", [path])
    return value


def _at_most(value: str | None, limit: int, path: str) -> str | None:
    if value is not None and len(value) > limit:
        raise InvalidRequest(f"{path} is longer than {limit} characters", [path])
    return value


def _object(value: Any, path: str) -> Mapping[str, Any]:
    if not isinstance(value, dict):
        raise InvalidRequest(f"{path} must be a JSON object, not {_type_name(value)}", [path])
    return value


def parse_request(body: Any, expected_hook: str) -> CdsRequest:
    """Validate a CDS Hooks request body for ``expected_hook``; raise InvalidRequest with a path."""
    if not isinstance(body, dict):
        raise InvalidRequest(f"request body must be a JSON object, not {_type_name(body)}")
    hook = _require_str(body, "hook", "hook")
    if hook != expected_hook:
        raise InvalidRequest(f"this service answers the {expected_hook} hook, not {hook}", ["hook"])
    hook_instance = _at_most(
        _require_str(body, "hookInstance", "hookInstance"), MAX_HOOK_INSTANCE, "hookInstance"
    )
    fhir_server = _require_str(body, "fhirServer", "fhirServer", required=False)
    if fhir_server is not None:
        if not unambiguous_url(fhir_server):
            raise InvalidRequest(
                "fhirServer must be an absolute http(s) URL without userinfo or backslashes",
                ["fhirServer"],
            )
    access_token = None
    auth = body.get("fhirAuthorization")
    if auth is not None:
        auth = _object(auth, "fhirAuthorization")
        access_token = _require_str(auth, "access_token", "fhirAuthorization.access_token")
        if fhir_server is None:
            raise InvalidRequest("fhirAuthorization requires fhirServer", ["fhirServer"])
    context = _object(body.get("context"), "context")
    patient_id = _require_str(context, "patientId", "context.patientId")
    user_id = _require_str(context, "userId", "context.userId", required=False)
    encounter_id = _require_str(context, "encounterId", "context.encounterId", required=False)
    draft_orders = _object(context.get("draftOrders"), "context.draftOrders")
    if draft_orders.get("resourceType") != "Bundle":
        raise InvalidRequest(
            "context.draftOrders must be a FHIR Bundle", ["context.draftOrders.resourceType"]
        )
    entries = draft_orders.get("entry")
    if entries is not None and not isinstance(entries, list):
        raise InvalidRequest(
            "context.draftOrders.entry must be an array", ["context.draftOrders.entry"]
        )
    if entries is not None and len(entries) > MAX_DRAFT_ORDERS:
        raise InvalidRequest(
            f"context.draftOrders has {len(entries)} orders; this service judges at most "
            f"{MAX_DRAFT_ORDERS} per call",
            ["context.draftOrders.entry"],
        )
    for index, entry in enumerate(entries or []):
        path = f"context.draftOrders.entry[{index}]"
        resource = _object(_object(entry, path).get("resource"), f"{path}.resource")
        _require_str(resource, "resourceType", f"{path}.resource.resourceType")
        _require_str(resource, "id", f"{path}.resource.id", required=False)
    selections: tuple[str, ...] | None = None
    if hook == "order-select":
        raw = context.get("selections")
        if not isinstance(raw, list) or not raw:
            raise InvalidRequest(
                "context.selections must be a non-empty array for order-select",
                ["context.selections"],
            )
        for index, item in enumerate(raw):
            # Type/id, a fullUrl (urn:uuid:...) or [base]/Type/id: matched in pipeline.decide.
            if not isinstance(item, str) or not item.strip():
                raise InvalidRequest(
                    "each selection must be a 'Type/id' reference into draftOrders",
                    [f"context.selections[{index}]"],
                )
        selections = tuple(raw)
    prefetch = body.get("prefetch")
    if prefetch is not None:
        prefetch = _object(prefetch, "prefetch")
    extension = body.get("extension")
    if extension is not None:
        extension = _object(extension, "extension")
    return CdsRequest(
        hook=hook or "",
        hook_instance=hook_instance or "",
        patient_id=patient_id or "",
        draft_orders=draft_orders,
        selections=selections,
        fhir_server=fhir_server,
        access_token=access_token,
        prefetch=prefetch or {},
        user_id=user_id,
        encounter_id=encounter_id,
        extension=extension,
    )


def decode_request(data: bytes) -> Any:
    """The JSON of a hook call (orjson; invalid JSON raises ``orjson.JSONDecodeError``)."""
    return orjson.loads(data)


def omit_empty(value: Any) -> Any:
    """Drop None, "", [] and {} recursively (CDS Hooks forbids them); keep False and 0."""
    if isinstance(value, dict):
        return {k: kept for k, item in value.items() if (kept := _kept(item)) is not _DROPPED}
    if isinstance(value, list):
        return [kept for item in value if (kept := _kept(item)) is not _DROPPED]
    return value


_DROPPED = object()


def _kept(item: Any) -> Any:
    """``item`` cleaned by omit_empty, or _DROPPED when it is empty."""
    if isinstance(item, dict | list):
        item = omit_empty(item)
        return item if item else _DROPPED
    return _DROPPED if item is None or item == "" else item


def response_body(
    cards: list[dict[str, Any]], system_actions: list[Any] | None = None
) -> dict[str, Any]:
    """``{"cards": [...]}`` (always present, possibly empty) and the system actions, if any.

    The cards are built without empty values (the conformance tests check every fixture's
    response); the actions carry the client's own draft orders, which may hold empties, so they
    are cleaned here, once. CDS Hooks 2.0 reads top-level ``systemActions``; the sandbox and the
    Argonaut examples read ``extension.systemActions``: both get the same list.
    """
    body: dict[str, Any] = {"cards": cards}
    actions = omit_empty(system_actions or [])
    if actions:
        body["systemActions"] = actions
        body["extension"] = {"systemActions": actions}
    return body


def _timestamp(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def parse_feedback(body: Any, displays: Mapping[str, str]) -> list[FeedbackItem]:
    """CDS Hooks 2.0 feedback, leniently: what a known client leaves out (the sandbox sends no
    card uuid for a card without one, and override reasons without display) is recorded as
    missing, not refused; what cannot be understood is a 400 naming the element."""
    if not isinstance(body, dict):
        raise InvalidRequest(f"feedback body must be a JSON object, not {_type_name(body)}")
    raw_items = body.get("feedback")
    if not isinstance(raw_items, list) or not raw_items:
        raise InvalidRequest("feedback must be a non-empty array", ["feedback"])
    items = []
    for index, raw in enumerate(raw_items):
        path = f"feedback[{index}]"
        item = _object(raw, path)
        missing: list[str] = []
        outcome = item.get("outcome")
        if outcome not in ("accepted", "overridden"):
            raise InvalidRequest("outcome must be 'accepted' or 'overridden'", [f"{path}.outcome"])
        card = _at_most(
            _require_str(item, "card", f"{path}.card", required=False),
            MAX_CARD_UUID,
            f"{path}.card",
        )
        if card is None:
            missing.append("card")
        stamp = item.get("outcomeTimestamp")
        when = _timestamp(stamp)
        if when is None:
            if stamp is not None and not isinstance(stamp, str):
                raise InvalidRequest(
                    "outcomeTimestamp must be a string", [f"{path}.outcomeTimestamp"]
                )
            missing.append("outcomeTimestamp")
        accepted: list[str] = []
        raw_accepted = item.get("acceptedSuggestions")
        if raw_accepted is not None:
            if not isinstance(raw_accepted, list):
                raise InvalidRequest(
                    "acceptedSuggestions must be an array", [f"{path}.acceptedSuggestions"]
                )
            for j, suggestion in enumerate(raw_accepted):
                where = f"{path}.acceptedSuggestions[{j}]"
                sid = _require_str(_object(suggestion, where), "id", f"{where}.id")
                accepted.append(_at_most(sid, MAX_SUGGESTION_ID, f"{where}.id") or "")
        elif outcome == "accepted":
            missing.append("acceptedSuggestions")
        code = system = display = comment = None
        override = item.get("overrideReason")
        if override is not None:
            override = _object(override, f"{path}.overrideReason")
            reason = override.get("reason")
            if reason is not None:
                reason = _object(reason, f"{path}.overrideReason.reason")
                code = _at_most(
                    _require_str(
                        reason, "code", f"{path}.overrideReason.reason.code", required=False
                    ),
                    MAX_OVERRIDE_CODE,
                    f"{path}.overrideReason.reason.code",
                )
                system = _at_most(
                    _require_str(
                        reason, "system", f"{path}.overrideReason.reason.system", required=False
                    ),
                    MAX_OVERRIDE_SYSTEM,
                    f"{path}.overrideReason.reason.system",
                )
                display = _at_most(
                    _require_str(
                        reason, "display", f"{path}.overrideReason.reason.display", required=False
                    ),
                    MAX_OVERRIDE_DISPLAY,
                    f"{path}.overrideReason.reason.display",
                )
                if display is None:
                    missing.append("overrideReason.reason.display")
                    display = displays.get(code or "")
            comment_value = override.get("userComment")
            if comment_value is not None and not isinstance(comment_value, str):
                raise InvalidRequest(
                    "userComment must be a string", [f"{path}.overrideReason.userComment"]
                )
            comment = _at_most(
                comment_value, MAX_USER_COMMENT, f"{path}.overrideReason.userComment"
            )
        items.append(
            FeedbackItem(
                card_uuid=card,
                outcome=outcome,
                outcome_timestamp=when,
                accepted_suggestions=accepted,
                override_code=code,
                override_system=system,
                override_display=display,
                user_comment=comment,
                missing=missing,
            )
        )
    return items
