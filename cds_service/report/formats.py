"""How the report's renderings write a rate and the period."""

from __future__ import annotations

from typing import Any


def percent(rate: float | None) -> str:
    return "–" if rate is None else f"{rate * 100:.1f} %"


def period_text(report: dict[str, Any]) -> str:
    p = report["period"]
    start = p["since"] or (p["first_call"] or "")[:10] or "no calls"
    end = p["until"] or (p["last_call"] or "")[:10] or "no calls"
    return f"{start} to {end} ({p['weeks']} week{'s' if p['weeks'] != 1 else ''} with data)"
