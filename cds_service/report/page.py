"""The report as one self-contained HTML page (``cds-service report --html``)."""

from __future__ import annotations

import html
from typing import Any

from .build import empty_outcomes, rate
from .chart import render_chart
from .formats import percent, period_text


def _table(table_id: str, head: list[str], rows: list[list[Any]], empty: str) -> str:
    if not rows:
        return f'<p class="empty" id="{table_id}">{html.escape(empty)}</p>'
    th = "".join(f"<th>{html.escape(h)}</th>" for h in head)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(str(cell))}</td>" for cell in row) + "</tr>"
        for row in rows
    )
    return f'<table id="{table_id}"><thead><tr>{th}</tr></thead><tbody>{body}</tbody></table>'


STYLE = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;max-width:60rem;
margin:auto;padding:1rem 1.2rem 3rem;color:#1b1b1b}
h1{font-size:1.5rem;margin-bottom:.2rem}h2{font-size:1.15rem;margin-top:2rem}
.meta{color:#555;margin-top:0}
.totals{display:grid;grid-template-columns:repeat(auto-fill,minmax(11rem,1fr));gap:.6rem;
padding:0;list-style:none}
.totals li{border:1px solid #d5dbe3;border-radius:6px;padding:.5rem .7rem}
.totals b{display:block;font-size:1.35rem}
table{border-collapse:collapse;width:100%;margin:.4rem 0}
td,th{border:1px solid #ccd;padding:.3rem .55rem;text-align:right}
td:first-child,th:first-child{text-align:left}th{background:#f3f6fa}
.legend span{display:inline-block;width:.9rem;height:.9rem;margin:0 .3rem 0 .9rem;
vertical-align:middle}.legend span.line{height:.2rem}
#weekly-chart{max-height:22rem;border:1px solid #eee}
@media print{body{max-width:none;padding:0}h2{break-after:avoid}
table,svg,.totals li{break-inside:avoid}}
"""


def render_html(report: dict[str, Any]) -> str:
    """A self-contained page (no script, no external resource) for a pilot committee."""
    fb = report["feedback"]
    ind = report["by_indicator"]
    lat = report["latency_ms"]
    tiles = [
        ("calls", report["calls"]),
        ("cards shown", report["cards_issued"]),
        ("warning cards", ind.get("warning", empty_outcomes())["cards"]),
        ("info cards", ind.get("info", empty_outcomes())["cards"]),
        ("accept rate", percent(fb["accept_rate"])),
        ("override rate", percent(fb["override_rate"])),
        ("would have warned (silent mode)", report["would_have_warned"]),
        ("snoozes", report["snoozes"]),
        ("latency p50", f"{lat['p50']} ms" if lat["p50"] is not None else "–"),
        ("latency p95", f"{lat['p95']} ms" if lat["p95"] is not None else "–"),
    ]
    totals = "".join(
        f"<li>{html.escape(label)}<b>{html.escape(str(value))}</b></li>" for label, value in tiles
    )
    study_rows = [
        [
            study,
            r["cards"],
            r["warning"],
            r["info"],
            r["accepted"],
            r["overridden"],
            percent(r["accept_rate"]),
            percent(r["override_rate"]),
            r["would_have_warned"],
            r["held_back"],
        ]
        for study, r in report["by_study"].items()
    ]
    indicator_rows = [
        [k, r["cards"], r["accepted"], r["overridden"], percent(r["accept_rate"]),
         percent(r["override_rate"])]
        for k, r in report["by_indicator"].items()
    ]  # fmt: skip
    total_over = sum(report["override_reasons"].values())
    reason_rows = [
        [reason, count, percent(rate(count, total_over))]
        for reason, count in report["override_reasons"].items()
    ]
    week_rows = [
        [w["week"], w["starts"], w["cards"], w["warning"], w["info"], w["would_have_warned"],
         w["overridden"], percent(w["override_rate"])]
        for w in report["weekly"]
    ]  # fmt: skip
    verdict_rows = [[k, n] for k, n in report["verdicts"].items()]
    held = ", ".join(f"{why}: {n}" for why, n in report["held_back"].items()) or "none"
    study_head = ["study", "cards", "warning", "info", "accepted", "overridden", "accept rate"]
    study_head += ["override rate", "would have warned", "held back"]
    week_head = ["week", "starts", "cards", "warning", "info", "would have warned"]
    week_head += ["overridden", "override rate"]
    tables = {
        "by-study": _table(
            "by-study", study_head, study_rows, "No orders were judged in this period."
        ),
        "by-indicator": _table(
            "by-indicator",
            ["indicator", "cards", "accepted", "overridden", "accept rate", "override rate"],
            indicator_rows,
            "No cards were shown in this period.",
        ),
        "override-reasons": _table(
            "override-reasons",
            ["reason", "overrides", "share"],
            reason_rows,
            "No overrides in this period.",
        ),
        "weekly": _table("weekly", week_head, week_rows, "No calls in this period."),
        "verdicts": _table(
            "verdicts", ["verdict:rule", "orders"], verdict_rows, "No orders were judged."
        ),
    }
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Breast surveillance imaging CDS: pilot report</title>
<style>{STYLE}</style></head><body>
<h1>Breast surveillance imaging CDS: pilot report</h1>
<p class="meta" id="period">Period: <strong>{html.escape(period_text(report))}</strong>.
Generated {html.escape(report["generated_at"])} (UTC). Counts hook calls from EHRs only
(<code>cds-service evaluate</code> runs are not audited). Rates are shares of the cards shown.</p>
<h2>Totals</h2>
<ul class="totals" id="totals">{totals}</ul>
<p>Warnings held back (snoozed, or switched off by the site or the client): {held}.
Feedback items with fields the client left out: {fb["items_with_missing_fields"]}.</p>
<h2>Cards per week and override rate</h2>
{render_chart(report["weekly"])}
<h2>By study</h2>
{tables["by-study"]}
<h2>By indicator</h2>
{tables["by-indicator"]}
<h2>Override reasons</h2>
{tables["override-reasons"]}
<h2>Week by week</h2>
{tables["weekly"]}
<h2>Verdicts and the rules that decided</h2>
{tables["verdicts"]}
</body></html>
"""
