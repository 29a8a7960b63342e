"""The audit on real databases (SQLite file and PostgreSQL): every verdict of every call,
written in batches, with no patient id."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, delete, select, text

from cds_service.store import AuditedVerdict, Call, Store, VerdictRow, upgrade
from cds_service.store import audit as store_audit

from .conftest import FIXTURES, add_condition, load_json
from .databases import MakeApp
from .store_calls import SELECT, SIGN, seed, store_of


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
    add_condition(body, "Metastatic breast cancer to bone (HCC)")
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
