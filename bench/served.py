"""Served timing: the service and the floor app under the same gunicorn settings, on loopback.

Both servers of a pair are started on free 127.0.0.1 ports and warmed up; then each is loaded
in turn for a bounded time, several rounds, by wrk (preferred; a Lua script posts the request
bodies from temp files) or by a Python load generator (threads, one keep-alive http.client
connection each); measured (VmRSS of its workers); and stopped (SIGTERM to the master it
started, SIGKILL to its own workers if they linger). Taking turns puts a slow spell of this
shared machine on both servers, not on one.
"""

from __future__ import annotations

import contextlib
import http.client
import itertools
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from cds_service.cards import CARD_EXTENSION_KEY

from .inprocess import TODAY, percentile
from .records import MARKER, REPO, SERVICE_ID, RequestSet

HOST = "127.0.0.1"
PATH = f"/cds-services/{SERVICE_ID}"
APPS = {
    "service": "cds_service:create_app()",
    "floor": "bench.floor_app:create_app()",
    # The service's app with its pipeline answered from memory (bench/ceiling_app.py).
    "ceiling": "bench.ceiling_app:create_app()",
}


@dataclass(frozen=True)
class Settings:
    workers: int
    threads: int

    @property
    def worker_class(self) -> str:
        return "gthread" if self.threads > 1 else "sync"  # as `cds-service serve` chooses

    @property
    def label(self) -> str:
        return f"{self.workers}x{self.threads} {self.worker_class}"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        port: int = s.getsockname()[1]
        return port


def server_command(kind: str, port: int, settings: Settings, launcher: str) -> list[str]:
    if kind == "service" and launcher == "cli":
        return [
            sys.executable,
            "-m",
            "cds_service.cli",
            "serve",
            "--host",
            HOST,
            "--port",
            str(port),
            "--workers",
            str(settings.workers),
            "--threads",
            str(settings.threads),
        ]
    # The same options `cds-service serve` sets (cli.py), for both apps.
    return [
        sys.executable,
        "-m",
        "gunicorn",
        "--bind",
        f"{HOST}:{port}",
        "--workers",
        str(settings.workers),
        "--threads",
        str(settings.threads),
        "--worker-class",
        settings.worker_class,
        "--timeout",
        "30",
        "--graceful-timeout",
        "10",
        "--keep-alive",
        "5",
        "--error-logfile",
        "-",
        "--log-level",
        "info",
        "--chdir",
        str(REPO),
        *_no_control_socket(),
        APPS[kind],
    ]


def _no_control_socket() -> list[str]:
    """gunicorn >= 24 opens ~/.gunicorn/gunicorn.ctl; concurrent servers would share it."""
    try:
        from gunicorn.config import KNOWN_SETTINGS
    except ImportError:
        return []
    names = {setting.name for setting in KNOWN_SETTINGS}
    return ["--no-control-socket"] if "control_socket_disable" in names else []


class Server:
    """One gunicorn master started by the bench, and its workers."""

    def __init__(self, kind: str, settings: Settings, launcher: str, log_dir: Path) -> None:
        self.kind = kind
        self.port = free_port()
        self.log_path = log_dir / f"{kind}-{settings.workers}x{settings.threads}-{self.port}.log"
        env = dict(os.environ, CDS_TODAY=TODAY, PYTHONDONTWRITEBYTECODE="1")
        self.command = server_command(kind, self.port, settings, launcher)
        self._log = open(self.log_path, "wb")  # noqa: SIM115
        self.proc = subprocess.Popen(
            self.command,
            cwd=str(REPO),
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}{PATH}"

    def wait_ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.kind} server exited: {self.log_tail()}")
            conn = http.client.HTTPConnection(HOST, self.port, timeout=2)
            try:  # closed on every path: a refused or timed-out probe left its socket open
                conn.request("GET", "/cds-services")
                with conn.getresponse() as response:
                    if response.status == 200:
                        return
            except OSError:
                pass
            finally:
                conn.close()
            time.sleep(0.1)
        raise RuntimeError(f"{self.kind} server not ready in {timeout:.0f} s: {self.log_tail()}")

    def log_tail(self, lines: int = 5) -> str:
        self._log.flush()
        text = self.log_path.read_text(encoding="utf-8", errors="replace").strip().splitlines()
        return " | ".join(text[-lines:])

    def worker_pids(self) -> list[int]:
        return children(self.proc.pid)

    def rss(self) -> dict[str, Any]:
        workers = []
        for pid in self.worker_pids():
            status = proc_status(pid)
            if status:
                workers.append(
                    {
                        "pid": pid,
                        "rss_mib": round(status.get("VmRSS", 0) / 1024, 1),
                        "hwm_mib": round(status.get("VmHWM", 0) / 1024, 1),
                    }
                )
        master = proc_status(self.proc.pid)
        return {
            "workers": workers,
            "max_worker_rss_mib": max((w["rss_mib"] for w in workers), default=None),
            "master_rss_mib": round(master.get("VmRSS", 0) / 1024, 1) if master else None,
        }

    def cpu_seconds(self) -> float:
        """User + system CPU time of the workers (all their threads) so far."""
        return sum(cpu_seconds(pid) for pid in self.worker_pids())

    def stop(self) -> None:
        workers = self.worker_pids()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        for pid in workers:  # only the workers of the master we started
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self._log.close()


def children(pid: int) -> list[int]:
    out = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # pid (comm) state ppid ...: comm may hold spaces, so split after the last ")".
        fields = stat.rsplit(")", 1)[1].split()
        if int(fields[1]) == pid:
            out.append(int(entry.name))
    return sorted(out)


TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0.0
    fields = stat.rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime, stime


def proc_status(pid: int) -> dict[str, int]:
    """VmRSS, VmHWM, ... of /proc/<pid>/status, in KiB."""
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return {}
    out = {}
    for line in text.splitlines():
        if line.startswith("Vm"):
            key, _, value = line.partition(":")
            parts = value.split()
            if parts and parts[0].isdigit():
                out[key] = int(parts[0])
    return out


def probe(server: Server, body: bytes) -> dict[str, Any]:
    """One request before the load: the status, how many cards came back and, for each card,
    ``study:indicator`` (the study from the service's card extension)."""
    conn = http.client.HTTPConnection(HOST, server.port, timeout=30)
    try:
        conn.request("POST", PATH, body, {"Content-Type": "application/json"})
        response = conn.getresponse()
        data = response.read()
    finally:
        conn.close()
    try:
        cards = orjson.loads(data).get("cards") or []
        decided = [_decided(card) for card in cards]
    except (orjson.JSONDecodeError, AttributeError, TypeError):
        return {"status": response.status, "cards": None, "decided": []}
    return {"status": response.status, "cards": len(cards), "decided": decided}


def _decided(card: Any) -> str:
    ours = (
        ((card.get("extension") or {}).get(CARD_EXTENSION_KEY) or {})
        if isinstance(card, dict)
        else {}
    )
    indicator = card.get("indicator") if isinstance(card, dict) else None
    return f"{ours.get('study')}:{indicator}"


# --------------------------------------------------------------------------------------------
# Load generators: both return requests, duration, req/s, p50/p99 (ms) and error counts.

WRK_SCRIPT = r"""
local files = {FILES}
local cold = {COLD}
local marker = "{MARKER}"
local bodies = {}
for i, name in ipairs(files) do
  local f = assert(io.open(name, "rb"))
  bodies[i] = f:read("*a")
  f:close()
end
local headers = {["Content-Type"] = "application/json"}
local prepared = {}
local pieces = {}
local n = 0
local base = 0
-- A cold body is its template with the marker replaced by a new number. The template is split
-- at the markers once, here, so that a request costs one concat (a scan with string.gsub per
-- request made the load generator, not the server, the bottleneck for large bodies).
local function split(body)
  local parts, from = {}, 1
  while true do
    local i, j = string.find(body, marker, from, true)
    if not i then break end
    parts[#parts + 1] = string.sub(body, from, i - 1)
    from = j + 1
  end
  parts[#parts + 1] = string.sub(body, from)
  return parts
end
init = function(args)
  base = tonumber(args[1] or "0")
  for i, body in ipairs(bodies) do
    prepared[i] = wrk.format("POST", "{PATH}", headers, body)
    pieces[i] = split(body)
  end
end
request = function()
  n = n + 1
  local i = (n - 1) % #bodies + 1
  if not cold then
    return prepared[i]
  end
  local body = table.concat(pieces[i], tostring(base + n))
  return wrk.format("POST", "{PATH}", headers, body)
end
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRK_JSON {"requests": %d, "duration_us": %d, "connect": %d, "read": %d, "write": %d, ' ..
    '"status": %d, "timeout": %d, "p50_us": %d, "p90_us": %d, "p99_us": %d, "max_us": %d}\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max))
end
"""
MODES = ("warm", "cold")
_RUN_BASE = itertools.count(1)


def run_base() -> int:
    """A fresh range of versionIds for each load run: cold bodies never repeat in a run."""
    return next(_RUN_BASE) * 100_000_000


def have_wrk() -> bool:
    return shutil.which("wrk") is not None


class BodyFiles:
    """The request bodies of a set in temp files (wrk's Lua script reads them).

    warm: the same bytes every time; cold: the templates, whose MARKER (the record resources'
    meta.versionId) the load generator replaces with a new number on every request.
    """

    def __init__(self, request_set: RequestSet, mode: str) -> None:
        self.mode = mode
        self.dir = tempfile.TemporaryDirectory(prefix="cds-bench-")
        self.bodies = request_set.templates if mode == "cold" else request_set.bodies
        self.paths = []
        for i, body in enumerate(self.bodies):
            path = Path(self.dir.name) / f"body-{i}.json"
            path.write_bytes(body)
            self.paths.append(path)
        script = (
            WRK_SCRIPT.replace("{PATH}", PATH)
            .replace("{MARKER}", MARKER)
            .replace("{COLD}", "true" if mode == "cold" else "false")
            .replace("{FILES}", "{" + ", ".join(json.dumps(str(p)) for p in self.paths) + "}")
        )
        self.script = Path(self.dir.name) / "post.lua"
        self.script.write_text(script, encoding="utf-8")

    def body(self, n: int, base: int) -> bytes:
        body = self.bodies[n % len(self.bodies)]
        if self.mode == "cold":
            body = body.replace(MARKER.encode(), str(base + n).encode())
        return body

    def cleanup(self) -> None:
        self.dir.cleanup()


def run_wrk(port: int, files: BodyFiles, connections: int, duration: float) -> dict[str, Any]:
    command = [
        "wrk",
        "-t",
        "1",
        "-c",
        str(connections),
        "-d",
        f"{max(duration, 1):.0f}s",
        "--timeout",
        "10s",
        "-s",
        str(files.script),
        f"http://{HOST}:{port}{PATH}",
        "--",
        str(run_base()),
    ]
    done = subprocess.run(
        command, capture_output=True, text=True, timeout=duration + 60, check=False
    )
    line = next((ln for ln in done.stdout.splitlines() if ln.startswith("WRK_JSON ")), None)
    if line is None:
        raise RuntimeError(f"wrk gave no result: {done.stdout[-300:]} {done.stderr[-300:]}")
    raw = json.loads(line[len("WRK_JSON ") :])
    seconds = raw["duration_us"] / 1e6
    errors = {k: raw[k] for k in ("connect", "read", "write", "status", "timeout")}
    return {
        "loadgen": "wrk",
        "requests": raw["requests"],
        "seconds": round(seconds, 2),
        "rps": round(raw["requests"] / seconds, 1) if seconds else 0.0,
        "p50_ms": round(raw["p50_us"] / 1000, 2),
        "p90_ms": round(raw["p90_us"] / 1000, 2),
        "p99_ms": round(raw["p99_us"] / 1000, 2),
        "max_ms": round(raw["max_us"] / 1000, 2),
        "errors": sum(errors.values()),
        "error_kinds": {k: v for k, v in errors.items() if v},
    }


def run_python(port: int, files: BodyFiles, connections: int, duration: float) -> dict[str, Any]:
    """Threads with one keep-alive connection each; bounded by duration."""
    headers = {"Content-Type": "application/json"}
    base = run_base()
    counter = itertools.count()
    latencies: list[list[float]] = [[] for _ in range(connections)]
    errors = [{"status": 0, "read": 0} for _ in range(connections)]
    start_gate = threading.Event()
    deadline = [0.0]

    def worker(index: int) -> None:
        conn = http.client.HTTPConnection(HOST, port, timeout=10)
        mine = latencies[index]
        start_gate.wait()
        clock = time.perf_counter
        while clock() < deadline[0]:
            body = files.body(next(counter), base)
            t0 = clock()
            try:
                conn.request("POST", PATH, body, headers)
                response = conn.getresponse()
                response.read()
                if response.status != 200:
                    errors[index]["status"] += 1
                if response.getheader("Connection", "").lower() == "close":
                    conn.close()
            except (OSError, http.client.HTTPException):
                errors[index]["read"] += 1
                conn.close()
                conn = http.client.HTTPConnection(HOST, port, timeout=10)
                continue
            mine.append(clock() - t0)
        conn.close()

    threads = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(connections)]
    for t in threads:
        t.start()
    began = time.perf_counter()
    deadline[0] = began + duration
    start_gate.set()
    for t in threads:
        t.join(timeout=duration + 30)
    seconds = time.perf_counter() - began
    samples = [x for per in latencies for x in per]
    kinds = {k: sum(e[k] for e in errors) for k in ("status", "read")}
    return {
        "loadgen": "python",
        "requests": len(samples),
        "seconds": round(seconds, 2),
        "rps": round(len(samples) / seconds, 1) if seconds else 0.0,
        "p50_ms": round(percentile(samples, 50) * 1000, 2) if samples else None,
        "p90_ms": round(percentile(samples, 90) * 1000, 2) if samples else None,
        "p99_ms": round(percentile(samples, 99) * 1000, 2) if samples else None,
        "max_ms": round(max(samples) * 1000, 2) if samples else None,
        "errors": sum(kinds.values()),
        "error_kinds": {k: v for k, v in kinds.items() if v},
    }


def load(
    loadgen: str, port: int, files: BodyFiles, connections: int, duration: float
) -> dict[str, Any]:
    if loadgen == "wrk":
        return run_wrk(port, files, connections, duration)
    return run_python(port, files, connections, duration)


def _window(
    server: Server, loadgen: str, files: BodyFiles, connections: int, duration: float
) -> dict[str, Any]:
    """One measured load window on a running server, with its workers' CPU per request."""
    cpu_before = server.cpu_seconds()
    result = load(loadgen, server.port, files, connections, duration)
    cpu = server.cpu_seconds() - cpu_before
    result["cpu_ms_per_req"] = (
        round(cpu * 1000 / result["requests"], 2) if result["requests"] else None
    )
    return result


def _median_of(windows: list[dict[str, Any]]) -> dict[str, Any]:
    """The windows of one server summed up: medians of the rates, latencies and CPU per request
    (a window without a figure, e.g. no answer at all, counts as 0 req/s and is otherwise left
    out); the largest latency; requests, seconds and errors as totals."""
    out: dict[str, Any] = {"loadgen": windows[0]["loadgen"]}
    for key in ("requests", "seconds"):
        out[key] = round(sum(w[key] for w in windows), 2)
    out["rps"] = round(statistics.median(w.get("rps") or 0.0 for w in windows), 2)
    for key in ("p50_ms", "p90_ms", "p99_ms", "cpu_ms_per_req"):
        values = [w[key] for w in windows if w.get(key) is not None]
        out[key] = round(statistics.median(values), 2) if values else None
    highest = [w["max_ms"] for w in windows if w.get("max_ms") is not None]
    out["max_ms"] = max(highest) if highest else None
    out["errors"] = sum(w["errors"] for w in windows)
    kinds: dict[str, int] = {}
    for w in windows:
        for kind, n in w["error_kinds"].items():
            kinds[kind] = kinds.get(kind, 0) + n
    out["error_kinds"] = kinds
    return out


def _ratio(a: float | None, b: float | None) -> float | None:
    """a / b; None when either is unknown or b is 0 (a service answering nothing gives 0.0)."""
    return round(a / b, 3) if a is not None and b else None


def run_pair(
    request_set: RequestSet,
    settings: Settings,
    *,
    mode: str,
    loadgen: str,
    connections: int,
    duration: float,
    warmup: float,
    launcher: str,
    log_dir: Path,
    rounds: int = 1,
    app: str = "service",
) -> dict[str, Any]:
    """The service and the floor app, with the same settings, bytes and load, both running;
    measured in turn (service, floor) ``rounds`` times, so that a slow spell of the machine
    falls on both. Each server's figures are medians over its windows (``_median_of``); the
    ratios pair the windows of one round: ``ratio`` and ``cpu_ratio`` are the medians of the
    rounds' own ratios, not quotients of the two medians (each round is in ``rounds``).
    ``app`` is what stands in the service's place: the service, or the "ceiling" app."""
    rounds = max(rounds, 1)
    files = BodyFiles(request_set, mode)
    servers: dict[str, Server] = {}
    with contextlib.ExitStack() as stack:  # every server stopped, files removed, whatever fails
        stack.callback(files.cleanup)
        for kind, app_kind in (("service", app), ("floor", "floor")):
            servers[kind] = Server(app_kind, settings, launcher, log_dir)
            stack.callback(servers[kind].stop)
        for server in servers.values():
            server.wait_ready()
        checked = {
            kind: probe(server, files.body(0, run_base())) for kind, server in servers.items()
        }
        if warmup > 0:
            for server in servers.values():
                load(loadgen, server.port, files, connections, warmup)
        windows: dict[str, list[dict[str, Any]]] = {kind: [] for kind in servers}
        for _ in range(rounds):
            for kind, server in servers.items():
                windows[kind].append(_window(server, loadgen, files, connections, duration))
        runs = {}
        for kind, server in servers.items():
            runs[kind] = _median_of(windows[kind])
            runs[kind]["probe"] = checked[kind]
            runs[kind]["memory"] = server.rss()
            runs[kind]["command"] = " ".join(server.command[1:]).replace(str(REPO), ".")
    service, floor = runs["service"], runs["floor"]
    each = [
        {
            "ratio": _ratio(s.get("rps") or 0.0, f.get("rps")),
            # Throughput ratio if both had the CPUs to themselves: floor CPU/request over service's.
            "cpu_ratio": _ratio(f.get("cpu_ms_per_req"), s.get("cpu_ms_per_req")),
            "service_rps": s.get("rps"),
            "floor_rps": f.get("rps"),
            "service_p99_ms": s.get("p99_ms"),
            "floor_p99_ms": f.get("p99_ms"),
            "service_errors": s["errors"],
            "floor_errors": f["errors"],
        }
        for s, f in zip(windows["service"], windows["floor"], strict=True)
    ]
    ratios = [r["ratio"] for r in each if r["ratio"] is not None]
    cpu = [r["cpu_ratio"] for r in each if r["cpu_ratio"] is not None]
    return {
        "set": request_set.name,
        "app": app,
        "mode": mode,
        "settings": settings.label,
        "workers": settings.workers,
        "threads": settings.threads,
        "connections": connections,
        "service": service,
        "floor": floor,
        "ratio": round(statistics.median(ratios), 3) if ratios else None,
        "ratio_range": [min(ratios), max(ratios)] if ratios else None,
        "rounds": each,
        "cpu_ratio": round(statistics.median(cpu), 3) if cpu else None,
    }
