"""Issue 18, the pilot's report built on SQLite and PostgreSQL: period and generation time,
warning and info apart, accept and override rates as percentages, silent mode's "would have
warned", override reasons, by study and indicator, latency, and ``evaluate`` runs left out
of ``calls``."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from flask import Flask

from cds_service.cli import main
from cds_service.report import build_report, render_html, render_text

from .conftest import FIXTURES, SERVICE_FOR_HOOK, TODAY, load_json
from .databases import MakeApp
from .store_calls import store_of

SELECT = "/cds-services/breast-surveillance-order-select"
FEEDBACK = "/cds-services/breast-surveillance-order-select/feedback"


@pytest.fixture()
def app(make_app: MakeApp) -> Flask:
    """An app on a fresh database of each kind (the session's ``app`` has no store to read)."""
    return make_app()


def call(app: Flask, name: str) -> dict[str, Any]:
    """One fixture request, sent to the service for its hook; the response body."""
    body: dict[str, Any] = load_json(FIXTURES / "requests" / f"{name}.json")
    body["hookInstance"] = str(uuid.uuid4())
    response = app.test_client().post(f"/cds-services/{SERVICE_FOR_HOOK[body['hook']]}", json=body)
    assert response.status_code == 200
    answer: dict[str, Any] = response.get_json()
    return answer


def override(card: str, code: str, display: str) -> dict[str, Any]:
    return {
        "card": card,
        "outcome": "overridden",
        "outcomeTimestamp": "2026-11-25T10:05:31Z",
        "overrideReason": {
            "reason": {
                "code": code,
                "system": "https://x/CodeSystem/override-reason",
                "display": display,
            }
        },
    }


def accept(card: dict[str, Any]) -> dict[str, Any]:
    return {
        "card": card["uuid"],
        "outcome": "accepted",
        "outcomeTimestamp": "2026-11-25T10:05:31Z",
        "acceptedSuggestions": [{"id": card["suggestions"][0]["uuid"]}],
    }


def test_report_splits_warning_and_info_with_rates(
    app: Flask, db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = app.test_client()
    warnings = [call(app, "seed-pet-ct")["cards"][0] for _ in range(4)]
    infos = [call(app, name)["cards"][0] for name in ("tumor-marker-cea", "new-bone-pain-pet-ct")]
    assert [c["indicator"] for c in infos] == ["info", "info"]
    items = [
        accept(warnings[0]),
        override(warnings[1]["uuid"], "shared-decision", "Shared decision"),
        override(warnings[2]["uuid"], "shared-decision", "Shared decision"),
        override(warnings[3]["uuid"], "oncology-protocol", "Oncology protocol"),
        override(infos[0]["uuid"], "oncology-protocol", "Oncology protocol"),
    ]
    assert client.post(FEEDBACK, json={"feedback": items}).status_code == 200
    # A request file tried with `cds-service evaluate` on the same store is not a call.
    monkeypatch.setenv("CDS_DATABASE_URL", db_url)
    monkeypatch.setenv("CDS_INSTANCE_DIR", str(tmp_path))
    assert (
        main(["evaluate", str(FIXTURES / "requests" / "seed-pet-ct.json"), "--today", TODAY]) == 0
    )

    moment = datetime(2026, 11, 26, 9, 30, tzinfo=UTC)
    report = build_report(store_of(app), generated_at=moment)
    assert report["calls"] == 6 and report["cards_issued"] == 6
    assert report["generated_at"] == "2026-11-26T09:30:00+00:00"
    assert report["period"]["weeks"] == 1 and report["period"]["first_call"]
    warning, info = report["by_indicator"]["warning"], report["by_indicator"]["info"]
    assert (warning["cards"], warning["accepted"], warning["overridden"]) == (4, 1, 3)
    assert (warning["accept_rate"], warning["override_rate"]) == (0.25, 0.75)
    assert (info["cards"], info["overridden"], info["override_rate"]) == (2, 1, 0.5)
    assert report["feedback"]["accept_rate"] == round(1 / 6, 3)
    assert report["override_reasons"] == {"Shared decision": 2, "Oncology protocol": 2}
    pet = report["by_study"]["pet-ct"]
    assert (pet["cards"], pet["warning"], pet["info"]) == (5, 4, 1)
    assert report["by_study"]["tumor-marker"]["info"] == 1
    assert report["latency_ms"]["p50"] is not None and report["latency_ms"]["p95"] is not None
    [week] = report["weekly"]
    assert (week["cards"], week["warning"], week["info"], week["overridden"]) == (6, 4, 2, 4)

    text = render_text(report)
    assert "generated: 2026-11-26T09:30:00+00:00" in text and "period: " in text
    assert "warning cards: accept rate 25.0 %, override rate 75.0 %" in text
    assert "info cards: accept rate 0.0 %, override rate 50.0 %" in text
    page = render_html(report)
    assert "75.0 %" in page and "Oncology protocol" in page and 'id="by-indicator"' in page
    assert "<script" not in page and "http://" not in page.replace("http://www.w3.org/2000/svg", "")


def test_silent_mode_counts_what_would_have_warned(make_app: MakeApp, tmp_path: Path) -> None:
    config = tmp_path / "site.toml"
    config.write_text("silent = true\n")
    app = make_app(config_file=str(config))
    for name in ("seed-pet-ct", "seed-pet-ct", "tumor-marker-cea", "breast-mri-no-card"):
        assert call(app, name) == {"cards": []}
    report = build_report(store_of(app))
    assert report["cards_issued"] == 0 and report["silent_mode_calls"] == 4
    assert report["would_have_warned"] == 2
    assert report["by_study"]["pet-ct"]["would_have_warned"] == 2
    assert report["weekly"][0]["would_have_warned"] == 2
    assert "would have warned 2 times" in render_text(report)
    assert "would have warned (silent mode)<b>2</b>" in render_html(report)
