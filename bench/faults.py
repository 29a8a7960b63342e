"""Figures for issue 15 (README, Security): ``python -m bench.faults [--slow N] [--calls N]
[--outage SECONDS]``.

1. Slow clients: ``cds-service serve`` (default workers) with N connections trickling headers
   or a body, and the WSGI app under plain gunicorn sync workers for comparison; normal calls
   sent one after another on a fresh connection each, with a 5 s timeout: answered and latency.
2. Audit across a database outage (PostgreSQL from CDS_TEST_DATABASE_URL, through a proxy that
   goes down for ``--outage`` seconds): hook calls acknowledged (200) against audit rows stored.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import requests

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.faults import SlowClients, TcpProxy  # noqa: E402

PATH = "/cds-services/breast-surveillance-order-select"
SEED = json.loads((REPO / "fixtures" / "requests" / "seed-pet-ct.json").read_text())


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def start(kind: str, env: dict[str, str], instance: str) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    if kind == "serve":
        command = [sys.executable, "-m", "cds_service.cli", "serve", "--port", str(port)]
    else:
        workers = str(min(2 * (os.cpu_count() or 1), 8))
        command = [sys.executable, "-m", "gunicorn", "-b", f"127.0.0.1:{port}", "-w", workers]
        command += ["--control-socket", f"{instance}/g.ctl", "cds_service:create_app()"]
    proc = subprocess.Popen(
        command,
        env={**os.environ, "CDS_INSTANCE_DIR": instance, "CDS_TODAY": "2026-11-25", **env},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        cwd=REPO,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            requests.get(base + "/cds-services", timeout=2)
            return proc, base
        except requests.RequestException:
            time.sleep(0.2)
    proc.kill()
    raise RuntimeError(f"{kind} did not start")


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def call(base: str, timeout: float = 5.0) -> tuple[int, float]:
    body = dict(SEED, hookInstance=str(uuid.uuid4()))
    started = time.perf_counter()
    try:
        response = requests.post(
            base + PATH, json=body, timeout=timeout, headers={"Connection": "close"}
        )
        return response.status_code, time.perf_counter() - started
    except requests.RequestException:
        return 0, time.perf_counter() - started


def slow_clients(kind: str, slow: int, calls: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as instance:
        proc, base = start(kind, {}, instance)
        try:
            for _ in range(5):
                call(base)  # warm up every worker
            port = int(base.rsplit(":", 1)[1])
            clients = SlowClients(port, PATH, count=slow) if slow else None
            try:
                results = [call(base) for _ in range(calls)]
                held = clients.still_open() if clients else 0
            finally:
                if clients:
                    clients.close()
        finally:
            stop(proc)
    answered = sorted(t for status, t in results if status == 200)
    return {
        "server": kind,
        "slow_connections": slow,
        "held_open_at_end": held,
        "calls": calls,
        "answered": len(answered),
        "p50_ms": round(statistics.median(answered) * 1000, 1) if answered else None,
        "p99_ms": round(answered[int(len(answered) * 0.99) - 1] * 1000, 1) if answered else None,
        "max_ms": round(answered[-1] * 1000, 1) if answered else None,
    }


def audit_outage(outage: float) -> dict[str, Any]:
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    server = os.environ.get("CDS_TEST_DATABASE_URL")
    if not server:
        return {"skipped": "CDS_TEST_DATABASE_URL is not set"}
    name = f"cds_bench_{uuid.uuid4().hex[:10]}"
    admin = create_engine(server, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    url = make_url(server).set(database=name)
    proxy = TcpProxy(url.port or 5432)
    proxied = url.set(port=proxy.port).render_as_string(hide_password=False)
    try:
        with tempfile.TemporaryDirectory() as instance:
            proc, base = start("serve", {"CDS_DATABASE_URL": proxied}, instance)
            statuses: list[int] = []
            try:
                stop_at = time.monotonic() + outage + 6
                outage_from = time.monotonic() + 3
                down = False
                while time.monotonic() < stop_at:
                    now = time.monotonic()
                    if not down and now >= outage_from:
                        proxy.down()
                        down = True
                    if down and now >= outage_from + outage and proxy.mode == "down":
                        proxy.restore()
                    statuses.append(call(base)[0])
                    time.sleep(0.1)
                time.sleep(outage)  # let the retries run
            finally:
                stop(proc)
        engine = create_engine(url.render_as_string(hide_password=False))
        with engine.connect() as connection:
            stored = connection.execute(text("SELECT count(*) FROM calls")).scalar_one()
        engine.dispose()
    finally:
        proxy.close()
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()
    return {
        "outage_s": outage,
        "calls": len(statuses),
        "acknowledged": statuses.count(200),
        "other_statuses": sorted({s for s in statuses if s != 200}),
        "audit_rows_stored": stored,
    }


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.faults", description=__doc__)
    parser.add_argument("--slow", type=int, default=50)
    parser.add_argument("--calls", type=int, default=100)
    parser.add_argument("--outage", type=float, default=14.0)
    args = parser.parse_args()
    report = [
        slow_clients("serve", 0, args.calls),
        slow_clients("serve", args.slow, args.calls),
        slow_clients("gunicorn-sync", args.slow, min(args.calls, 13)),
        audit_outage(args.outage),
    ]
    for line in report:
        print(json.dumps(line))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
