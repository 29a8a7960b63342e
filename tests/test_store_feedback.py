"""Feedback on real databases (SQLite file and PostgreSQL, issue 6): each item stored once per
card and outcome, under concurrency too, client quirks tolerated, and no acknowledged
feedback lost to SIGKILL."""

from __future__ import annotations

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
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from cds_service.report import build_report
from cds_service.store import Feedback, Store

from .conftest import TODAY
from .databases import MakeApp
from .deployment import free_port
from .store_calls import FEEDBACK, SELECT, override, seed, store_of


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


def test_sigkill_loses_no_acknowledged_feedback(db_url: str, tmp_path: Path) -> None:
    port = free_port()
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
