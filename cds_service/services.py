"""The service registry, read from ``discovery.json``: feeds discovery and the prefetch checks."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

from .errors import MappingError
from .policy import CONFIGURATION_OPTIONS, OPTIONS_KEY

DISCOVERY_FILE = Path(__file__).resolve().parent / "discovery.json"
_TOKEN = re.compile(r"\{\{\s*([A-Za-z.]+)\s*\}\}")
# CDS Hooks 2.0 prefetch tokens for order-select and order-sign (spec §Prefetch tokens).
_ALLOWED_TOKENS = frozenset(
    {
        "context.patientId",
        "context.userId",
        "context.encounterId",
        "userPractitionerId",
        "userPractitionerRoleId",
        "userPatientId",
        "userRelatedPersonId",
    }
)


@dataclass(frozen=True)
class Service:
    id: str
    hook: str
    title: str
    description: str
    usage_requirements: str
    prefetch: Mapping[str, str]
    required: frozenset[str]  # prefetch keys without which the service cannot decide

    def resource_type(self, key: str) -> str:
        """The FHIR type a prefetch key returns ("Condition?patient=..." → "Condition")."""
        return re.split(r"[/?]", self.prefetch[key], maxsplit=1)[0]

    def discovery_entry(self) -> dict[str, Any]:
        return {
            "hook": self.hook,
            "id": self.id,
            "title": self.title,
            "description": self.description,
            "usageRequirements": self.usage_requirements,
            "prefetch": dict(self.prefetch),
            "extension": {OPTIONS_KEY + "-options": CONFIGURATION_OPTIONS},
        }


def resolve_template(template: str, context: Mapping[str, str | None]) -> str | None:
    """Fill a prefetch template; None when a token has no value in this call."""
    missing = False

    def fill(match: re.Match[str]) -> str:
        nonlocal missing
        value = context.get(match.group(1))
        if not value:
            missing = True
            return ""
        return quote(value, safe="/")

    out = _TOKEN.sub(fill, template)
    return None if missing else out


def load_services(path: Path = DISCOVERY_FILE) -> dict[str, Service]:
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
        services = {}
        for index, raw in enumerate(doc["services"]):
            prefetch = dict(raw["prefetch"])
            for key, template in prefetch.items():
                for token in _TOKEN.findall(template):
                    if token not in _ALLOWED_TOKENS:
                        raise MappingError(
                            str(path), f"services.{index}.prefetch.{key}", f"illegal token {token}"
                        )
            required = frozenset(raw.get("requiredPrefetch", []))
            if not required <= set(prefetch):
                raise MappingError(str(path), f"services.{index}.requiredPrefetch", "unknown key")
            service = Service(
                id=raw["id"],
                hook=raw["hook"],
                title=raw["title"],
                description=raw["description"],
                usage_requirements=raw["usageRequirements"],
                prefetch=prefetch,
                required=required,
            )
            services[service.id] = service
    except (OSError, KeyError, TypeError, json.JSONDecodeError) as exc:
        raise MappingError(str(path), "", f"invalid discovery document: {exc!r}") from exc
    return services
