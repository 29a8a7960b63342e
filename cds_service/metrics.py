"""Prometheus metrics: what the service counts, and their exposition for ``GET /metrics``.

Counts and timings only, with labels from small fixed sets (service ids, studies, indicators,
verdicts, rule ids, prefetch keys, outcome and reason words): never a patient id, a hookInstance
or a client-sent string beyond those sets.

Under ``cds-service serve`` every gunicorn worker writes its values to files in
``PROMETHEUS_MULTIPROC_DIR`` (a folder ``serve`` creates and removes) and ``/metrics`` adds the
workers' values up, whichever worker answers. Without that variable (tests, ``evaluate``, a
single process) the values live in this process. The variable must be set before this module is
first imported: ``prometheus_client`` chooses its value store at import time.
"""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Iterable, Mapping
from typing import Any

from .namespace import NAMESPACE

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
CONTENT_TYPE_LATEST = "text/plain; version=0.0.4; charset=utf-8"
_lock = threading.Lock()
_created: dict[str, Any] = {}


def _create() -> dict[str, Any]:
    """The metric objects, made on first use: after ``serve`` has set PROMETHEUS_MULTIPROC_DIR
    (the package is imported before any command runs, and prometheus_client picks its value
    store, in-process or files, when it is imported)."""
    from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

    registry = CollectorRegistry(auto_describe=True)
    return {
        "REGISTRY": registry,
        "HOOK_CALLS": Counter(
            "cds_hook_calls",
            "Hook calls answered, by service and outcome (ok, or the error answered)",
            ["service", "outcome"],
            registry=registry,
        ),
        "HOOK_LATENCY": Histogram(
            "cds_hook_call_duration_seconds",
            "Time to answer a hook call, from request to response, by service",
            ["service"],
            buckets=_LATENCY_BUCKETS,
            registry=registry,
        ),
        "CARDS": Counter(
            "cds_cards",
            "Cards returned, by study and indicator",
            ["study", "indicator"],
            registry=registry,
        ),
        "VERDICTS": Counter(
            "cds_verdicts",
            "Judged orders, by verdict and the rule that decided it",
            ["verdict", "rule"],
            registry=registry,
        ),
        "FHIR_QUERIES": Counter(
            "cds_fhir_queries",
            "FHIR queries made for missing prefetch, by prefetch key and result (ok, error)",
            ["key", "result"],
            registry=registry,
        ),
        "FHIR_LATENCY": Histogram(
            "cds_fhir_query_duration_seconds",
            "Time of one FHIR query (a page of a search, or a read), by prefetch key",
            ["key"],
            buckets=_LATENCY_BUCKETS,
            registry=registry,
        ),
        "FEEDBACK": Counter(
            "cds_feedback_items",
            "Feedback items received, by outcome",
            ["outcome"],
            registry=registry,
        ),
        "AUDIT_QUEUE": Gauge(
            "cds_audit_queue_depth",
            "Audit rows waiting to be written (summed over live workers)",
            registry=registry,
            multiprocess_mode="livesum",
        ),
        "AUDIT_LOST": Counter(
            "cds_audit_rows_lost",
            "Hook calls whose audit row was not written (queue full, or the batch failed)",
            ["cause"],
            registry=registry,
        ),
        "JWT_FAILURES": Counter(
            "cds_jwt_failures", "Client JWTs refused, by reason", ["reason"], registry=registry
        ),
    }


def __getattr__(name: str) -> Any:
    """``metrics.HOOK_CALLS`` and the others, created together on first use."""
    if not _created:
        with _lock:
            if not _created:
                _created.update(_create())
    try:
        return _created[name]
    except KeyError:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None


_UNKNOWN = "other"
_VARIABLE = re.compile(r"\s*\([^)]*\)|\s*'[^']*'|\s*\"[^\"]*\"")


def label(value: object, allowed: Iterable[str] | None = None) -> str:
    """A label value: the text when it is one of ``allowed`` (or, without a set, short plain
    text), else 'other', so that a client's text never makes a new series."""
    text = "" if value is None else str(value)
    if allowed is not None:
        return text if text in allowed else _UNKNOWN
    return text[:80] if text else "-"


def jwt_reason(diagnostics: str) -> str:
    """The fixed part of an authentication failure ('algorithm not accepted', 'jti replayed'),
    without the quoted or parenthesised values some reasons carry."""
    return " ".join(_VARIABLE.sub("", diagnostics).split())[:60] or _UNKNOWN


def hook_outcome(status: int) -> str:
    return {
        200: "ok",
        400: "invalid-request",
        401: "unauthorized",
        404: "unknown-service",
        405: "method-not-allowed",
        412: "prefetch-unavailable",
        413: "too-large",
    }.get(status, "server-error" if status >= 500 else f"http-{status}")


def observe_call(service: str, status: int, seconds: float) -> None:
    __getattr__("HOOK_CALLS").labels(service, hook_outcome(status)).inc()
    __getattr__("HOOK_LATENCY").labels(service).observe(seconds)


def observe_decision(cards: Iterable[Mapping[str, Any]], findings: Iterable[Any]) -> None:
    """Cards by study and indicator, verdicts by rule (findings: ``rules.Finding``)."""
    for card in cards:
        study = (card.get("extension") or {}).get(NAMESPACE, {}).get("study")
        __getattr__("CARDS").labels(label(study), label(card.get("indicator"))).inc()
    for finding in findings:
        __getattr__("VERDICTS").labels(label(finding.verdict), label(finding.reason)).inc()


def exposition() -> bytes:
    """The text exposition of every metric: summed over the workers' files under gunicorn."""
    from prometheus_client import CollectorRegistry, generate_latest, multiprocess

    if os.environ.get(MULTIPROC_ENV):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return generate_latest(registry)
    return generate_latest(__getattr__("REGISTRY"))


def mark_process_dead(pid: int) -> None:
    """Gunicorn's ``child_exit``: a dead worker's live gauges no longer count."""
    if os.environ.get(MULTIPROC_ENV):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(pid)  # type: ignore[no-untyped-call]
