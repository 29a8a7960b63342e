"""HTTP routes: discovery, the hook calls and feedback, CORS and client authentication, pages."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
from flask import Blueprint, Response, current_app, g, render_template, request
from werkzeug.exceptions import HTTPException, NotFound

from . import metrics
from .cards import GUIDANCE_PATH, HANDOUT_PATH, OVERRIDE_PATH
from .errors import (
    CdsServiceError,
    InvalidRequest,
    PayloadTooLarge,
    ServiceUnavailable,
    UnknownService,
)
from .hooks import decode_request, parse_feedback, parse_request, response_body
from .memo import Memo
from .state import get_state
from .store import StoreUnavailable, VerdictRow, now

bp = Blueprint("cds", __name__)
# Calls queued for the audit beyond which the hook's log line reports the depth (one batch).
AUDIT_BEHIND = 500
logger = logging.getLogger("cds_service.api")


def _json(body: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(body), status=status, mimetype="application/json")


def _body(decode: Callable[[bytes], Any] = orjson.loads) -> Any:
    try:
        data = _read_body()
    except (CdsServiceError, HTTPException):
        raise  # 413
    except Exception as exc:  # noqa: BLE001 - the WSGI server's framing errors (gunicorn's
        # InvalidChunkSize and ChunkMissingTerminator, NoMoreData) come from the client's bytes
        raise InvalidRequest(
            f"request body could not be read (malformed framing: {type(exc).__name__})"
        ) from exc
    if not data.strip():
        raise InvalidRequest("request body is empty; a JSON object is required")
    try:
        return decode(data)
    except orjson.JSONDecodeError as exc:
        raise InvalidRequest(f"request body is not valid JSON: {exc.msg}") from exc


def _read_body() -> bytes:
    """The whole body, or 413 past MAX_CONTENT_LENGTH. With a Content-Length werkzeug checks
    the limit; a chunked body (no length) is read here to its end, so that one over the limit
    is refused as such rather than cut at it and read as broken JSON."""
    limit: int | None = current_app.config.get("MAX_CONTENT_LENGTH")
    if request.content_length is not None or not request.environ.get("wsgi.input_terminated"):
        return request.get_data(cache=False)
    stream = request.environ["wsgi.input"]
    parts: list[bytes] = []
    size = 0
    while chunk := stream.read(65536):
        size += len(chunk)
        if limit is not None and size > limit:
            raise PayloadTooLarge("request body is larger than this service accepts")
        parts.append(chunk)
    return b"".join(parts)


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
    req = parse_request(_body(decode_request), service.hook)
    g.hook_instance = req.hook_instance
    decision = state.decide(req, service, public_base_url(), g.get("issuer_fhir_servers", ()))
    g.decision = decision  # for `cds-service evaluate --explain` (the test client keeps g)
    findings, advice, cards, origin = (
        decision.findings,
        decision.advice,
        decision.cards,
        decision.origin,
    )
    silent = state.site.silent
    sent = {c["uuid"] for c in cards} if not silent else set()
    metrics.observe_decision(cards if not silent else [], findings)
    latency = (time.perf_counter() - started) * 1000
    if state.settings.audit_calls:
        state.store.record_call(
            received_at=now(),
            service_id=service.id,
            hook=req.hook,
            hook_instance=req.hook_instance,
            patient_id=req.patient_id,
            latency_ms=latency,
            silent=silent,
            data_origin=",".join(f"{k}:{v}" for k, v in sorted(origin.items())),
            verdicts=[
                VerdictRow(
                    order_ref=f.order.reference,
                    study=f.study,
                    verdict=f.verdict,
                    rule=f.reason,
                    indicator=card["indicator"] if card and card["uuid"] in sent else None,
                    card_uuid=card["uuid"] if card and card["uuid"] in sent else None,
                    consult_id=advice.consult_ids.get(f.order.reference),
                    suggestions=[s["uuid"] for s in (card or {}).get("suggestions", [])],
                    evidence=f"{f.cause.kind} {f.cause.how}" if f.cause and f.cause.how else None,
                )
                for f in findings
                for card in [advice.card_for.get(f.order.reference)]
            ],
        )
    fields: dict[str, Any] = {}
    audit = state.store.audit_status()
    if audit["waiting_s"] > 1 or audit["queued"] > AUDIT_BEHIND:  # the store is down or slow
        fields["audit_queued"] = audit["queued"]
    logger.info(
        "hook call",
        extra={
            "fields": {
                **fields,
                "event": "hook",
                "hookInstance": req.hook_instance,
                "service": service.id,
                "hook": req.hook,
                "orders": len(decision.orders),
                "cards": len(cards),
                "silent": silent,
                "outcome": [f"{f.study or '-'}:{f.verdict}:{f.reason}" for f in findings],
                "data": origin,
                "latency_ms": round(latency, 1),
                "client": g.get("client_iss"),
            }
        },
    )
    if silent:
        return _json({"cards": []})
    return _json(response_body(cards, decision.actions))


@bp.post("/cds-services/<service_id>/feedback")
def feedback(service_id: str) -> Response:
    """CDS Hooks 2.0 feedback: stored once per (card, outcome); snooze reasons take effect."""
    state = get_state()
    if service_id not in state.services:
        raise UnknownService(f"no CDS service with id {service_id!r}; see GET /cds-services")
    reasons = state.knowledge.override_reasons
    items = parse_feedback(_body(), {c.code: c.display for c in reasons.concept})
    try:
        stored = state.store.add_feedback(service_id, items)
        for item in items:
            metrics.FEEDBACK.labels(metrics.label(item.outcome, ("accepted", "overridden"))).inc()
        snoozes = 0
        for item in items:
            days = reasons.snooze_days(item.override_code or "")
            if item.outcome == "overridden" and item.card_uuid and days:
                snoozes += state.store.snooze_from_feedback(item.card_uuid, days)
    except StoreUnavailable as exc:
        # Not acknowledged: the client may send it again (each item is stored once).
        raise ServiceUnavailable(
            "feedback could not be stored now (the database is unavailable); send it again later"
        ) from exc
    logger.info(
        "feedback",
        extra={
            "fields": {
                "event": "feedback",
                "service": service_id,
                "items": len(items),
                "stored": stored,
                "snoozes": snoozes,
                "missing": sorted({m for i in items for m in i.missing}),
                "client": g.get("client_iss"),
            }
        },
    )
    return _json({"received": len(items), "stored": stored})


AUTHENTICATED = frozenset({"cds.discovery", "cds.call_service", "cds.feedback"})


@bp.before_app_request
def _authenticate() -> None:
    """Every CDS endpoint needs a valid client JWT when trusted issuers are configured."""
    verifier = get_state().verifier
    if verifier is None or request.endpoint not in AUTHENTICATED or request.method == "OPTIONS":
        return
    audience = public_base_url() + request.path
    try:
        claims = verifier.verify(request.headers.get("Authorization"), audience)
    except StoreUnavailable as exc:
        # A replay cannot be ruled out without the store: refused, said as such (not 401).
        raise ServiceUnavailable(
            "client authentication is unavailable (replay check); try again later"
        ) from exc
    issuer = verifier.issuers[claims["iss"]]
    g.client_iss = issuer.iss
    g.issuer_fhir_servers = issuer.fhir_servers


CORS_METHODS = "GET, POST, OPTIONS"
CORS_HEADERS = "Authorization, Content-Type"
CORS_MAX_AGE = "600"


@bp.after_app_request
def _headers(response: Response) -> Response:
    response.headers["X-Content-Type-Options"] = "nosniff"
    if request.path.startswith("/cds-services"):
        response.headers["Cache-Control"] = "no-store"
        origin = request.headers.get("Origin")
        if origin:
            _cors(response, origin)
    return response


def _cors(response: Response, origin: str) -> None:
    """CORS for the CDS Hooks endpoints (browser clients such as the sandbox): the configured
    origins, or any origin when unauthenticated; a preflight also gets methods and headers."""
    allowed: tuple[str, ...] = current_app.config.get("CDS_CORS_ORIGINS") or ()
    if "*" in allowed:
        response.headers["Access-Control-Allow-Origin"] = "*"
    elif origin in allowed:
        response.headers["Access-Control-Allow-Origin"] = origin
        response.vary.add("Origin")
    else:
        return
    if request.method == "OPTIONS":
        response.headers["Access-Control-Allow-Methods"] = CORS_METHODS
        response.headers["Access-Control-Allow-Headers"] = CORS_HEADERS
        response.headers["Access-Control-Max-Age"] = CORS_MAX_AGE


# Keyed by what clients send (the Host header): bounded.
_BASE_URLS: Memo[tuple[str, str, str, str, str], str] = Memo(256)


def public_base_url() -> str:
    """The service's external base URL: configured, else the one this request came in on
    (werkzeug's reading of it, remembered by the parts of the environ it is made from)."""
    configured = get_state().settings.public_base_url
    if configured:
        return configured.rstrip("/")
    environ = request.environ
    key = (
        environ.get("wsgi.url_scheme", ""),
        environ.get("HTTP_HOST", ""),
        environ.get("SERVER_NAME", ""),
        environ.get("SERVER_PORT", ""),
        environ.get("SCRIPT_NAME", ""),
    )
    found = _BASE_URLS.get(key)
    if found is None:
        found = _BASE_URLS.remember(key, request.url_root.rstrip("/"))
    return found


OPENAPI = Path(__file__).resolve().parent / "openapi.json"


@bp.get("/openapi.json")
def openapi() -> Response:
    """The OpenAPI 3 description of this service (also what the fuzz tests generate from)."""
    return Response(OPENAPI.read_bytes(), mimetype="application/json")


@bp.get(HANDOUT_PATH)
def handout() -> Response:
    """The plain-language patient handout the cards link to (phones first, printable)."""
    html = render_template("handout.html", handout=get_state().knowledge.wording.handout)
    return Response(html, mimetype="text/html")


@bp.get(GUIDANCE_PATH + "<kind>")
def guidance(kind: str) -> Response:
    """The page a card kind links to: the full rationale, talking points and sources. The same
    for every patient (no patient data in the page or its address)."""
    knowledge = get_state().knowledge
    page = knowledge.wording.pages.get(kind)
    if page is None:
        raise NotFound(f"no guidance page {kind!r}")
    guideline = knowledge.guideline
    html = render_template(
        "guidance.html",
        kind=kind,
        page=page,
        guideline=guideline,
        studies=[(k, v) for k, v in guideline.studies.items() if v.warn],
        targets=list(guideline.symptom_targets.items()),
        handout_url=HANDOUT_PATH,
    )
    return Response(html, mimetype="text/html")


@bp.get(OVERRIDE_PATH)
def override_code_system() -> Response:
    """The CodeSystem of the cards' override reasons, with its canonical URL filled in."""
    code_system = get_state().knowledge.override_reasons.model_dump(exclude_none=True)
    code_system["url"] = public_base_url() + OVERRIDE_PATH
    return Response(orjson.dumps(code_system), mimetype="application/fhir+json")
