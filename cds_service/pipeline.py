"""The pipeline of one hook call: a parsed request and explicit inputs in, a ``Decision`` out.

No Flask here: the HTTP route (``api.call_service``), the bench and the tests call ``decide``
with what it needs: the knowledge, the store, the FHIR connections and their limits, the base
URL for the cards' links, today's date, the look-back windows, the site's and the client's
options.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

import urllib3

from .cards import Advice, Presentation, build_advice
from .config import SiteConfig
from .facts import OrderFact, PatientFacts
from .fhir import Sources, build_facts, find_draft, match_selections, parse_orders, validate_cited
from .fhir.gather import gather, is_partial, refuse_other_patient_orders
from .hooks import CdsRequest
from .mappings import Knowledge
from .policy import ClientOptions, apply_policy, limit_cards, suppress_repeats
from .rules import Finding, Windows, cited, evaluate, judge_without_record, needs_record
from .services import Service
from .store import Store, now

logger = logging.getLogger("cds_service.pipeline")

# Called with a stage's name when it ends ("record", "facts", "rules", "cards"):
# how bench/ times the stages of this one flow. None (the service) costs nothing.
Lap = Callable[[str], None]


@dataclass(frozen=True)
class FhirAccess:
    """How the pipeline may read the EHR's FHIR server for what was not prefetched."""

    http: urllib3.PoolManager  # the FHIR queries' connections (fhir.client.fhir_pool)
    executor: ThreadPoolExecutor  # runs one call's FHIR queries concurrently
    timeout: float  # the budget of one call's queries, in seconds
    # Prefixes a fhirServer must match, one list per source (the site's, the client's
    # issuer's); an empty list allows any http(s) server.
    allowlists: Sequence[Sequence[str]]
    allow_insecure: bool  # send the access token to plain-http (non-loopback) servers


@dataclass(frozen=True)
class Decision:
    """What the pipeline decided for one call: the orders judged, the record's facts (None when
    no order needed it), the findings, the advice built from them, the cards and system
    actions to send and where the record came from."""

    orders: list[OrderFact]
    facts: PatientFacts | None
    findings: list[Finding]
    advice: Advice
    cards: list[dict[str, Any]]
    actions: list[dict[str, Any]]
    origin: dict[str, str]


def decide(
    req: CdsRequest,
    service: Service,
    client_options: ClientOptions,
    *,
    knowledge: Knowledge,
    store: Store,
    fhir: FhirAccess,
    base_url: str,
    today: date,
    windows: Windows,
    site: SiteConfig,
    lap: Lap | None = None,
) -> Decision:
    """The orders, the record (prefetch or FHIR reads), the rules, the site's and the client's
    policy, the cards. ``api.call_service`` is the HTTP shell around it (bench/ceiling_app.py
    answers it from memory to measure that shell alone)."""
    drafts = parse_orders(req.draft_orders, None, knowledge.codes)
    selected = None
    if req.selections is not None:
        selected = match_selections(req.draft_orders, req.selections)
    orders = [o for o in drafts if selected is None or o.reference in selected]
    origin: dict[str, str] = {}
    facts = None
    judged = {order.reference for order in orders if needs_record(order, knowledge)}
    if judged:
        refuse_other_patient_orders(req.draft_orders, judged, req.patient_id)
        resources, origin = gather(
            req,
            service,
            fhir.http,
            fhir.executor,
            fhir.timeout,
            fhir.allowlists,
            fhir.allow_insecure,
        )
        if lap:
            lap("record")
        sources: Sources = {}
        facts = build_facts(resources, knowledge, sources)
        if lap:
            lap("facts")
        partial = any(is_partial(origin.get(key, "")) for key in service.required)
        findings = evaluate(facts, orders, knowledge, today, windows, drafts, partial)
        validate_cited(cited(findings), sources)
    else:
        if lap:
            lap("record")
            lap("facts")
        findings = judge_without_record(orders, knowledge)
    findings = apply_policy(findings, site, client_options, _snoozed(req, store, today, findings))
    findings = _suppress_repeats(req, store, site, findings)
    if lap:
        lap("rules")
    where = Presentation(
        base_url=base_url,
        patient_id=req.patient_id,
        drafts={o.reference: d for o in orders if (d := find_draft(req.draft_orders, o.reference))},
        encounter_id=req.encounter_id,
        snooze_months=site.snooze_months,
        suggestions=client_options.suggestions,
    )
    advice = build_advice(findings, knowledge, where)
    cards = limit_cards(advice.cards, site, client_options)
    actions = advice.system_actions if client_options.system_actions else []
    if lap:
        lap("cards")
    return Decision(orders, facts, findings, advice, cards, actions, origin)


def _snoozed(req: CdsRequest, store: Store, today: date, findings: list[Finding]) -> frozenset[str]:
    """The studies this patient's warnings are snoozed for (asked only when there is one)."""
    if not any(f.verdict == "warn" for f in findings):
        return frozenset()
    found = store.snoozed_studies(req.patient_id, today)
    if found is None:
        # The store did not answer in time: the cards go out as if nothing were snoozed
        # (a repeat warning at worst); ordering never waits for the database.
        logger.warning(
            "snooze unknown: store unavailable",
            extra={"fields": {"event": "snooze-unknown", "hookInstance": req.hook_instance}},
        )
        return frozenset()
    return found


def _suppress_repeats(
    req: CdsRequest, store: Store, site: SiteConfig, findings: list[Finding]
) -> list[Finding]:
    """order-sign only, when the site has a repeat window and is not in silent mode."""
    minutes = site.repeat_window_minutes
    if req.hook != "order-sign" or not minutes or site.silent:
        return findings
    warned = [f.order.reference for f in findings if f.verdict == "warn"]
    if not warned:
        return findings
    since = now() - timedelta(minutes=minutes)
    return suppress_repeats(findings, store.warned_at_select(req.patient_id, warned, since))
