"""Site and client policy over the guideline's findings: snoozes, disabled studies, client
options (CRD-style), max cards. Pure functions: the store and HTTP stay outside."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from .config import SiteConfig
from .namespace import NAMESPACE
from .rules import Finding

logger = logging.getLogger("cds_service.policy")

OPTIONS_KEY = NAMESPACE + ".configuration"
LEGACY_OPTIONS_KEY = (
    "breast-surveillance-cds.configuration"  # the earlier, un-namespaced key: still honoured
)
CRD_OPTIONS_KEY = "davinci-crd.configuration"  # the Da Vinci CRD spelling, also honoured

# Advertised in discovery (extension OPTIONS_KEY + "-options").
CONFIGURATION_OPTIONS: list[dict[str, Any]] = [
    {
        "code": "warnings",
        "type": "boolean",
        "name": "Appropriateness warnings",
        "description": "Warning cards for Variant 10 imaging in asymptomatic survivors.",
        "default": True,
    },
    {
        "code": "info-cards",
        "type": "boolean",
        "name": "Information cards",
        "description": "Targeted-study and tumour-marker information cards.",
        "default": True,
    },
    {
        "code": "suggestions",
        "type": "boolean",
        "name": "Suggestions",
        "description": "Remove-order and order-a-mammogram suggestions on warning cards.",
        "default": True,
    },
    {
        "code": "system-actions",
        "type": "boolean",
        "name": "Rating on the order",
        "description": "Write the appropriateness rating onto the draft order (systemActions).",
        "default": True,
    },
    {
        "code": "max-cards",
        "type": "integer",
        "name": "Maximum cards",
        "description": "At most this many cards per call (warnings first).",
        "default": 10,
    },
]
_TYPES = {o["code"]: o["type"] for o in CONFIGURATION_OPTIONS}


@dataclass(frozen=True)
class ClientOptions:
    warnings: bool = True
    info_cards: bool = True
    suggestions: bool = True
    system_actions: bool = True
    max_cards: int | None = None


def parse_client_options(extension: Mapping[str, Any] | None) -> ClientOptions:
    """Known options are honoured, unknown ones ignored, nonsensical ones logged and ignored."""
    raw: dict[str, Any] = {}
    for key in (CRD_OPTIONS_KEY, LEGACY_OPTIONS_KEY, OPTIONS_KEY):  # ours wins when both are sent
        value = (extension or {}).get(key)
        if isinstance(value, Mapping):
            raw.update(value)
        elif value is not None:
            logger.warning("ignored request extension %s: not an object", key)
    values: dict[str, Any] = {}
    for code, value in raw.items():
        kind = _TYPES.get(code)
        if kind is None:
            continue
        ok = (
            isinstance(value, bool)
            if kind == "boolean"
            else (isinstance(value, int) and not isinstance(value, bool) and value >= 0)
        )
        if not ok:
            logger.warning("ignored client option %s: not a valid %s", code, kind)
            continue
        values[code.replace("-", "_")] = value
    return ClientOptions(**values)


def apply_policy(
    findings: Sequence[Finding],
    site: SiteConfig,
    client: ClientOptions,
    snoozed: Iterable[str] = (),
) -> list[Finding]:
    """Findings after snoozes, the site's study list and the client's card-type switches."""
    snoozed = frozenset(snoozed)
    out = []
    for f in findings:
        was = f.verdict
        if f.verdict == "warn":
            if f.study in snoozed:
                f = replace(f, verdict="snoozed", reason="snoozed")
            elif site.warn_studies is not None and f.study not in site.warn_studies:
                f = replace(f, verdict="silent", reason="site-disabled")
            elif not client.warnings:
                f = replace(f, verdict="silent", reason="client-disabled")
        elif f.verdict.startswith("info") and not client.info_cards:
            f = replace(f, verdict="silent", reason="client-disabled")
        out.append(f if f.verdict == was else replace(f, before_policy=was))
    return out


_SEVERITY = {"critical": 0, "warning": 1, "info": 2}


def limit_cards(
    cards: list[dict[str, Any]], site: SiteConfig, client: ClientOptions
) -> list[dict[str, Any]]:
    """Warnings first; at most the smaller of the site's and the client's maximum."""
    limit = site.max_cards if client.max_cards is None else min(site.max_cards, client.max_cards)
    ordered = sorted(cards, key=lambda c: _SEVERITY.get(c["indicator"], 3))
    return ordered[:limit]


REPEAT_SUPPRESSED = "repeat-suppressed"


def suppress_repeats(
    findings: Sequence[Finding], already_warned: Iterable[tuple[str, str]]
) -> list[Finding]:
    """At order-sign: a warning already shown for the same draft order and study at
    order-select is not shown again (Da Vinci CRD: do not repeat advice the user has seen).
    Its verdict is kept in ``before_policy``, so the order is still rated not-appropriate."""
    seen = frozenset(already_warned)
    return [
        replace(f, verdict="silent", reason=REPEAT_SUPPRESSED, before_policy="warn")
        if f.verdict == "warn" and (f.order.reference, f.study or "") in seen
        else f
        for f in findings
    ]
