"""The benchmark's own machinery (bench/): served rounds against real gunicorn servers, and how
windows and targets are summed up. No timing is asserted: only that the figures are made, and
made from the right windows."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from bench import served
from bench.__main__ import targets
from bench.records import seed_set


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
        [_window(100, 30), _window(300, 10, errors=2), _window(200, 20, errors=1, kind="read")]
    )
    assert summed["rps"] == 200 and summed["p99_ms"] == 20
    assert summed["requests"] == 600 and summed["seconds"] == 3.0
    assert summed["errors"] == 3 and summed["error_kinds"] == {"status": 2, "read": 1}


def _served(ratio: float, p99: float, errors: int = 0) -> dict[str, Any]:
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
    ],
)
def test_the_seed_target_needs_ratio_p99_and_no_errors(
    ratio: float, p99: float, errors: int, result: str
) -> None:
    [seed, *_] = targets([], [_served(ratio, p99, errors)], "4x1 sync")
    assert seed["target"] == "seed served (warm)"
    assert seed["result"] == result


def test_served_rounds_take_turns_on_real_servers(tmp_path: Path) -> None:
    """Both apps under gunicorn, two rounds each (Python load generator): the service answers
    the seed with its card, the floor with none, and each round is reported."""
    result = served.run_pair(
        seed_set(),
        served.Settings(1, 1),
        mode="warm",
        loadgen="python",
        connections=2,
        duration=0.3,
        warmup=0.0,
        launcher="gunicorn",
        log_dir=tmp_path,
        rounds=2,
    )
    assert result["service"]["probe"] == {"status": 200, "cards": 1}
    assert result["floor"]["probe"] == {"status": 200, "cards": 0}
    assert len(result["rounds"]) == 2
    for kind in ("service", "floor"):
        run = result[kind]
        assert run["errors"] == 0 and run["requests"] > 0
        assert run["memory"]["workers"], "the worker's memory was read"
    low, high = result["ratio_range"]
    assert low <= result["ratio"] <= high
    assert all(r["service_rps"] > 0 and r["floor_rps"] > 0 for r in result["rounds"])


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
    ("at_5000", "result"),
    [(60.0, "PASS"), (200.0, "FAIL"), (9.0, "SKIP")],  # 9 ms: less than at 1,000, i.e. noise
)
def test_linear_growth_is_judged_only_when_the_costs_grow(at_5000: float, result: str) -> None:
    sets = [_synthetic(100, 2.0, 0.5), _synthetic(1000, 12.0, 5.0), _synthetic(5000, at_5000, 25.0)]
    found = {t["target"]: t for t in targets(sets, [], "4x1 sync")}
    assert found["linear growth (warm)"]["result"] == result
