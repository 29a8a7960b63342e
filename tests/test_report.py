"""Issue 18, the pilot's report (``cds-service report``) on SQLite and PostgreSQL: period and
generation time, warning and info apart, accept and override rates as percentages, silent
mode's "would have warned", override reasons, by study and indicator, latency, a weekly chart
readable with one week or fifty-two, and ``evaluate`` runs left out of ``calls``."""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from flask import Flask

from cds_service import create_app
from cds_service.cli import main
from cds_service.report import build_report, render_chart, render_html, render_text
from cds_service.store import FeedbackItem, Store, VerdictRow

from .conftest import FIXTURES, SERVICE_FOR_HOOK, TODAY, load_json

SELECT = "/cds-services/breast-surveillance-order-select"
FEEDBACK = "/cds-services/breast-surveillance-order-select/feedback"


@pytest.fixture()
def app(db_url: str, tmp_path: Path) -> Iterator[Flask]:
    app = create_app({"today": TODAY, "database_url": db_url, "instance_dir": str(tmp_path)})
    yield app
    store(app).close()


def store(app: Flask) -> Store:
    found: Store = app.extensions["cds_service"].store
    return found


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
    report = build_report(store(app), generated_at=moment)
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


def test_silent_mode_counts_what_would_have_warned(db_url: str, tmp_path: Path) -> None:
    config = tmp_path / "site.toml"
    config.write_text("silent = true\n")
    app = create_app(
        {
            "today": TODAY,
            "database_url": db_url,
            "instance_dir": str(tmp_path),
            "config_file": str(config),
        }
    )
    try:
        for name in ("seed-pet-ct", "seed-pet-ct", "tumor-marker-cea", "breast-mri-no-card"):
            assert call(app, name) == {"cards": []}
        report = build_report(store(app))
    finally:
        store(app).close()
    assert report["cards_issued"] == 0 and report["silent_mode_calls"] == 4
    assert report["would_have_warned"] == 2
    assert report["by_study"]["pet-ct"]["would_have_warned"] == 2
    assert report["weekly"][0]["would_have_warned"] == 2
    assert "would have warned 2 times" in render_text(report)
    assert "would have warned (silent mode)<b>2</b>" in render_html(report)


def synthetic_weeks(target: Store, weeks: int, start: date) -> list[str]:
    """Audit rows as the service writes them, one week apart: week i has i % 5 + 1 warnings,
    one info card every other week; the first warning of each week is overridden."""
    overridden = []
    for week in range(weeks):
        moment = datetime.combine(start + timedelta(weeks=week), datetime.min.time(), UTC)
        rows = []
        for i in range(week % 5 + 1):
            card = str(uuid.uuid4())
            rows.append(
                VerdictRow(
                    f"ServiceRequest/w{week}-{i}", "ct-chest", "warn", "variant-10", "warning", card
                )
            )
            if i == 0:
                overridden.append(card)
        if week % 2:
            rows.append(
                VerdictRow(
                    f"ServiceRequest/i{week}",
                    "pet-ct",
                    "info-targeted",
                    "symptom:cough",
                    "info",
                    str(uuid.uuid4()),
                )
            )
        target.record_call(
            received_at=moment + timedelta(hours=10),
            service_id="breast-surveillance-order-select",
            hook="order-select",
            hook_instance=str(uuid.uuid4()),
            patient_id=f"p{week}",
            latency_ms=10.0 + week,
            silent=False,
            data_origin="patient:prefetch",
            verdicts=rows,
        )
    target.flush()
    target.add_feedback(
        "breast-surveillance-order-select",
        [
            FeedbackItem(
                card, "overridden", None, (), "shared-decision", None, "Shared decision", None, ()
            )
            for card in overridden
        ],
    )
    return overridden


def chart_numbers(svg: str) -> dict[str, int]:
    return {
        "bars": len(re.findall(r'<rect class="bar"', svg)),
        "points": len(re.findall(r'<circle class="rate"', svg)),
        "labels": len(re.findall(r'text-anchor="middle">(?:\d\d-\d\d|\d{4}-W\d\d)</text>', svg)),
    }


def test_fifty_two_weeks_chart_on_an_even_axis(app: Flask) -> None:
    synthetic_weeks(store(app), 52, date(2025, 12, 1))
    report = build_report(store(app))
    weeks = report["weekly"]
    assert len(weeks) == 52 and report["period"]["weeks"] == 52
    assert [w["starts"] for w in weeks][:2] == ["2025-12-01", "2025-12-08"]
    assert weeks[1]["cards"] == 3 and weeks[1]["overridden"] == 1
    assert weeks[1]["override_rate"] == round(1 / 3, 3)
    svg = render_chart(weeks)
    numbers = chart_numbers(svg)
    assert numbers["bars"] == 52 + 26 and numbers["points"] == 52
    assert 4 <= numbers["labels"] <= 14  # thinned, not 52 overlapping labels
    assert svg.count("<polyline") == 1
    # --since / --until select whole days.
    part = build_report(store(app), since=date(2026, 1, 5), until=date(2026, 1, 18))
    assert [w["starts"] for w in part["weekly"]] == ["2026-01-05", "2026-01-12"]
    assert part["period"]["since"] == "2026-01-05" and part["period"]["until"] == "2026-01-18"


def test_one_week_chart_shows_a_labelled_point_not_an_invisible_line(app: Flask) -> None:
    synthetic_weeks(store(app), 1, date(2026, 11, 23))
    weeks = build_report(store(app))["weekly"]
    assert len(weeks) == 1
    svg = render_chart(weeks)
    assert chart_numbers(svg) == {"bars": 1, "points": 1, "labels": 1}
    assert "<polyline" not in svg
    assert ">100.0 %</text>" in svg  # the rate is written next to its point
    assert "the week starting 2026-11-23" in svg


def test_empty_store_reports_no_data() -> None:
    assert "No calls in this period" in render_chart([])


def test_report_command_writes_text_json_and_html(
    app: Flask,
    db_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    synthetic_weeks(store(app), 3, date(2026, 11, 9))
    monkeypatch.setenv("CDS_DATABASE_URL", db_url)
    monkeypatch.setenv("CDS_INSTANCE_DIR", str(tmp_path))
    assert main(["report", "--json", "--since", "2026-11-16"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["calls"] == 2 and report["period"]["since"] == "2026-11-16"
    page = tmp_path / "report.html"
    assert main(["report", "--html", str(page), "--until", "2026-11-22"]) == 0
    html = page.read_text(encoding="utf-8")
    assert 'id="weekly-chart"' in html and 'id="override-reasons"' in html
    assert main(["report"]) == 0
    out = capsys.readouterr().out
    assert "period: 2026-11-09 to 2026-11-23 (3 weeks with data)" in out
    assert "override rate" in out and "%" in out
