"""Findings → advice: one card per finding with something to say, each marked with its order,
and the rating system actions, as the JSON the response carries."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import msgspec

from ..mappings import Knowledge
from ..namespace import NAMESPACE
from ..rules import Finding
from .info import targeted_card, tumor_marker_card
from .models import Card, CardMarks, new_uuid, to_json
from .pama import rating_action
from .presentation import Presentation
from .staging import early_stage_card
from .warning import warning_card

CARD_EXTENSION_KEY = NAMESPACE  # the key of the service's own data in a card's extension

_BUILDERS: dict[str, Callable[[Finding, Knowledge, Presentation], Card]] = {
    "warn": warning_card,
    "info-targeted": targeted_card,
    "info-tumor-marker": tumor_marker_card,
}


@dataclass(frozen=True)
class Advice:
    """The cards and system actions for one call, as JSON (``models.to_json``)."""

    cards: list[dict[str, Any]]
    system_actions: list[dict[str, Any]]
    consult_ids: dict[str, str]  # order reference -> consult id (audit)
    card_for: dict[str, dict[str, Any]]  # order reference -> its card


def build_advice(findings: Iterable[Finding], knowledge: Knowledge, where: Presentation) -> Advice:
    """Cards (one per finding with something to say) and rating system actions.

    Each card names its order in ``extension`` (CDS Hooks has no card-to-order link), so a
    client can tie the card to the order and replace it when the order changes.
    """
    cards = []
    actions = []
    consult_ids: dict[str, str] = {}
    card_for: dict[str, dict[str, Any]] = {}
    for finding in findings:
        consult_id = f"urn:uuid:{new_uuid()}"
        action = rating_action(finding, knowledge, where, consult_id)
        if action is not None:
            actions.append(to_json(action))
            consult_ids[finding.order.reference] = consult_id
        builder = _BUILDERS.get(finding.verdict)
        if builder is warning_card and finding.reason == "variant-2":
            builder = early_stage_card  # ACR Variants 1-2, not 10
        if builder is None:
            continue
        marks = CardMarks(
            order=finding.order.reference,
            study=finding.study,
            verdict=finding.verdict,
            rule=finding.reason,
            consult_id=consult_ids.get(finding.order.reference),
        )
        card = msgspec.structs.replace(
            builder(finding, knowledge, where), extension={CARD_EXTENSION_KEY: marks}
        )
        card_json = to_json(card)
        cards.append(card_json)
        card_for[finding.order.reference] = card_json
    return Advice(cards, actions, consult_ids, card_for)
