"""``cds-service report`` on real databases: text, JSON and HTML from the audit."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import pytest
from flask import Flask

from cds_service import create_app
from cds_service.cli import main

from .conftest import TODAY
from .databases import MakeApp
from .store_calls import FEEDBACK, SELECT, override, seed, store_of, synthetic_weeks


@pytest.fixture()
def app(make_app: MakeApp) -> Flask:
    """An app on a fresh database of each kind (the session's ``app`` has no store to read)."""
    return make_app()


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


def test_report_command_writes_text_json_and_html(
    app: Flask,
    db_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    synthetic_weeks(store_of(app), 3, date(2026, 11, 9))
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
