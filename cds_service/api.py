"""HTTP: discovery and the hook endpoints. Parses, calls the pipeline, answers JSON."""

from __future__ import annotations

import logging
import time
from datetime import date
from typing import Any

import orjson
from flask import Blueprint, Response, g, request

from .cards import build_cards
from .errors import InvalidRequest, UnknownService
from .fhir import build_facts, parse_orders
from .gather import gather
from .hooks import parse_request, response_body
from .rules import evaluate, judge_without_record, needs_record
from .state import get_state

bp = Blueprint("cds", __name__)
logger = logging.getLogger("cds_service.api")


def _json(body: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(body), status=status, mimetype="application/json")


def _body() -> Any:
    data = request.get_data(cache=False)
    if not data.strip():
        raise InvalidRequest("request body is empty; a JSON object is required")
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise InvalidRequest(f"request body is not valid JSON: {exc.msg}") from exc


@bp.get("/cds-services")
def discovery() -> Response:
    return _json(get_state().discovery)


@bp.post("/cds-services/<service_id>")
def call_service(service_id: str) -> Response:
    started = time.perf_counter()
    state = get_state()
    service = state.services.get(service_id)
    if service is None:
        raise UnknownService(f"no CDS service with id {service_id!r}; see GET /cds-services")
    req = parse_request(_body(), service.hook)
    g.hook_instance = req.hook_instance
    knowledge = state.knowledge
    orders = parse_orders(req.draft_orders, req.selections, knowledge.codes)
    today = state.settings.today or date.today()
    origin: dict[str, str] = {}
    if any(needs_record(order, knowledge) for order in orders):
        resources, origin = gather(req, service, state.http, state.settings.fhir_timeout)
        facts = build_facts(resources, knowledge.codes)
        findings = evaluate(facts, orders, knowledge, today, state.windows)
    else:
        findings = judge_without_record(orders, knowledge)
    cards = build_cards(findings, knowledge)
    logger.info(
        "hook=%s service=%s hookInstance=%s orders=%d cards=%d verdicts=%s data=%s ms=%.1f",
        req.hook,
        service.id,
        req.hook_instance,
        len(orders),
        len(cards),
        ",".join(f"{f.study or '-'}:{f.verdict}:{f.reason}" for f in findings) or "-",
        ",".join(f"{k}:{v}" for k, v in sorted(origin.items())) or "-",
        (time.perf_counter() - started) * 1000,
    )
    return _json(response_body(cards))
