"""Issue 6 on real databases (SQLite file and PostgreSQL): audit, feedback, snooze, silent
mode, client options, report, migrations, and no acknowledged feedback lost to SIGKILL."""

from __future__ import annotations

import copy
import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import create_engine, delete, inspect, select, text

from cds_service import create_app
from cds_service.cli import main
from cds_service.config import SettingsError
from cds_service.report import build_report
from cds_service.store import AuditedVerdict, Call, Feedback, Store, VerdictRow, upgrade
from cds_service.store import audit as store_audit

from .conformance import ratings
from .conftest import FIXTURES, TODAY, load_json

NS = "org.example.breast-surveillance-cds"  # cards' extension key

SELECT = "/cds-services/breast-surveillance-order-select"
SIGN = "/cds-services/breast-surveillance-order-sign"
FEEDBACK = "/cds-services/breast-surveillance-order-select/feedback"
MakeApp = Callable[..., Flask]


@pytest.fixture()
def make_app(db_url: str, tmp_path: Path) -> Iterator[MakeApp]:
    apps: list[Flask] = []

    def make(**extra: Any) -> Flask:
        app = create_app(
            {"today": TODAY, "database_url": db_url, "instance_dir": str(tmp_path), **extra}
        )
        apps.append(app)
        return app

    yield make
    for app in apps:  # before the database is dropped
        store_of(app).close()


def seed(hook_instance: str | None = None) -> dict[str, Any]:
    body: dict[str, Any] = load_json(FIXTURES / "requests" / "seed-pet-ct.json")
    body["hookInstance"] = hook_instance or str(uuid.uuid4())
    return body


def store_of(app: Flask) -> Store:
    store: Store = app.extensions["cds_service"].store
    return store


def override(card: str, code: str = "shared-decision", **extra: Any) -> dict[str, Any]:
    return {
        "card": card,
        "outcome": "overridden",
        "outcomeTimestamp": "2026-11-25T10:05:31Z",
        "overrideReason": {
            "reason": {"code": code, "system": "https://x/CodeSystem/override-reason", **extra},
            "userComment": "discussed with patient",
        },
    }


def test_migrations_up_from_empty(db_url: str, tmp_path: Path) -> None:
    upgrade(db_url, tmp_path)
    upgrade(db_url, tmp_path)  # idempotent
    engine = create_engine(db_url)
    tables = set(inspect(engine).get_table_names())
    assert {"calls", "verdicts", "feedback", "snoozes", "seen_tokens", "alembic_version"} <= tables
    with engine.connect() as c:
        assert c.execute(text("SELECT version_num FROM alembic_version")).scalar_one() == "0002"
    engine.dispose()


def test_n_warnings_and_n_feedback_twice_give_n_outcomes(make_app: MakeApp) -> None:
    app = make_app()
    client = app.test_client()
    n = 6
    cards = []
    for _ in range(n):
        body = client.post(SELECT, json=seed()).get_json()
        [card] = body["cards"]
        cards.append(card)
    for _ in range(2):
        shown = "Patient counselled and insists (shared decision)"
        items = [override(c["uuid"], display=shown) for c in cards[:3]]
        items += [
            {
                "card": c["uuid"],
                "outcome": "accepted",
                "outcomeTimestamp": "2026-11-25T10:05:31Z",
                "acceptedSuggestions": [{"id": c["suggestions"][0]["uuid"]}],
            }
            for c in cards[3:]
        ]
        response = client.post(FEEDBACK, json={"feedback": items})
        assert response.status_code == 200
    store = store_of(app)
    assert store.count(Feedback) == n
    report = build_report(store)
    assert report["cards_issued"] == n
    assert report["feedback"] == {
        "accepted": 3,
        "overridden": 3,
        "accept_rate": 0.5,
        "override_rate": 0.5,
        "items_with_missing_fields": 0,
    }
    assert report["override_reasons"] == {"Patient counselled and insists (shared decision)": 3}
    assert report["by_study"]["pet-ct"]["cards"] == n
    assert report["by_study"]["pet-ct"]["overridden"] == 3
    assert report["calls"] == n and report["latency_ms"]["p50"] is not None


def test_concurrent_duplicate_feedback_is_stored_once(make_app: MakeApp) -> None:
    app = make_app()
    client = app.test_client()
    cards = [client.post(SELECT, json=seed()).get_json()["cards"][0]["uuid"] for _ in range(10)]
    errors: list[str] = []

    def worker() -> None:
        with app.test_client() as c:
            for card in cards:
                response = c.post(FEEDBACK, json={"feedback": [override(card), override(card)]})
                if response.status_code != 200:
                    errors.append(response.get_data(as_text=True))

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert store_of(app).count(Feedback) == len(cards)


def test_audit_records_every_verdict_without_patient_ids(make_app: MakeApp) -> None:
    app = make_app()
    client = app.test_client()
    body = load_json(FIXTURES / "requests" / "ct-chest-and-ct-abdomen-pelvis-two-orders.json")
    client.post(SIGN, json=body)
    client.post(SELECT, json=load_json(FIXTURES / "requests" / "new-bone-pain.json"))
    store = store_of(app)
    with store.session() as s:
        calls = s.execute(select(Call)).scalars().all()
        verdicts = s.execute(select(AuditedVerdict)).scalars().all()
    assert len(calls) == 2
    assert {(v.study, v.verdict) for v in verdicts} >= {
        ("ct-chest", "warn"),
        ("ct-abdomen-pelvis", "warn"),
    }
    assert any(v.rule.startswith("symptom:") for v in verdicts)
    assert all(v.card_uuid for v in verdicts if v.verdict == "warn")
    assert all(v.consult_id for v in verdicts if v.study)
    patient = body["context"]["patientId"]
    assert calls[0].patient_hash == store.patient_hash(patient) != patient
    engine = create_engine(store.url)
    with engine.connect() as c:
        for table in ("calls", "verdicts"):
            dump = json.dumps(
                [list(r) for r in c.execute(text(f"SELECT * FROM {table}"))], default=str
            )
            assert patient not in dump
    engine.dispose()


def test_audit_names_the_evidence_of_a_silence(make_app: MakeApp) -> None:
    """A verdict that is not a warning records what decided it: the record type and the code
    or our phrase (issue 14), never the chart's own words."""
    app = make_app()
    client = app.test_client()
    body = seed()
    body["prefetch"]["conditions"]["entry"].append(
        {
            "resource": {
                "resourceType": "Condition",
                "id": "local-mets",
                "code": {"text": "Metastatic breast cancer to bone (HCC)"},
                "recordedDate": "2026-10-01",
            }
        }
    )
    client.post(SELECT, json=body)
    client.post(SELECT, json=load_json(FIXTURES / "requests" / "known-bone-metastases.json"))
    store = store_of(app)
    store.flush()
    with store.session() as s:
        rows = s.execute(select(AuditedVerdict.rule, AuditedVerdict.evidence)).all()
    assert ("metastatic-disease", "Condition words 'METASTA'") in rows
    coded = [e for rule, e in rows if e and e.startswith("Condition code ")]
    assert coded, rows
    assert all("Metastatic breast cancer" not in (e or "") for _, e in rows)


def _audited_call(index: int, hook_instance: str, verdicts: int) -> dict[str, Any]:
    return {
        "received_at": datetime(2026, 11, 25, 10, 5, index, 123456 * (index % 2), tzinfo=UTC),
        "service_id": "breast-surveillance-order-select",
        "hook": "order-select",
        "hook_instance": hook_instance,
        "patient_id": "p-1",
        "latency_ms": 1.25,
        "silent": verdicts == 0,
        "data_origin": "conditions:prefetch",
        "verdicts": [
            VerdictRow(
                order_ref=f"ServiceRequest/{hook_instance}-{n}",
                study="pet-ct",
                verdict="warn",
                rule="variant-10",
                card_uuid=f"card-{index}-{n}",
                suggestions=[f"{hook_instance}-s-{n}"],
            )
            for n in range(verdicts)
        ],
    }


def _audit_rows(store: Store) -> list[tuple[Any, ...]]:
    """Every call with its verdicts, as stored (raw column values; ids left out)."""
    with store.engine.connect() as c:
        calls = c.execute(
            text(
                "SELECT id, received_at, service_id, hook, hook_instance, patient_hash,"
                " latency_ms, silent, data_origin FROM calls ORDER BY id"
            )
        ).all()
        verdicts = c.execute(
            text("SELECT call_id, order_ref, card_uuid, suggestions FROM verdicts ORDER BY id")
        ).all()
    of_call: dict[int, list[tuple[Any, ...]]] = {}
    for v in verdicts:
        of_call.setdefault(v[0], []).append(tuple(v[1:]))
    return [(*row[1:], of_call.get(row[0], [])) for row in calls]


def test_audit_batches_link_each_verdict_to_its_own_call(db_url: str, tmp_path: Path) -> None:
    """The audit write (on SQLite: ids read from the driver's cursor) stores the very values
    SQLAlchemy's own INSERT stores (times with and without microseconds, read as the database
    holds them), and each verdict under its own call, in a batch of calls with 0-3 verdicts
    each (the same hookInstance twice, as a client retrying sends it)."""
    calls = [_audited_call(n, f"h{n % 7}", n % 4) for n in range(25)]
    written = []
    for generic in (False, True):
        store = Store(db_url, b"k" * 32)
        upgrade(db_url, tmp_path)
        if generic:
            store._sqlite_calls = None  # SQLAlchemy's INSERT ... RETURNING, row by row
        with store.session() as s:
            s.execute(delete(AuditedVerdict))
            s.execute(delete(Call))
        store.write_calls(calls)
        written.append(_audit_rows(store))
        with store.session() as s:  # a time range, compared by the database
            since = datetime(2026, 11, 25, 10, 5, 10, tzinfo=UTC)
            later = s.execute(select(Call.hook_instance).where(Call.received_at >= since))
            assert len(later.all()) == 15
        store.close()
    assert written[0] == written[1]
    assert len(written[0]) == 25
    for row, call in zip(written[0], calls, strict=True):
        assert row[3] == call["hook_instance"]
        assert [v[0] for v in row[8]] == [v.order_ref for v in call["verdicts"]]


def test_flush_writes_queued_calls_at_once(
    make_app: MakeApp, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A reader does not wait out the audit thread's batch: flush() wakes it (without that,
    the call below would not be written for an hour)."""
    monkeypatch.setattr(store_audit, "AUDIT_BATCH_SECONDS", 3600.0)
    app = make_app()
    assert app.test_client().post(SELECT, json=seed("flush-now")).status_code == 200
    store = store_of(app)
    store.flush(timeout=5.0)
    with store.sessions() as s:  # not store.session(), which would flush again
        found = s.execute(select(Call.hook_instance)).scalars().all()
    assert found == ["flush-now"]


def test_snooze_suppresses_repeat_warnings_for_that_study(make_app: MakeApp) -> None:
    app = make_app()
    client = app.test_client()
    [card] = client.post(SELECT, json=seed()).get_json()["cards"]
    response = client.post(FEEDBACK, json={"feedback": [override(card["uuid"], "snooze-3-months")]})
    assert response.status_code == 200
    again = client.post(SELECT, json=seed()).get_json()
    assert again["cards"] == []
    # The snooze hides the card; the order is still Usually Not Appropriate (the PAMA rating
    # written back is the rules' verdict, not "no-criteria-apply": found in review).
    assert set(ratings(again).values()) == {"not-appropriate"}
    with store_of(app).session() as s:
        assert "snoozed" in s.execute(select(AuditedVerdict.verdict)).scalars().all()
    other = load_json(FIXTURES / "requests" / "ct-chest-loinc-24628-0.json")
    other["context"]["patientId"] = seed()["context"]["patientId"]
    assert [c["indicator"] for c in client.post(SELECT, json=other).get_json()["cards"]] == [
        "warning"
    ]
    assert build_report(store_of(app))["snoozes"] == 1


def test_silent_mode_returns_nothing_but_audits(make_app: MakeApp, tmp_path: Path) -> None:
    config = tmp_path / "site.toml"
    config.write_text("silent = true\n")
    app = make_app(config_file=str(config))
    body = app.test_client().post(SELECT, json=seed()).get_json()
    assert body == {"cards": []}
    report = build_report(store_of(app))
    assert report["silent_mode_verdicts"] == {"warn": 1}
    assert report["cards_issued"] == 0


def test_site_config_disables_a_study_and_limits_cards(make_app: MakeApp, tmp_path: Path) -> None:
    config = tmp_path / "site.toml"
    config.write_text('warn_studies = ["ct-chest"]\nmax_cards = 1\nsnooze_months = [3]\n')
    app = make_app(config_file=str(config))
    client = app.test_client()
    assert client.post(SELECT, json=seed()).get_json()["cards"] == []
    two = load_json(FIXTURES / "requests" / "ct-chest-and-ct-abdomen-pelvis-two-orders.json")
    cards = client.post(SIGN, json=two).get_json()["cards"]
    assert [c["extension"][NS]["study"] for c in cards] == ["ct-chest"]
    codes = {r["code"] for r in cards[0]["overrideReasons"]}
    assert "snooze-3-months" in codes and "snooze-6-months" not in codes


@pytest.mark.parametrize(
    ("text_", "message"),
    [
        ("silent = maybe", "CDS_CONFIG_FILE"),
        ("colour = 'red'", "colour"),
        ('warn_studies = ["mammography"]', "warn_studies"),
        ("max_cards = 0", "max_cards"),
        ("snooze_months = [5]", "snooze_months"),
    ],
)
def test_bad_site_config_stops_the_service(tmp_path: Path, text_: str, message: str) -> None:
    config = tmp_path / "site.toml"
    config.write_text(text_ + "\n")
    with pytest.raises(SettingsError, match=message):
        create_app({"config_file": str(config), "instance_dir": str(tmp_path)})


def test_client_options_are_honoured(make_app: MakeApp) -> None:
    client = make_app().test_client()

    def post(options: dict[str, Any], body: dict[str, Any] | None = None, url: str = SELECT) -> Any:
        body = copy.deepcopy(body or seed())
        body["extension"] = {"breast-surveillance-cds.configuration": options}
        return client.post(url, json=body).get_json()

    switched_off = post({"warnings": False})
    assert switched_off["cards"] == []
    assert set(ratings(switched_off).values()) == {"not-appropriate"}
    plain = post({"suggestions": False, "system-actions": False})
    assert "suggestions" not in plain["cards"][0] and "systemActions" not in plain
    two = load_json(FIXTURES / "requests" / "ct-chest-and-ct-abdomen-pelvis-two-orders.json")
    assert len(post({"max-cards": 1}, two, SIGN)["cards"]) == 1
    assert len(post({"max-cards": "one", "unknown": 1}, two, SIGN)["cards"]) == 2  # ignored
    crd = copy.deepcopy(seed())
    crd["extension"] = {"davinci-crd.configuration": {"warnings": False}}
    assert client.post(SELECT, json=crd).get_json()["cards"] == []


def test_feedback_tolerates_known_client_quirks(make_app: MakeApp) -> None:
    app = make_app()
    client = app.test_client()
    sandbox_item = {
        "outcome": "overridden",
        "outcomeTimestamp": "2026-11-25T10:05:31Z",
        "overrideReason": {"reason": {"code": "shared-decision", "system": "https://x"}},
    }
    response = client.post(FEEDBACK, json={"feedback": [sandbox_item, sandbox_item]})
    assert response.status_code == 200
    with store_of(app).session() as s:
        [row] = s.execute(select(Feedback)).scalars().all()
    assert row.card_uuid is None
    assert set(row.missing.split(",")) == {"card", "overrideReason.reason.display"}
    assert row.override_display == "Patient counselled and insists (shared decision)"


@pytest.mark.parametrize(
    ("body", "expression"),
    [
        ({"feedback": []}, "feedback"),
        ({"feedback": "x"}, "feedback"),
        ({"feedback": [{"card": "a", "outcome": "maybe"}]}, "feedback[0].outcome"),
        ({"feedback": [{"card": 5, "outcome": "accepted"}]}, "feedback[0].card"),
        (
            {"feedback": [{"card": "a", "outcome": "accepted", "acceptedSuggestions": "x"}]},
            "feedback[0].acceptedSuggestions",
        ),
        (
            {"feedback": [{"card": "a", "outcome": "overridden", "overrideReason": []}]},
            "feedback[0].overrideReason",
        ),
    ],
)
def test_feedback_that_cannot_be_understood_is_400(
    make_app: MakeApp, body: dict[str, Any], expression: str
) -> None:
    response = make_app().test_client().post(FEEDBACK, json=body)
    assert response.status_code == 400
    assert response.get_json()["issue"][0]["expression"] == [expression]


def test_feedback_for_unknown_service_is_404(make_app: MakeApp) -> None:
    response = make_app().test_client().post("/cds-services/nope/feedback", json={"feedback": []})
    assert response.status_code == 404


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def test_sigkill_loses_no_acknowledged_feedback(db_url: str, tmp_path: Path) -> None:
    port = _free_port()
    env = {
        **os.environ,
        "CDS_DATABASE_URL": db_url,
        "CDS_INSTANCE_DIR": str(tmp_path),
        "CDS_TODAY": TODAY,
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "cds_service.cli", "serve", "--port", str(port), "--workers", "2"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}/cds-services/breast-surveillance-order-select/feedback"
    acknowledged: list[str] = []
    stop = threading.Event()

    def post_forever() -> None:
        while not stop.is_set():
            card = str(uuid.uuid4())
            data = json.dumps({"feedback": [override(card)]}).encode()
            request = urllib.request.Request(url, data, {"Content-Type": "application/json"})
            try:
                with urllib.request.urlopen(request, timeout=5) as r:
                    if r.status == 200:
                        acknowledged.append(card)
            except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
                if acknowledged:
                    return  # the server is gone
                time.sleep(0.05)

    sender = threading.Thread(target=post_forever)
    sender.start()
    try:
        deadline = time.monotonic() + 30
        while len(acknowledged) < 30 and time.monotonic() < deadline:
            time.sleep(0.05)
        os.killpg(proc.pid, signal.SIGKILL)  # master and workers, mid-stream
        proc.wait(timeout=10)
    finally:
        stop.set()
        sender.join(timeout=10)
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert len(acknowledged) >= 30
    store = Store(db_url, b"k")
    with store.session() as s:
        stored = set(s.execute(select(Feedback.card_uuid)).scalars())
    store.close()
    assert set(acknowledged) <= stored


def test_report_command(
    db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    app = create_app({"today": TODAY, "database_url": db_url, "instance_dir": str(tmp_path)})
    client = app.test_client()
    [card] = client.post(SELECT, json=seed()).get_json()["cards"]
    client.post(FEEDBACK, json={"feedback": [override(card["uuid"])]})
    store_of(app).close()
    monkeypatch.setenv("CDS_DATABASE_URL", db_url)
    monkeypatch.setenv("CDS_INSTANCE_DIR", str(tmp_path))
    assert main(["report", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["cards_issued"] == 1
    assert report["feedback"]["overridden"] == 1
    assert set(report) >= {"cards_issued", "feedback", "override_reasons", "by_study"}
    page = tmp_path / "report.html"
    assert main(["report", "--html", str(page), "--since", "2020-01-01"]) == 0
    html = page.read_text()
    assert "<svg" in html and "pet-ct" in html and "<script" not in html
    assert main(["report"]) == 0
    assert "cards issued: 1" in capsys.readouterr().out
