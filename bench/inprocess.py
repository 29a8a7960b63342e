"""In-process timing: the Flask test client, the pure pipeline, and the JSON-parse floor.

* floor: ``orjson.loads`` (and ``json.loads``) of the request bytes: no service can answer faster
  than it can read the request.
* floor app: the bare Flask app of bench/floor_app.py through its test client (request.get_json,
  ``{"cards": []}``): the floor of the client figure.
* client: ``create_app({"today": "2026-11-25"}).test_client().post(...)``: the whole view, with
  Werkzeug's request/response machinery and the per-request log line (sent to /dev/null).
* pure: the view's pipeline without Flask, from the bytes: decode_request, parse_request,
  ``pipeline.decide`` (the service's own flow: orders, record, facts, rules and policy, cards)
  and orjson.dumps of the response. Its stages (parse, record, facts, rules, cards) are timed
  separately, through decide's ``lap``.
"""

from __future__ import annotations

import atexit
import cProfile
import io
import itertools
import json
import logging
import math
import os
import pstats
import statistics
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import orjson

from cds_service import create_app
from cds_service.hooks import decode_request, parse_request, response_body
from cds_service.state import APP_STATE_KEY

from . import floor_app
from .records import SERVICE_ID, RequestSet

TODAY = "2026-11-25"
PATH = f"/cds-services/{SERVICE_ID}"
BASE_URL = "http://localhost"
STAGES = ("parse", "record", "facts", "rules", "cards")


_DEVNULL = open(os.devnull, "w", encoding="utf-8")  # noqa: SIM115
atexit.register(_DEVNULL.close)


def quiet_service_logs(after_app: bool = False) -> None:
    """Send the service's log lines to /dev/null; they are still formatted (their cost is real).

    Before the app exists: a /dev/null handler on the ``cds_service`` logger (so that no default
    handler is installed). After: every stream handler of the service's loggers (and the root's)
    that writes to stdout or stderr is pointed at /dev/null, and ours goes if it is not alone.
    """
    logger = logging.getLogger("cds_service")
    if not after_app:
        if not any(getattr(h, "_bench_quiet", False) for h in logger.handlers):
            handler = logging.StreamHandler(_DEVNULL)
            handler.setFormatter(
                logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s")
            )
            handler._bench_quiet = True  # type: ignore[attr-defined]
            logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        logger.propagate = False
        return
    names = [n for n in logging.root.manager.loggerDict if n.startswith("cds_service")]
    for each in [logging.getLogger(), logger, *map(logging.getLogger, names)]:
        for existing in list(each.handlers):
            if getattr(existing, "_bench_quiet", False):
                if len(logger.handlers) > 1:
                    logger.removeHandler(existing)
            elif isinstance(existing, logging.StreamHandler) and existing.stream in (
                sys.stdout,
                sys.stderr,
            ):
                existing.setStream(_DEVNULL)


def percentile(samples: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100)."""
    ordered = sorted(samples)
    rank = max(math.ceil(q / 100 * len(ordered)), 1)
    return ordered[min(rank, len(ordered)) - 1]


@dataclass
class Timing:
    samples: list[float] = field(default_factory=list)  # seconds

    @property
    def p50_ms(self) -> float:
        return statistics.median(self.samples) * 1000 if self.samples else math.nan

    @property
    def p99_ms(self) -> float:
        return percentile(self.samples, 99) * 1000 if self.samples else math.nan

    def summary(self) -> dict[str, Any]:
        return {
            "n": len(self.samples),
            "p50_ms": round(self.p50_ms, 4),
            "p99_ms": round(self.p99_ms, 4),
        }


def rotation(bodies: Sequence[bytes]) -> Callable[[int], bytes]:
    return lambda i: bodies[i % len(bodies)]


_COLD = itertools.count(1_000_000)


def cold(request_set: RequestSet) -> Callable[[int], bytes]:
    """Bodies whose record resources were never seen in this process (new meta.versionId)."""
    return lambda i: request_set.cold(next(_COLD))


def measure(
    fn: Callable[[bytes], Any],
    body_for: Callable[[int], bytes],
    budget: float,
    min_n: int = 5,
    max_n: int = 5000,
    warmup: int = 2,
) -> Timing:
    """Call fn on body_for(i) until the time budget (and at least min_n calls) is spent.

    The body is made before the clock starts; only fn is timed.
    """
    for i in range(warmup):
        fn(body_for(i))
    timing = Timing()
    clock = time.perf_counter
    deadline = clock() + budget
    i = 0
    while i < max_n and (i < min_n or clock() < deadline):
        body = body_for(i)
        start = clock()
        fn(body)
        timing.samples.append(clock() - start)
        i += 1
    return timing


class Pipeline:
    """The service's view function minus Flask: ``pipeline.decide`` between the request's
    bytes and the response's, with the test client's inputs (base URL http://localhost);
    ``check`` compares its answer with the test client's."""

    def __init__(self, app: Any) -> None:
        self.state = app.extensions[APP_STATE_KEY]
        self.service = self.state.services[SERVICE_ID]
        self.stages: dict[str, list[float]] = {s: [] for s in STAGES}
        self.last_facts: Any = None

    def __call__(self, data: bytes, record_stages: bool = True) -> bytes:
        clock = time.perf_counter
        marks = [clock()]
        body = decode_request(data)
        marks.append(clock())
        state = self.state
        req = parse_request(body, self.service.hook)
        decision = state.decide(
            req,
            self.service,
            BASE_URL,
            lap=(lambda _stage: marks.append(clock())) if record_stages else None,
        )
        out = orjson.dumps(response_body(decision.cards, decision.actions))
        self.last_facts = decision.facts
        if record_stages:
            # parse | orders and record | facts | rules and policy | cards and the response
            marks[-1] = clock()
            for name, (start, end) in zip(STAGES, itertools.pairwise(marks), strict=True):
                self.stages[name].append(end - start)
        return out


def _summary_of(cards: Sequence[Mapping[str, Any]]) -> list[tuple[Any, Any]]:
    return [(c.get("indicator"), c.get("summary")) for c in cards]


@dataclass
class InProcess:
    app: Any
    client: Any
    pipeline: Pipeline
    floor_client: Any

    @classmethod
    def create(cls) -> InProcess:
        quiet_service_logs()
        app = create_app({"today": TODAY})
        quiet_service_logs(after_app=True)
        floor = floor_app.create_app()
        return cls(app, app.test_client(), Pipeline(app), floor.test_client())

    def post(self, body: bytes) -> Any:
        return self.client.post(PATH, data=body, content_type="application/json")

    def post_floor(self, body: bytes) -> Any:
        return self.floor_client.post(PATH, data=body, content_type="application/json")

    def check(self, request_set: RequestSet) -> dict[str, Any]:
        """One call per body: status, cards, facts; and whether pure == client."""
        statuses, cards, drift = [], [], []
        relevant = 0
        for body in request_set.bodies:
            response = self.post(body)
            statuses.append(response.status_code)
            answer = response.get_json(silent=True) or {}
            client_cards = answer.get("cards") or []
            cards.append(len(client_cards))
            pure = orjson.loads(self.pipeline(body, record_stages=False))
            if _summary_of(pure.get("cards") or []) != _summary_of(client_cards):
                drift.append(len(cards) - 1)
            facts = self.pipeline.last_facts
            if facts is not None:
                relevant += sum(
                    len(getattr(facts, kind))
                    for kind in ("conditions", "observations", "procedures", "medications")
                )
        n = len(request_set.bodies)
        return {
            "status": sorted(set(statuses)),
            "cards": round(sum(cards) / n, 2),
            "relevant_facts": round(relevant / n, 1),
            "pure_matches_client": not drift,
        }

    def run_set(self, request_set: RequestSet, budget: float, min_n: int) -> dict[str, Any]:
        bodies = rotation(request_set.bodies)
        info = self.check(request_set)
        floor = measure(orjson.loads, bodies, budget / 4, min_n)
        floor_json = measure(json.loads, bodies, budget / 4, min_n)
        flask_floor = measure(self.post_floor, bodies, budget / 2, min_n)
        result: dict[str, Any] = {
            "set": request_set.name,
            "kind": request_set.kind,
            "requests": len(request_set.bodies),
            "resources": request_set.resources,
            "bytes": request_set.mean_bytes,
            **info,
            "floor_orjson": floor.summary(),
            "floor_json": floor_json.summary(),
            "floor_flask": flask_floor.summary(),
        }
        for mode, body_for in (("warm", bodies), ("cold", cold(request_set))):
            client = measure(self.post, body_for, budget, min_n)
            for samples in self.pipeline.stages.values():
                samples.clear()
            pure = measure(self.pipeline, body_for, budget, min_n)
            stages = {
                name: round(statistics.median(samples) * 1000, 4)
                for name, samples in self.pipeline.stages.items()
                if samples
            }
            result[mode] = {
                "client": client.summary(),
                "pure": pure.summary(),
                "pure_stages_p50_ms": stages,
                "client_x_floor": round(client.p50_ms / floor.p50_ms, 1),
                "pure_x_floor": round(pure.p50_ms / floor.p50_ms, 1),
                "client_x_flask_floor": round(client.p50_ms / flask_floor.p50_ms, 1),
            }
        return result


def profile(
    runner: InProcess,
    request_set: RequestSet,
    seconds: float,
    path: str = "pure",
    mode: str = "cold",
    top: int = 12,
) -> dict[str, Any]:
    """cProfile the pure pipeline (or the test client) on one set; the top functions.

    Cold by default: every call's record is new, as for a patient seen for the first time.
    """
    body_for = cold(request_set) if mode == "cold" else rotation(request_set.bodies)
    call: Callable[[bytes], Any] = runner.post
    if path == "pure":
        call = partial(runner.pipeline, record_stages=False)
    call(body_for(0))
    profiler = cProfile.Profile()
    calls = 0
    deadline = time.perf_counter() + seconds
    while calls < 3 or time.perf_counter() < deadline:
        body = body_for(calls)
        profiler.enable()
        call(body)
        profiler.disable()
        calls += 1
    stats = pstats.Stats(profiler, stream=io.StringIO())
    rows = []
    for (filename, line, name), (_cc, ncalls, tottime, cumtime, _callers) in stats.stats.items():  # type: ignore[attr-defined]
        if filename.endswith(("bench/inprocess.py", "cProfile.py")) or name == "<module>":
            continue
        where = _short(filename)
        rows.append(
            {
                "function": f"{where}:{line}({name})" if line else name,
                "ncalls_per_call": round(ncalls / calls, 1),
                "tottime_ms_per_call": round(tottime / calls * 1000, 3),
                "cumtime_ms_per_call": round(cumtime / calls * 1000, 3),
            }
        )
    by_cum = sorted(rows, key=lambda r: r["cumtime_ms_per_call"], reverse=True)
    view = next((r for r in by_cum if "cds_service/" in r["function"]), None)
    if view is not None:
        # Leave out the framework's wrappers around the service's outermost function.
        by_cum = [
            r for r in by_cum if r["cumtime_ms_per_call"] < view["cumtime_ms_per_call"] or r is view
        ]
    by_cum = by_cum[:top]
    by_tot = sorted(rows, key=lambda r: r["tottime_ms_per_call"], reverse=True)[:top]
    return {
        "set": request_set.name,
        "path": path,
        "mode": mode,
        "calls": calls,
        "by_cumtime": by_cum,
        "by_tottime": by_tot,
    }


def _short(filename: str) -> str:
    for marker in ("site-packages/", "/cds_service/", "/lib/python"):
        if marker in filename:
            tail = filename.split(marker, 1)[1]
            return ("cds_service/" + tail) if marker == "/cds_service/" else tail
    return os.path.basename(filename)
