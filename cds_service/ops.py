"""Operations endpoints: ``/health``, ``/ready`` and ``/metrics``.

Outside client authentication and CORS (they are not CDS endpoints) and not in discovery. Their
answers are tiny and hold no patient data: status words, check names and numbers.

- ``GET /health``: the process answers (a liveness probe; it touches nothing else).
- ``GET /ready``: the mapping data is loaded, the database answers within READY_TIMEOUT seconds
  and its schema is at the migrations' head; 503 naming the failed check otherwise.
- ``GET /metrics``: Prometheus text; with ``CDS_METRICS_TOKEN`` set, only for
  ``Authorization: Bearer <that token>``.
"""

from __future__ import annotations

import hmac
import threading
import time
from functools import cache
from typing import Any

import orjson
from flask import Blueprint, Response, g, request
from sqlalchemy import text

from . import metrics
from .state import get_state
from .store import MIGRATIONS, Store

bp = Blueprint("ops", __name__)
READY_TIMEOUT = 2.0
OPS_ENDPOINTS = frozenset({"ops.health", "ops.ready", "ops.metrics_text"})


def _json(body: Any, status: int = 200) -> Response:
    response = Response(orjson.dumps(body), status=status, mimetype="application/json")
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.get("/health")
def health() -> Response:
    return _json({"status": "ok"})


@cache
def migrations_head() -> str | None:
    """The head revision of the packaged migrations (read once per process)."""
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    head: str | None = ScriptDirectory.from_config(config).get_current_head()
    return head


def _database_revision(store: Store, timeout: float) -> tuple[str, str | None]:
    """('ok', revision) when the database answered within ``timeout`` seconds, else
    ('error: <kind>', None). The query runs in its own thread so that a database that does
    not answer cannot hold the probe longer than that."""
    found: dict[str, Any] = {}

    def query() -> None:
        try:
            with store.engine.connect() as connection:
                found["revision"] = connection.execute(
                    text("SELECT version_num FROM alembic_version")
                ).scalar()
        except Exception as exc:  # noqa: BLE001 - any failure means "not ready"
            found["error"] = type(exc).__name__

    worker = threading.Thread(target=query, name="ready-probe", daemon=True)
    worker.start()
    worker.join(timeout)
    if worker.is_alive():
        return f"no answer within {timeout:g} s", None
    if "error" in found:
        return f"error ({found['error']})", None
    return "ok", found.get("revision")


@bp.get("/ready")
def ready() -> Response:
    state = get_state()
    checks: dict[str, str] = {}
    concepts = len(state.knowledge.codes.concepts)
    checks["mappings"] = "ok" if concepts else "no concepts loaded"
    checks["database"], revision = _database_revision(state.store, READY_TIMEOUT)
    if checks["database"] == "ok":
        head = migrations_head()
        checks["migrations"] = "ok" if revision == head else f"at {revision}, head is {head}"
    ok = all(value == "ok" for value in checks.values())
    return _json({"status": "ready" if ok else "not ready", "checks": checks}, 200 if ok else 503)


@bp.get("/metrics")
def metrics_text() -> Response:
    token = get_state().settings.metrics_token
    if token:
        scheme, _, given = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(
            given.strip().encode(), token.encode()
        ):
            response = Response(status=401)
            response.headers["WWW-Authenticate"] = 'Bearer realm="metrics"'
            return response
    response = Response(metrics.exposition(), mimetype=None)
    response.headers["Content-Type"] = metrics.CONTENT_TYPE_LATEST
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.before_app_request
def _start_clock() -> None:
    g.started = time.perf_counter()


@bp.after_app_request
def _count_hook_call(response: Response) -> Response:
    """Every answer of the service endpoint counts, errors and refused clients included."""
    if request.endpoint == "cds.call_service" and request.method == "POST":
        service_id = (request.view_args or {}).get("service_id")
        service = metrics.label(service_id, get_state().services)
        started = g.get("started")
        seconds = time.perf_counter() - started if started is not None else 0.0
        metrics.observe_call(service, response.status_code, seconds)
    return response
