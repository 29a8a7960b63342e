"""The benchmark's own machinery (bench/): served rounds against real gunicorn servers, and how
windows and targets are summed up. No timing is asserted: only that the figures are made, and
made from the right windows."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import orjson
import pytest
import requests

from bench import records, served
from bench.__main__ import targets
from bench.records import seed_set
from cds_service.state import APP_STATE_KEY


def _window(rps: float, p99: float, errors: int = 0, kind: str = "status") -> dict[str, Any]:
    return {
        "loadgen": "python",
        "requests": int(rps),
        "seconds": 1.0,
        "rps": rps,
        "p50_ms": p99 / 2,
        "p90_ms": p99 * 0.9,
        "p99_ms": p99,
        "max_ms": p99 * 1.2,
        "cpu_ms_per_req": 1.0,
        "errors": errors,
        "error_kinds": {kind: errors} if errors else {},
    }


def test_windows_sum_up_as_medians_with_every_error_counted() -> None:
    summed = served._median_of(
        [
            _window(100, 10),
            _window(110, 11, errors=2),
            _window(1000, 100, errors=1, kind="read"),  # an outlier the median leaves out
        ]
    )
    assert summed["rps"] == 110 and summed["p99_ms"] == 11
    assert summed["max_ms"] == 120  # the largest of all windows
    assert summed["requests"] == 1210 and summed["seconds"] == 3.0
    assert summed["errors"] == 3 and summed["error_kinds"] == {"status": 2, "read": 1}


def test_a_round_with_no_answer_counts_as_zero_not_as_missing() -> None:
    assert served._ratio(0.0, 500.0) == 0.0
    assert served._ratio(500.0, 0.0) is None
    silent = _window(0, 10)
    silent["rps"], silent["p99_ms"] = 0.0, None
    assert served._median_of([silent, _window(100, 10), _window(0, 10)])["rps"] == 0


def _served(ratio: float | None, p99: float | None, errors: int = 0) -> dict[str, Any]:
    return {
        "set": "seed",
        "mode": "warm",
        "settings": "4x1 sync",
        "ratio": ratio,
        "service": {"p99_ms": p99, "errors": errors, "memory": {"max_worker_rss_mib": 90.0}},
    }


@pytest.mark.parametrize(
    ("ratio", "p99", "errors", "result"),
    [
        (0.70, 25.0, 0, "PASS"),
        (0.69, 20.0, 0, "FAIL"),
        (0.90, 25.1, 0, "FAIL"),
        (0.90, 20.0, 1, "FAIL"),
        (None, None, 0, "FAIL"),  # nothing measured
    ],
)
def test_the_seed_target_needs_ratio_p99_and_no_errors(
    ratio: float | None, p99: float | None, errors: int, result: str
) -> None:
    [seed, *_] = targets([], [_served(ratio, p99, errors)], "4x1 sync")
    assert seed["target"] == "seed served (warm)"
    assert seed["result"] == result


def _small_pair(
    tmp_path: Path,
    rounds: int = 1,
    app: str = "service",
    request_set: records.RequestSet | None = None,
) -> dict[str, Any]:
    """A short served pair on real gunicorn servers (the seed unless told): one sync worker
    each, the Python load generator with two connections, 0.3 s windows."""
    return served.run_pair(
        request_set or seed_set(),
        served.Settings(1, 1),
        mode="warm",
        loadgen="python",
        connections=2,
        duration=0.3,
        warmup=0.0,
        launcher="gunicorn",
        log_dir=tmp_path,
        rounds=rounds,
        app=app,
    )


def test_served_rounds_take_turns_on_real_servers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Both apps under gunicorn at once, loaded in turn for three rounds (Python load
    generator): the service answers the seed with its card, the floor with none, every round
    is reported, and both servers are stopped afterwards."""
    loaded: list[int] = []
    real_load = served.load

    def load(loadgen: str, port: int, *rest: Any) -> dict[str, Any]:
        loaded.append(port)
        return real_load(loadgen, port, *rest)

    started: list[served.Server] = []
    real_server = served.Server

    def server(*args: Any) -> served.Server:
        started.append(real_server(*args))
        return started[-1]

    monkeypatch.setattr(served, "load", load)
    monkeypatch.setattr(served, "Server", server)
    result = _small_pair(tmp_path, rounds=3)
    service, floor = (s.port for s in started)
    assert loaded == [service, floor] * 3
    assert all(s.proc.poll() is not None for s in started), "both servers were stopped"
    assert result["service"]["probe"] == {
        "status": 200,
        "cards": 1,
        "decided": records.seed_expected(),
    }
    assert result["floor"]["probe"] == {"status": 200, "cards": 0, "decided": []}
    assert len(result["rounds"]) == 3
    for kind in ("service", "floor"):
        run = result[kind]
        assert run["errors"] == 0 and run["requests"] > 0
        assert run["memory"]["workers"], "the worker's memory was read"
    ratios = sorted(r["ratio"] for r in result["rounds"])
    assert result["ratio"] == ratios[1] and result["ratio_range"] == [ratios[0], ratios[2]]


def _synthetic(resources: int, client_ms: float, floor_ms: float) -> dict[str, Any]:
    timing = {"client": {"p50_ms": client_ms, "p99_ms": client_ms}, "pure": {"p50_ms": 1.0}}
    return {
        "set": f"synthetic-{resources}",
        "kind": "synthetic",
        "resources": resources,
        "floor_orjson": {"p50_ms": floor_ms},
        "warm": timing,
        "cold": timing,
    }


@pytest.mark.parametrize(
    ("at_1000", "at_5000", "result"),
    [
        (12.0, 60.0, "PASS"),
        (12.0, 200.0, "FAIL"),
        (12.0, 9.0, "SKIP"),  # 9 ms at 5,000: less than at 1,000, i.e. noise
        (6.0, 60.0, "FAIL"),  # no cost added from 100 to 1,000, then a steep one
    ],
)
def test_linear_growth_is_judged_only_when_the_costs_grow(
    at_1000: float, at_5000: float, result: str
) -> None:
    sets = [
        _synthetic(100, 2.0, 0.5),
        _synthetic(1000, at_1000, 5.0),
        _synthetic(5000, at_5000, 25.0),
    ]
    found = {t["target"]: t for t in targets(sets, [], "4x1 sync")}
    assert found["linear growth (warm)"]["result"] == result


def test_the_ceiling_app_runs_the_view_shell_with_the_pipeline_answered_from_memory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """bench/ceiling_app.py: the service's own app whose ``pipeline.decide`` hands back the seed's
    decision. Every call still goes through the view: the seed's card (fresh uuids each time),
    one audit row per call with its verdict, whatever request is sent (the pipeline never
    runs); the real ``decide`` is back after the test."""
    from sqlalchemy import select

    from bench import ceiling_app
    from cds_service import create_app, pipeline
    from cds_service.state import APP_STATE_KEY
    from cds_service.store import AuditedVerdict, Call

    monkeypatch.setenv("CDS_INSTANCE_DIR", str(tmp_path))
    monkeypatch.setenv("CDS_TODAY", "2026-11-25")
    monkeypatch.setattr(pipeline, "decide", pipeline.decide)  # restored when the test ends
    real_decide = pipeline.decide
    app = ceiling_app.create_app()
    assert pipeline.decide is not real_decide
    seed = seed_set().bodies[0]
    other = (Path(__file__).parents[1] / "fixtures/requests/new-bone-pain.json").read_bytes()
    client = app.test_client()
    answers = [
        client.post(ceiling_app.PATH, data=body, content_type="application/json").get_json()
        for body in (seed, seed, other)
    ]

    monkeypatch.setattr(pipeline, "decide", real_decide)
    service = create_app({"instance_dir": str(tmp_path / "real"), "today": "2026-11-25"})
    real = service.test_client().post(ceiling_app.PATH, data=seed, content_type="application/json")
    expected = real.get_json()["cards"]
    assert len(expected) == 1
    same = ("summary", "indicator", "detail", "source", "links", "overrideReasons")
    for answer in answers:
        (card,) = answer["cards"]
        assert [card[k] for k in same] == [expected[0][k] for k in same]
        assert answer["systemActions"][0]["type"] == "update"
    assert len({a["cards"][0]["uuid"] for a in answers}) == 3, "a new card uuid every call"
    store = app.extensions[APP_STATE_KEY].store
    store.flush()
    assert store.count(Call) == 3  # deciding once at start-up is not a call
    with store.session() as session:
        stored = set(session.scalars(select(AuditedVerdict.card_uuid)))
    assert stored == {a["cards"][0]["uuid"] for a in answers}, "each call audited with its card"


def test_the_ceiling_app_is_served_in_the_service_place(tmp_path: Path) -> None:
    """``run_pair(app="ceiling")`` starts bench/ceiling_app.py under gunicorn where the service
    would stand: it answers the seed with its card, under load, without errors."""
    result = _small_pair(tmp_path, app="ceiling")
    assert result["app"] == "ceiling"
    assert result["service"]["probe"] == {
        "status": 200,
        "cards": 1,
        "decided": records.seed_expected(),
    }
    assert result["service"]["errors"] == 0 and result["service"]["requests"] > 0
    assert any(p.name.startswith("ceiling-") for p in tmp_path.iterdir()), "its own log file"


def test_seed_fhir_is_answered_from_the_fhir_server(tmp_path: Path) -> None:
    """``--fhir``: the test FHIR server holds the seed's record, the seed-fhir request carries
    no prefetch, and the service under gunicorn reads the record from that server (the server
    saw its queries) to give the seed's warning card."""
    from bench.__main__ import start_fhir

    from .fhir_server import node_available

    reason = node_available()
    if reason is not None:
        pytest.skip(reason)
    with contextlib.ExitStack() as stack:
        request_set, info, cpu = start_fhir(stack, 0.0)
        assert request_set is not None and info["latency_ms"] == 0.0
        body = orjson.loads(request_set.bodies[0])
        assert "prefetch" not in body and body["fhirServer"] == info["base"]
        assert request_set.resources == len(records.seed_record()) == 10
        assert cpu is not None and cpu() > 0
        result = _small_pair(tmp_path, request_set=request_set)
        assert result["service"]["probe"] == {
            "status": 200,
            "cards": 1,
            "decided": records.seed_expected(),
        }
        assert result["service"]["errors"] == 0
        parts = urlsplit(info["base"])
        seen = requests.get(f"{parts.scheme}://{parts.netloc}/_control/requests", timeout=30)
        urls = [r["url"] for r in seen.json()]
        assert "/fhir/Patient/seed-patient" in urls
        assert any(u.startswith("/fhir/Condition?patient=seed-patient") for u in urls)


def test_a_seed_run_that_decides_otherwise_is_a_problem() -> None:
    """The seed, seed-fhir and the ceiling are compared as the same decision: a probe whose
    cards are not the seed's expected ones (fixtures/cases.json) is reported, naming the run."""
    from bench.__main__ import seed_answers_differ

    def run(name: str, decided: list[str], app: str = "service") -> dict[str, Any]:
        probe = {"status": 200, "cards": len(decided), "decided": decided}
        return {
            "set": name,
            "mode": "warm",
            "settings": "4x1 sync",
            "app": app,
            "service": {"probe": probe},
        }

    expected = records.seed_expected()
    assert expected == ["pet-ct:warning"]
    good = [run("seed", expected), run("seed-fhir", expected), run("seed", expected, "ceiling")]
    assert seed_answers_differ(good) == []
    other = run("synthea:x", [])  # other sets decide what their records say
    assert seed_answers_differ([*good, other]) == []
    (problem,) = seed_answers_differ([*good, run("seed-fhir", [])])
    assert problem.startswith("seed-fhir warm 4x1 sync service:")


def test_the_in_process_pipeline_times_each_stage_once_and_answers_as_the_client() -> None:
    """bench/inprocess.py's Pipeline runs ``pipeline.decide`` with a lap per stage: one timing
    per stage per call (parse, record, facts, rules, cards), and the same cards as the test
    client."""
    from bench.inprocess import STAGES, InProcess

    runner = InProcess.create()
    try:
        body = seed_set().bodies[0]
        answer = orjson.loads(runner.pipeline(body))
        assert {name: len(times) for name, times in runner.pipeline.stages.items()} == {
            name: 1 for name in STAGES
        }
        assert all(t >= 0 for times in runner.pipeline.stages.values() for t in times)
        client = runner.post(body).get_json()
        assert [c["summary"] for c in answer["cards"]] == [c["summary"] for c in client["cards"]]
        assert answer["cards"] and answer["cards"][0]["indicator"] == "warning"
    finally:
        runner.app.extensions[APP_STATE_KEY].store.close()
