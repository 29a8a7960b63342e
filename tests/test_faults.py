"""Issue 15: faults injected, not hoped for. A database frozen (a proxy that stops forwarding;
a SQLite write lock) or down (a proxy that closes and refuses connections), on SQLite and on
PostgreSQL: hook calls still answer with the rules' cards, feedback gets a 503 and is stored
exactly once when sent again, JWT calls get a 503 instead of hanging, and every answered call
is audited once the store is back. Bounds here are functional (answered, not hung), never
performance targets."""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import event, text

from cds_service import create_app
from cds_service.store import Call, Feedback, Store, upgrade

from .conftest import FIXTURES, TODAY, load_json
from .faults import StoreFault, store_fault, within

SELECT = "/cds-services/breast-surveillance-order-select"
FEEDBACK = SELECT + "/feedback"
BOUND = 30.0  # seconds: "answered" against "hung" (the targets are 1-5 s)


def seed(patient: str | None = None) -> dict[str, Any]:
    body: dict[str, Any] = load_json(FIXTURES / "requests" / "seed-pet-ct.json")
    body["hookInstance"] = str(uuid.uuid4())
    if patient is not None:  # a patient whose snoozes are not cached yet
        old = body["context"]["patientId"]
        # The whole record moves to the new patient (its subjects too: a record of another
        # patient than context.patientId is refused).
        text = json.dumps(body).replace(f'"Patient/{old}"', f'"Patient/{patient}"')
        body = json.loads(text)
        body["context"]["patientId"] = patient
        for value in body.get("prefetch", {}).values():
            if isinstance(value, dict) and value.get("resourceType") == "Patient":
                value["id"] = patient
    return body


@pytest.fixture()
def fault(db_url: str, tmp_path: Path) -> Iterator[StoreFault]:
    upgrade(db_url, tmp_path)
    with store_fault(db_url) as injected:
        yield injected


@pytest.fixture()
def make_app(fault: StoreFault, tmp_path: Path) -> Iterator[Callable[..., Flask]]:
    apps: list[Flask] = []

    def make(**extra: Any) -> Flask:
        app = create_app(
            {"today": TODAY, "database_url": fault.url, "instance_dir": str(tmp_path), **extra}
        )
        apps.append(app)
        return app

    yield make
    fault.restore()
    for app in apps:
        app.extensions["cds_service"].store.close()


def store_of(app: Flask) -> Store:
    store: Store = app.extensions["cds_service"].store
    return store


def warned(response: Any) -> bool:
    return response.status_code == 200 and any(
        card.get("indicator") == "warning" for card in response.get_json()["cards"]
    )


@pytest.mark.parametrize("kind", ["freeze", "down"])
def test_calls_answer_and_feedback_is_kept_while_the_store_is_out(
    make_app: Callable[..., Flask], fault: StoreFault, kind: str, caplog: pytest.LogCaptureFixture
) -> None:
    app = make_app()
    client = app.test_client()
    assert warned(client.post(SELECT, json=seed()))
    answered = 1
    getattr(fault, kind)()
    for _ in range(3):
        response = within(BOUND, lambda: client.post(SELECT, json=seed(str(uuid.uuid4()))))
        assert warned(response), response.get_data(as_text=True)
        answered += 1
    store = store_of(app)
    for _ in range(300):  # until the audit's batch has waited over a second (bounded loop)
        if store.audit_status()["waiting_s"] > 1:
            break
        time.sleep(0.1)
    assert warned(within(BOUND, lambda: client.post(SELECT, json=seed(str(uuid.uuid4())))))
    answered += 1
    item = {"card": str(uuid.uuid4()), "outcome": "accepted", "acceptedSuggestions": []}
    refused = within(BOUND, lambda: client.post(FEEDBACK, json={"feedback": [item]}))
    assert refused.status_code == 503
    assert refused.get_json()["resourceType"] == "OperationOutcome"
    fault.restore()
    again = within(BOUND, lambda: client.post(FEEDBACK, json={"feedback": [item]}))
    assert again.status_code == 200
    store.flush(BOUND)
    assert store.count(Feedback) == 1
    assert store.count(Call) == answered  # retried until the store came back
    assert store.audit_status() == {"queued": 0, "waiting_s": 0, "lost": 0}
    depths = [
        r.fields.get("audit_queued", 0)
        for r in caplog.records
        if getattr(r, "fields", {}).get("event") == "hook"
    ]
    assert max(depths) >= 1  # the hook log line reported the audit falling behind


def test_a_row_the_database_refuses_loses_only_itself(
    make_app: Callable[..., Flask], caplog: pytest.LogCaptureFixture
) -> None:
    store = store_of(make_app())
    good = [str(uuid.uuid4()) for _ in range(5)]
    for hook_instance in [*good[:3], "h" * 150, *good[3:]]:  # past the door's check
        store.record_call(
            received_at=datetime.now(UTC),
            service_id="s",
            hook="order-select",
            hook_instance=hook_instance,
            patient_id=None,
            latency_ms=1.0,
            silent=False,
            data_origin="",
            verdicts=[],
        )
    store.flush(BOUND)
    stored = store.count(Call)
    lost = store.audit_status()["lost"]
    assert stored >= 5 and stored + lost == 6  # SQLite keeps the long one, PostgreSQL refuses it
    if lost:
        assert "audit-lost" in caplog.text or "not audited" in caplog.text


def test_a_database_error_is_logged_without_its_parameters(
    make_app: Callable[..., Flask], caplog: pytest.LogCaptureFixture
) -> None:
    app = make_app()
    with store_of(app).engine.begin() as connection:
        connection.execute(text("DROP TABLE feedback"))
    comment = "SENTINEL-COMMENT-" + uuid.uuid4().hex
    item = {
        "card": str(uuid.uuid4()),
        "outcome": "overridden",
        "overrideReason": {"reason": {"code": "other"}, "userComment": comment},
    }
    with caplog.at_level(logging.DEBUG):
        response = app.test_client().post(FEEDBACK, json={"feedback": [item]})
    assert response.status_code == 503
    assert response.get_json()["resourceType"] == "OperationOutcome"
    assert "store-unavailable" in caplog.text or "store unavailable" in caplog.text
    assert comment not in caplog.text
    for record in caplog.records:
        assert comment not in record.getMessage()
        assert record.exc_info is None or comment not in str(record.exc_info[1])


def test_a_store_error_on_the_hook_read_path_is_never_a_500(
    make_app: Callable[..., Flask],
) -> None:
    app = make_app()
    with store_of(app).engine.begin() as connection:
        connection.execute(text("DROP TABLE snoozes"))
    response = app.test_client().post(SELECT, json=seed(str(uuid.uuid4())))
    assert warned(response)  # snooze unknown: the rules' card goes out


def test_a_new_connection_sets_no_journal_mode(db_url: str, tmp_path: Path) -> None:
    """The embedded default: WAL is set once at start-up; a new pooled connection (a hook's
    snooze read) only sets per-connection pragmas that take no lock."""
    if not db_url.startswith("sqlite"):
        pytest.skip("journal mode and pragmas are SQLite's")
    upgrade(db_url, tmp_path)
    store = Store(db_url, b"k" * 32)
    statements: list[str] = []
    event.listen(
        store.engine,
        "connect",
        lambda dbapi, _record: dbapi.set_trace_callback(statements.append),
        insert=True,
    )
    try:
        store.engine.dispose()
        assert store.snoozed_studies("p", date(2026, 1, 1)) == frozenset()
        with store.engine.connect() as connection:
            mode = connection.exec_driver_sql("PRAGMA journal_mode").scalar()
    finally:
        store.close()
    assert str(mode).lower() == "wal"
    assert statements and not [s for s in statements if "journal_mode=" in s.lower()]
    assert any("busy_timeout" in s.lower() for s in statements)


@pytest.mark.parametrize("kind", ["freeze", "down"])
def test_jwt_calls_are_refused_with_503_not_hung_while_the_store_is_out(
    make_app: Callable[..., Flask], fault: StoreFault, tmp_path: Path, kind: str
) -> None:
    from .test_auth import BASE, EC_KEY, ISS, public_jwk, token, write_issuers

    issuers = write_issuers(
        tmp_path / "issuers.json",
        [{"iss": ISS, "jwks": {"keys": [public_jwk(EC_KEY, "ec-1", "ES384")]}}],
    )
    app = make_app(jwt_issuers_file=str(issuers), public_base_url=BASE, cors_origins="")
    client = app.test_client()

    def call() -> Any:
        return client.post(SELECT, json=seed(), headers={"Authorization": f"Bearer {token()}"})

    assert call().status_code == 200
    getattr(fault, kind)()
    refused = within(BOUND, call)
    assert refused.status_code == 503
    assert refused.get_json()["resourceType"] == "OperationOutcome"
    fault.restore()
    assert within(BOUND, call).status_code == 200


# --- 7. the FHIR budget is a wall clock; one slow server starves no other -------------------


@pytest.fixture()
def trickling() -> Iterator[Any]:
    from .faults import TricklingServer

    server = TricklingServer()
    yield server
    server.close()


def test_a_trickling_fhir_server_is_cut_off_at_the_deadline(trickling: Any) -> None:
    import time

    from cds_service.fhir.client import FhirClient, FhirUnavailable, fhir_pool

    pool = fhir_pool()
    client = FhirClient(pool, trickling.base, None, time.monotonic() + 0.5)
    # The trickle would last 30 s: the query must end long before (10 x the budget is the
    # functional bound, not a latency target).
    with pytest.raises(FhirUnavailable):
        within(10, lambda: client.get("Patient/x", "patient"))
    pool.clear()


def test_a_tls_handshake_trickled_byte_by_byte_is_cut_off_at_the_deadline() -> None:
    """CPython bounds a whole TLS handshake by the socket timeout (the connect timeout here,
    within the budget), so the watchdog only needs to guard the response: held here."""
    import time

    from cds_service.fhir.client import FhirClient, FhirUnavailable, fhir_pool

    from .faults import TricklingServer

    server = TricklingServer(head=TricklingServer.TLS)
    pool = fhir_pool()
    try:
        base = server.base.replace("http://", "https://")
        client = FhirClient(pool, base, None, time.monotonic() + 0.5)
        with pytest.raises(FhirUnavailable):
            within(10, lambda: client.get("Patient/x", "patient"))
    finally:
        pool.clear()
        server.close()


def test_calls_to_a_trickling_server_do_not_starve_calls_to_a_healthy_one(
    trickling: Any, tmp_path: Path
) -> None:
    from .faults import HealthyFhirServer
    from .test_fhir_access import without_prefetch

    healthy = HealthyFhirServer()
    # A budget the healthy server's ten queries meet on a busy machine (0.5 s was not always
    # enough once the prefetch grew to ten keys); each trickling call is still cut at it.
    app = create_app({"today": TODAY, "fhir_timeout": "2.0", "instance_dir": str(tmp_path)})
    client = app.test_client()
    try:
        for _ in range(6):  # each call starts ~10 queries: 60 > the 16 threads of the pool
            slow = within(
                BOUND, lambda: client.post(SELECT, json=without_prefetch(seed(), trickling.base))
            )
            assert slow.status_code == 412
        fine = within(
            BOUND, lambda: client.post(SELECT, json=without_prefetch(seed(), healthy.base))
        )
        assert fine.status_code == 200, fine.get_data(as_text=True)
    finally:
        state = app.extensions["cds_service"]
        state.store.close()
        state.http.clear()
        healthy.close()


# --- served: slow clients, chunked bodies, a killed worker ----------------------------------


class Served:
    def __init__(
        self, tmp_path: Path, env: dict[str, str], workers: int = 2, wsgi: bool = False
    ) -> None:
        import os
        import socket
        import subprocess
        import sys
        import time

        import requests

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.base = f"http://127.0.0.1:{self.port}"
        self.log = open(tmp_path / "serve.log", "w+b")  # noqa: SIM115 - closed in close()
        command = [sys.executable, "-m", "cds_service.cli", "serve", "--port", str(self.port)]
        if wsgi:  # the WSGI app under plain gunicorn sync workers, as a site may run it
            command = [sys.executable, "-m", "gunicorn", "-b", f"127.0.0.1:{self.port}"]
            command += ["--control-socket", str(tmp_path / "g.ctl"), "cds_service:create_app()"]
        self.proc = subprocess.Popen(
            command + ["--workers", str(workers)],
            env={
                **os.environ,
                "CDS_INSTANCE_DIR": str(tmp_path),
                "CDS_TODAY": TODAY,
                **env,
            },
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if requests.get(self.base + "/cds-services", timeout=2).status_code == 200:
                    return
            except requests.RequestException:
                time.sleep(0.2)
        self.close()
        raise AssertionError("cds-service serve did not start")

    def worker_pids(self) -> list[int]:
        from bench.served import children  # /proc, no procps needed

        return children(self.proc.pid)

    def close(self) -> None:
        import subprocess

        self.proc.terminate()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)
        self.log.close()


@pytest.fixture()
def served(tmp_path: Path) -> Iterator[Served]:
    server = Served(tmp_path, {})
    yield server
    server.close()


def test_fifty_slow_clients_do_not_stop_the_service(served: Served) -> None:
    import requests

    from .faults import SlowClients

    slow = SlowClients(served.port, SELECT, count=50)
    try:
        statuses = []
        with requests.Session() as session:
            for _ in range(5):
                response = session.post(served.base + SELECT, json=seed(), timeout=BOUND)
                statuses.append(response.status_code)
        held = slow.still_open()
    finally:
        slow.close()
    assert statuses == [200] * 5
    assert held == 50  # the slow connections were held open throughout, not dropped


def _raw(port: int, data: bytes) -> bytes:
    import socket

    with socket.create_connection(("127.0.0.1", port), timeout=BOUND) as sock:
        sock.sendall(data)
        received = b""
        while True:
            try:
                chunk = sock.recv(65536)
            except OSError:
                break
            if not chunk:
                break  # the server closes after its answer (Connection: close)
            received += chunk
    return received


@pytest.fixture(params=["serve", "wsgi"])
def either(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Served]:
    """`cds-service serve`, and the WSGI app under plain gunicorn."""
    server = Served(tmp_path, {}, wsgi=request.param == "wsgi")
    yield server
    server.close()


def test_a_malformed_chunk_is_400_not_500(either: Served) -> None:
    served = either
    head = f"POST {SELECT} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
    answer = _raw(served.port, (head + "Connection: close\r\n\r\nZZ\r\nab\r\n0\r\n\r\n").encode())
    assert answer.startswith(b"HTTP/1.1 400"), answer[:200]


def test_a_chunked_body_over_the_limit_is_413(either: Served) -> None:
    served = either
    head = (
        f"POST {SELECT} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
        "Content-Type: application/json\r\nConnection: close\r\n\r\n"
    ).encode()
    chunk = b"x" * (1024 * 1024)
    body = b"".join(b"%x\r\n%s\r\n" % (len(chunk), chunk) for _ in range(6)) + b"0\r\n\r\n"
    answer = _raw(served.port, head + body)
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    assert b"OperationOutcome" in answer
    small = seed()
    data = __import__("json").dumps(small).encode()
    ok = _raw(served.port, head + b"%x\r\n%s\r\n0\r\n\r\n" % (len(data), data))
    assert ok.startswith(b"HTTP/1.1 200"), ok[:200]


def test_a_killed_worker_loses_no_acknowledged_feedback_and_little_audit(
    db_url: str, tmp_path: Path
) -> None:
    """SIGKILL one of two workers mid-run. Acknowledged feedback is stored exactly once (it is
    written before the 200); a killed worker loses the audit rows it had not yet written (the
    calls of its last batch window, AUDIT_BATCH_SECONDS), never more. No answer is a 5xx."""
    import os
    import signal

    import requests

    upgrade(db_url, tmp_path)
    server = Served(tmp_path, {"CDS_DATABASE_URL": db_url})
    answered, acknowledged, statuses = 0, [], []
    try:
        for index in range(40):
            if index == 20:
                os.kill(server.worker_pids()[0], signal.SIGKILL)
            try:  # a fresh connection each time: both workers get calls
                response = requests.post(
                    server.base + SELECT,
                    json=seed(),
                    timeout=BOUND,
                    headers={"Connection": "close"},
                )
                statuses.append(response.status_code)
                answered += response.status_code == 200
                card = str(uuid.uuid4())
                item = {"card": card, "outcome": "accepted", "acceptedSuggestions": []}
                for _ in range(2):  # sent twice: stored once
                    feedback = requests.post(
                        server.base + FEEDBACK,
                        json={"feedback": [item]},
                        timeout=BOUND,
                        headers={"Connection": "close"},
                    )
                    statuses.append(feedback.status_code)
                    if feedback.status_code == 200:
                        acknowledged.append(card)
            except requests.ConnectionError:
                continue  # the call the kill cut off: not answered, not acknowledged
    finally:
        server.close()  # SIGTERM: the surviving workers write what they queued
    assert all(status < 500 for status in statuses), statuses
    store = Store(db_url, b"k" * 32)
    try:
        with store.sessions() as session:
            stored = [row.card_uuid for row in session.query(Feedback).all()]
        audited = store.count(Call)
    finally:
        store.close()
    assert sorted(set(acknowledged)) == sorted(stored)  # each acknowledged card once
    assert answered >= 35
    assert answered - 10 <= audited <= answered


def test_the_embedded_default_holds_concurrent_calls_on_several_workers(tmp_path: Path) -> None:
    """SQLite (the default store) under `cds-service serve` with 4 workers: bursts of 8
    concurrent calls, each a warning whose snooze look-up reads the store while the audit
    threads write it. No answer may be a 5xx (a `database is locked` was one)."""
    from concurrent.futures import ThreadPoolExecutor

    import requests

    server = Served(tmp_path, {}, workers=4)

    def one(_: int) -> int:
        body = seed(str(uuid.uuid4()))  # a fresh patient: the snooze look-up reads the store
        try:
            return requests.post(
                server.base + SELECT, json=body, timeout=BOUND, headers={"Connection": "close"}
            ).status_code
        except requests.ConnectionError:
            return 0

    try:
        with ThreadPoolExecutor(max_workers=8) as pool:
            statuses = [s for _ in range(10) for s in pool.map(one, range(8))]
    finally:
        server.close()
    assert statuses.count(200) == 80, sorted(set(statuses))
