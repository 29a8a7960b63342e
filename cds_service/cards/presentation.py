"""What the cards need to know about the call (``Presentation``) and the service's own
addresses they link to."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

HANDOUT_PATH = "/handouts/breast-surveillance"
GUIDANCE_PATH = "/guidance/"  # + a card kind (mappings.GUIDANCE_KINDS)
OVERRIDE_PATH = "/CodeSystem/override-reason"


@dataclass(frozen=True)
class Presentation:
    """What the cards need from the call: where the service lives and the orders as received."""

    base_url: str  # external base URL of the service, no trailing slash
    patient_id: str
    drafts: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)  # "Type/id" -> resource
    encounter_id: str | None = None
    snooze_months: tuple[int, ...] = (3, 6, 12)  # the snooze override reasons offered
    suggestions: bool = True

    @property
    def override_system(self) -> str:
        return self.base_url + OVERRIDE_PATH

    @property
    def handout_url(self) -> str:
        return self.base_url + HANDOUT_PATH


def guidance_url(where: Presentation, kind: str, anchor: str | None = None) -> str:
    """The guidance page of a card kind: a stable address with no patient data in it."""
    return where.base_url + GUIDANCE_PATH + kind + (f"#{anchor}" if anchor else "")
