"""The typed CDS Hooks response parts the cards are made of, and their JSON (one place).

Field order is the JSON key order; a field left at its default (``None``, empty) is not sent.
Lists, not tuples: ``msgspec.to_builtins`` keeps a tuple a tuple.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any, Literal

import msgspec


class _Part(msgspec.Struct, frozen=True, omit_defaults=True, rename="camel"):
    pass


class Coding(_Part, frozen=True, kw_only=True):
    system: str
    code: str
    display: str | None = None  # FHIR: optional


class OverrideReason(_Part, frozen=True, kw_only=True):
    """A Coding whose display CDS Hooks requires; its keys in the order the service has
    always sent them."""

    code: str
    system: str
    display: str


class Source(_Part, frozen=True, kw_only=True):
    label: str
    url: str
    topic: Coding


class Link(_Part, frozen=True, kw_only=True):
    label: str
    url: str
    type: Literal["absolute", "smart"]


class Action(_Part, frozen=True, kw_only=True):
    type: Literal["create", "update", "delete"]
    description: str
    resource_id: str | None = None
    resource: Mapping[str, Any] | None = None  # a FHIR resource, as JSON


class Suggestion(_Part, frozen=True, kw_only=True):
    label: str
    uuid: str
    is_recommended: bool | None = None
    actions: list[Action]


class CardMarks(_Part, frozen=True, kw_only=True):
    """The service's own data on a card (CDS Hooks has no card-to-order link)."""

    order: str
    study: str | None  # no default: sent even when None
    verdict: str
    rule: str
    consult_id: str | None = None


class Card(_Part, frozen=True, kw_only=True):
    uuid: str
    summary: str
    indicator: Literal["info", "warning", "critical"]
    detail: str
    source: Source
    links: list[Link]
    override_reasons: list[OverrideReason] = []
    suggestions: list[Suggestion] = []
    selection_behavior: Literal["at-most-one", "any"] | None = None
    extension: Mapping[str, CardMarks] | None = None  # CARD_EXTENSION_KEY -> marks


def to_json(part: _Part) -> dict[str, Any]:
    """A response part as the JSON object the CDS Hooks client reads."""
    result: dict[str, Any] = msgspec.to_builtins(part)
    return result


def new_uuid() -> str:
    """A card's or a suggestion's id (a random UUID, as text)."""
    return str(uuid.uuid4())
