"""The report's weekly chart (SVG): an even axis over fifty-two weeks with thinned labels, one
week drawn as a labelled point, and nothing to chart said so."""

from __future__ import annotations

import re
from datetime import date

import pytest
from flask import Flask

from cds_service.report import build_report, render_chart

from .databases import MakeApp
from .store_calls import store_of, synthetic_weeks


@pytest.fixture()
def app(make_app: MakeApp) -> Flask:
    """An app on a fresh database of each kind (the session's ``app`` has no store to read)."""
    return make_app()


def chart_numbers(svg: str) -> dict[str, int]:
    return {
        "bars": len(re.findall(r'<rect class="bar"', svg)),
        "points": len(re.findall(r'<circle class="rate"', svg)),
        "labels": len(re.findall(r'text-anchor="middle">(?:\d\d-\d\d|\d{4}-W\d\d)</text>', svg)),
    }


def test_fifty_two_weeks_chart_on_an_even_axis(app: Flask) -> None:
    synthetic_weeks(store_of(app), 52, date(2025, 12, 1))
    report = build_report(store_of(app))
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
    part = build_report(store_of(app), since=date(2026, 1, 5), until=date(2026, 1, 18))
    assert [w["starts"] for w in part["weekly"]] == ["2026-01-05", "2026-01-12"]
    assert part["period"]["since"] == "2026-01-05" and part["period"]["until"] == "2026-01-18"


def test_one_week_chart_shows_a_labelled_point_not_an_invisible_line(app: Flask) -> None:
    synthetic_weeks(store_of(app), 1, date(2026, 11, 23))
    weeks = build_report(store_of(app))["weekly"]
    assert len(weeks) == 1
    svg = render_chart(weeks)
    assert chart_numbers(svg) == {"bars": 1, "points": 1, "labels": 1}
    assert "<polyline" not in svg
    assert ">100.0 %</text>" in svg  # the rate is written next to its point
    assert "the week starting 2026-11-23" in svg


def test_empty_store_reports_no_data() -> None:
    assert "No calls in this period" in render_chart([])
