"""Issue 16: /health, /ready and /metrics; gunicorn's lines as JSON, metrics summed over workers."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import create_engine, text

from cds_service import create_app

from .conftest import FIXTURES, TODAY
from .deployment import free_port, get_json, post_json, wait_for
from .test_auth import BASE, EC_KEY, ISS, SELECT, public_jwk, token, write_issuers

SEED = FIXTURES / "requests" / "seed-pet-ct.json"
OPS = ("/health", "/ready", "/metrics")


def seed() -> Any:
    return json.loads(SEED.read_text(encoding="utf-8"))


@pytest.fixture()
def ops_app(tmp_path: Path) -> Flask:
    return create_app({"today": TODAY, "instance_dir": str(tmp_path)})


@pytest.fixture()
def secure_app(tmp_path: Path) -> Flask:
    issuers = write_issuers(
        tmp_path / "issuers.json",
        [{"iss": ISS, "jwks": {"keys": [public_jwk(EC_KEY, "ec-1", "ES384")]}}],
    )
    return create_app(
        {
            "today": TODAY,
            "instance_dir": str(tmp_path),
            "jwt_issuers_file": str(issuers),
            "public_base_url": BASE,
            "cors_origins": "https://ehr.example.org",
            "metrics_token": "metrics-secret",
        }
    )


def test_health_and_ready(ops_app: Flask) -> None:
    client = ops_app.test_client()
    health = client.get("/health")
    assert (health.status_code, health.get_json()) == (200, {"status": "ok"})
    ready = client.get("/ready")
    assert ready.status_code == 200
    assert ready.get_json() == {
        "status": "ready",
        "checks": {"mappings": "ok", "database": "ok", "migrations": "ok"},
    }
    assert ready.headers["Cache-Control"] == "no-store"


def test_ready_names_an_unreachable_database(ops_app: Flask) -> None:
    store = ops_app.extensions["cds_service"].store
    real = store.engine
    store.engine = create_engine("postgresql+psycopg://nobody@127.0.0.1:9/none")
    try:
        ready = ops_app.test_client().get("/ready")
    finally:
        store.engine.dispose()
        store.engine = real
    assert ready.status_code == 503
    body = ready.get_json()
    assert body["status"] == "not ready"
    assert body["checks"]["database"] == "error (OperationalError)"
    assert "migrations" not in body["checks"]


def test_ready_says_when_the_schema_is_behind(ops_app: Flask) -> None:
    engine = ops_app.extensions["cds_service"].store.engine
    with engine.begin() as connection:
        connection.execute(text("UPDATE alembic_version SET version_num = '0000'"))
    try:
        ready = ops_app.test_client().get("/ready")
    finally:
        with engine.begin() as connection:
            connection.execute(text("UPDATE alembic_version SET version_num = '0002'"))
    assert ready.status_code == 503
    assert ready.get_json()["checks"]["migrations"] == "at 0000, head is 0002"


def test_ops_endpoints_are_outside_jwt_cors_and_discovery(secure_app: Flask) -> None:
    client = secure_app.test_client()
    origin = {"Origin": "https://ehr.example.org"}
    for path in ("/health", "/ready"):
        response = client.get(path, headers=origin, base_url=BASE)
        assert response.status_code == 200, path
        assert "Access-Control-Allow-Origin" not in response.headers
    assert client.get("/cds-services", base_url=BASE).status_code == 401  # JWT mode indeed
    discovery = secure_app.extensions["cds_service"].discovery
    assert not any(p in json.dumps(discovery) for p in OPS)


def test_metrics_need_the_token_when_one_is_set(secure_app: Flask) -> None:
    client = secure_app.test_client()
    assert client.get("/metrics").status_code == 401
    assert client.get("/metrics", headers={"Authorization": "Bearer wrong"}).status_code == 401
    response = client.get("/metrics", headers={"Authorization": "Bearer metrics-secret"})
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/plain")


def _samples(text: str) -> dict[str, float]:
    found = {}
    for line in text.splitlines():
        if line.startswith("cds_") and " " in line:
            name, value = line.rsplit(" ", 1)
            found[name] = float(value)
    return found


def test_metrics_count_calls_cards_verdicts_and_jwt_failures(secure_app: Flask) -> None:
    client = secure_app.test_client()
    auth = {"Authorization": "Bearer metrics-secret"}
    before = _samples(client.get("/metrics", headers=auth).get_data(as_text=True))
    headers = {"Authorization": f"Bearer {token()}"}
    response = client.post(SELECT, json=seed(), headers=headers, base_url=BASE)
    assert response.status_code == 200
    assert client.post(SELECT, json=seed(), headers=headers, base_url=BASE).status_code == 401
    client.post(SELECT, json=seed(), base_url=BASE)  # no token
    text = client.get("/metrics", headers=auth).get_data(as_text=True)
    after = _samples(text)

    def grew(name: str) -> float:
        return after.get(name, 0.0) - before.get(name, 0.0)

    service = 'service="breast-surveillance-order-select"'
    assert grew(f'cds_hook_calls_total{{outcome="ok",{service}}}') == 1
    assert grew(f'cds_hook_calls_total{{outcome="unauthorized",{service}}}') == 2
    assert grew('cds_cards_total{indicator="warning",study="pet-ct"}') == 1
    assert grew('cds_verdicts_total{rule="variant-10",verdict="warn"}') == 1
    assert grew(f"cds_hook_call_duration_seconds_count{{{service}}}") == 3
    assert grew('cds_jwt_failures_total{reason="jti replayed"}') == 1
    assert grew('cds_jwt_failures_total{reason="no bearer token"}') == 1
    for name in ("cds_audit_queue_depth", "cds_audit_rows_lost", "cds_fhir_queries"):
        assert f"# TYPE {name}" in text
    # Small fixed label sets: nothing a client sent, no patient data.
    assert "seed-patient" not in text and "hookInstance" not in text


def test_serve_logs_json_and_sums_metrics_over_workers(tmp_path: Path) -> None:
    """gunicorn's own lines (start, workers, access) are JSON in the service's shape, and
    /metrics adds up what every worker counted (PROMETHEUS_MULTIPROC_DIR made by serve)."""
    port = free_port()
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    env = {
        **os.environ,
        "CDS_INSTANCE_DIR": str(tmp_path),
        "CDS_TODAY": TODAY,
        "TMPDIR": str(scratch),
    }
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    log = tmp_path / "serve.log"
    with open(log, "wb") as sink:
        proc = subprocess.Popen(
            [sys.executable, "-m", "cds_service", "serve", "--port", str(port), "--workers", "2"]
            + ["--access-log"],
            env=env,
            stdout=sink,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        assert wait_for(base + "/ready", lambda: proc.poll() is None) == 200
        calls = 6
        for _ in range(calls):  # urllib: a new connection each, so both workers take some
            status, _ = post_json(base + SELECT, SEED.read_bytes())
            assert status == 200
        for _ in range(3):
            status, _ = get_json(base + "/health")
            assert status == 200
        with urllib.request.urlopen(base + "/metrics", timeout=10) as response:
            metrics = response.read().decode()
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    samples = _samples(metrics)
    key = 'cds_hook_calls_total{outcome="ok",service="breast-surveillance-order-select"}'
    assert samples[key] == calls
    lines = log.read_text(encoding="utf-8").splitlines()
    records = [json.loads(line) for line in lines if not line.startswith("cds-service: ")]
    assert len(records) == len(lines) - 1  # every line but serve's own banner is JSON
    loggers = {r["logger"] for r in records}
    assert {"gunicorn.error", "gunicorn.access", "cds_service.api"} <= loggers
    access = [r for r in records if r["logger"] == "gunicorn.access"]
    assert {"event", "method", "path", "status", "duration_ms"} <= set(access[0])
    assert {r["path"] for r in access} >= {"/ready", SELECT, "/metrics"}
    assert list(scratch.iterdir()) == []  # the metrics folder is gone with the server
