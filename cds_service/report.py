"""``cds-service report``: how often the cards fire, what clinicians do with them, and why they
override, from the audit and feedback tables, for a pilot committee. No patient data is read or
shown. Rates are fractions in ``--json`` and percentages in the text and HTML reports."""

from __future__ import annotations

import html
import statistics
from collections import Counter, defaultdict
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from sqlalchemy import select

from .store import Call, Feedback, Snooze, Store, Verdict

# Verdicts whose card the site or the client kept back: the order was still warned about.
HELD_BACK = {
    "snoozed": "snoozed",
    "site-disabled": "site switched off",
    "client-disabled": "client",
}


def _start(value: date | None) -> datetime:
    return datetime.combine(value or date(1970, 1, 1), time.min, tzinfo=UTC)


def _end(value: date | None) -> datetime:
    # --until is inclusive: the whole of that day.
    return datetime.combine(value or date(9999, 12, 30), time.min, tzinfo=UTC) + timedelta(days=1)


def _utc(value: datetime) -> datetime:
    """SQLite hands back naive datetimes (the service writes UTC); PostgreSQL aware ones."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    if len(values) == 1:
        return round(values[0], 1)
    return round(statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1], 1)


def _rate(part: int, whole: int) -> float | None:
    return round(part / whole, 3) if whole else None


def _monday(moment: datetime) -> date:
    day = _utc(moment).date()
    return day - timedelta(days=day.weekday())


def _outcomes() -> dict[str, Any]:
    return {"cards": 0, "accepted": 0, "overridden": 0}


def build_report(
    store: Store,
    since: date | None = None,
    until: date | None = None,
    generated_at: datetime | None = None,
) -> dict[str, Any]:
    """The report's figures for calls received from ``since`` to ``until`` (inclusive days)."""
    start, end = _start(since), _end(until)
    with store.session() as s:
        calls = s.execute(
            select(Call.id, Call.received_at, Call.latency_ms, Call.silent).where(
                Call.received_at >= start, Call.received_at < end
            )
        ).all()
        verdicts = s.execute(
            select(
                Verdict.study,
                Verdict.verdict,
                Verdict.rule,
                Verdict.indicator,
                Verdict.card_uuid,
                Call.silent,
                Call.received_at,
            )
            .join(Call, Verdict.call_id == Call.id)
            .where(Call.received_at >= start, Call.received_at < end)
        ).all()
        # Feedback on the period's cards, whenever it arrived (a card of the last evening may
        # be overridden after midnight).
        feedback = s.execute(
            select(
                Feedback.card_uuid,
                Feedback.outcome,
                Feedback.override_code,
                Feedback.override_display,
                Feedback.missing,
                Feedback.received_at,
            ).where(Feedback.received_at >= start)
        ).all()
        snoozes = len(
            s.execute(
                select(Snooze.id).where(Snooze.created_at >= start, Snooze.created_at < end)
            ).all()
        )

    cards = [v for v in verdicts if v.card_uuid]
    card_of = {v.card_uuid: v for v in cards}
    feedback = [f for f in feedback if f.card_uuid in card_of or not f.card_uuid]
    by_study: dict[str, dict[str, Any]] = defaultdict(
        lambda: {**_outcomes(), "warning": 0, "info": 0, "would_have_warned": 0, "held_back": 0}
    )
    by_indicator: dict[str, dict[str, Any]] = defaultdict(_outcomes)
    for v in cards:
        row = by_study[v.study or "-"]
        row["cards"] += 1
        if v.indicator in ("warning", "info"):
            row[v.indicator] += 1
        by_indicator[v.indicator or "-"]["cards"] += 1
    would_have_warned = [v for v in verdicts if v.silent and v.verdict == "warn"]
    for v in would_have_warned:
        by_study[v.study or "-"]["would_have_warned"] += 1
    held_back: Counter[str] = Counter()
    for v in verdicts:
        if v.verdict == "snoozed" or v.rule in HELD_BACK:
            held_back[HELD_BACK.get(v.rule, "snoozed")] += 1
            by_study[v.study or "-"]["held_back"] += 1

    outcomes: Counter[str] = Counter()
    reasons: Counter[str] = Counter()
    weekly_over: Counter[date] = Counter()
    for f in feedback:
        outcomes[f.outcome] += 1
        card = card_of.get(f.card_uuid)
        if card is None:
            continue  # feedback without a card uuid (the sandbox) counts in the totals only
        if f.outcome in ("accepted", "overridden"):
            by_study[card.study or "-"][f.outcome] += 1
            by_indicator[card.indicator or "-"][f.outcome] += 1
        if f.outcome == "overridden":
            reasons[f.override_display or f.override_code or "(no reason given)"] += 1
            weekly_over[_monday(card.received_at)] += 1
    for row in [*by_study.values(), *by_indicator.values()]:
        row["accept_rate"] = _rate(row["accepted"], row["cards"])
        row["override_rate"] = _rate(row["overridden"], row["cards"])

    moments = [_utc(c.received_at) for c in calls]
    weeks = _weeks(cards, would_have_warned, weekly_over, since, until, moments)
    latencies = [c.latency_ms for c in calls]
    return {
        "period": {
            "since": since.isoformat() if since else None,
            "until": until.isoformat() if until else None,
            "first_call": min(moments).isoformat(timespec="seconds") if moments else None,
            "last_call": max(moments).isoformat(timespec="seconds") if moments else None,
            "weeks": len(weeks),
        },
        "generated_at": (generated_at or datetime.now(UTC)).isoformat(timespec="seconds"),
        "calls": len(calls),
        "silent_mode_calls": sum(1 for c in calls if c.silent),
        "cards_issued": len(cards),
        "by_indicator": {k: by_indicator[k] for k in sorted(by_indicator)},
        "by_study": {k: by_study[k] for k in sorted(by_study)},
        "feedback": {
            "accepted": outcomes["accepted"],
            "overridden": outcomes["overridden"],
            "accept_rate": _rate(outcomes["accepted"], len(cards)),
            "override_rate": _rate(outcomes["overridden"], len(cards)),
            "items_with_missing_fields": sum(1 for f in feedback if f.missing),
        },
        "override_reasons": dict(reasons.most_common()),
        "snoozes": snoozes,
        "held_back": dict(held_back.most_common()),
        "verdicts": dict(Counter(f"{v.verdict}:{v.rule}" for v in verdicts).most_common()),
        "silent_mode_verdicts": dict(Counter(v.verdict for v in verdicts if v.silent)),
        "would_have_warned": len(would_have_warned),
        "latency_ms": {"p50": _percentile(latencies, 50), "p95": _percentile(latencies, 95)},
        "weekly": weeks,
    }


def _weeks(
    cards: list[Any],
    would_have_warned: list[Any],
    overridden: Counter[date],
    since: date | None,
    until: date | None,
    moments: list[datetime],
) -> list[dict[str, Any]]:
    """Every week (Monday to Sunday) of the period, empty ones included, so the chart's time
    axis is even."""
    if not moments:
        return []
    first = _monday(datetime.combine(since, time.min)) if since else _monday(min(moments))
    last = _monday(datetime.combine(until, time.min)) if until else _monday(max(moments))
    first, last = max(first, _monday(min(moments))), min(last, _monday(max(moments)))
    counts: dict[date, Counter[str]] = defaultdict(Counter)
    for v in cards:
        counts[_monday(v.received_at)][v.indicator or "-"] += 1
    for v in would_have_warned:
        counts[_monday(v.received_at)]["would_have_warned"] += 1
    out = []
    week = first
    while week <= last:
        c = counts.get(week, Counter())
        shown = c["warning"] + c["info"] + c["-"]
        out.append(
            {
                "week": f"{week.isocalendar()[0]}-W{week.isocalendar()[1]:02d}",
                "starts": week.isoformat(),
                "cards": shown,
                "warning": c["warning"],
                "info": c["info"],
                "would_have_warned": c["would_have_warned"],
                "overridden": overridden[week],
                "override_rate": _rate(overridden[week], shown),
            }
        )
        week += timedelta(days=7)
    return out


# --- rendering ------------------------------------------------------------------------------


def _pct(rate: float | None) -> str:
    return "–" if rate is None else f"{rate * 100:.1f} %"


def _period_text(report: dict[str, Any]) -> str:
    p = report["period"]
    start = p["since"] or (p["first_call"] or "")[:10] or "no calls"
    end = p["until"] or (p["last_call"] or "")[:10] or "no calls"
    return f"{start} to {end} ({p['weeks']} week{'s' if p['weeks'] != 1 else ''} with data)"


def render_text(report: dict[str, Any]) -> str:
    fb = report["feedback"]
    ind = report["by_indicator"]
    warning = ind.get("warning", _outcomes())
    info = ind.get("info", _outcomes())
    lines = [
        "Breast surveillance imaging CDS: pilot report",
        f"period: {_period_text(report)}",
        f"generated: {report['generated_at']}",
        "",
        f"calls: {report['calls']}   cards issued: {report['cards_issued']} "
        f"(warning {warning['cards']}, info {info['cards']})   snoozes: {report['snoozes']}",
        f"feedback: {fb['accepted']} accepted, {fb['overridden']} overridden; "
        f"accept rate {_pct(fb['accept_rate'])}, override rate {_pct(fb['override_rate'])}",
        f"  warning cards: accept rate {_pct(warning.get('accept_rate'))}, "
        f"override rate {_pct(warning.get('override_rate'))}",
        f"  info cards: accept rate {_pct(info.get('accept_rate'))}, "
        f"override rate {_pct(info.get('override_rate'))}",
        f"silent mode: {report['silent_mode_calls']} calls, would have warned "
        f"{report['would_have_warned']} times",
        f"latency ms: p50 {report['latency_ms']['p50']}, p95 {report['latency_ms']['p95']}",
        "",
        f"{'study':26} {'cards':>6} {'warning':>8} {'info':>5} {'accepted':>9} "
        f"{'overridden':>11} {'accept':>8} {'override':>9} {'would warn':>11}",
    ]
    for study, row in report["by_study"].items():
        lines.append(
            f"{study:26} {row['cards']:>6} {row['warning']:>8} {row['info']:>5} "
            f"{row['accepted']:>9} {row['overridden']:>11} {_pct(row['accept_rate']):>8} "
            f"{_pct(row['override_rate']):>9} {row['would_have_warned']:>11}"
        )
    if report["override_reasons"]:
        lines += ["", "override reasons:"]
        lines += [f"  {count:>5}  {reason}" for reason, count in report["override_reasons"].items()]
    if report["held_back"]:
        held = ", ".join(f"{why} {n}" for why, n in report["held_back"].items())
        lines += ["", f"warnings held back: {held}"]
    if report["silent_mode_verdicts"]:
        lines += ["", f"silent-mode verdicts: {report['silent_mode_verdicts']}"]
    return "\n".join(lines)


# Chart geometry (SVG user units; the SVG scales to the page width).
WIDTH, HEIGHT = 760, 300
LEFT, RIGHT, TOP, BOTTOM = 48, 52, 20, 46
WARNING_FILL, INFO_FILL, SILENT_FILL, LINE = "#2f6db5", "#9dbde3", "#c9c9c9", "#c0392b"


def _nice_max(value: int) -> int:
    for step in (1, 2, 5, 10, 20, 25, 50, 100, 200, 250, 500, 1000, 2000, 5000, 10000):
        if value <= step * 4:
            return step * 4
    return ((value // 10000) + 1) * 10000


def render_chart(weeks: list[dict[str, Any]]) -> str:
    """Cards per week (stacked bars: warning, info, silent mode's would-have-warned) and the
    override rate (line with a point per week, 0-100 % on the right axis), as inline SVG.
    Readable with one week (one labelled bar and point) or fifty-two (labels thinned)."""
    n = len(weeks)
    if not n:
        return '<p class="empty">No calls in this period: nothing to chart.</p>'
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    base = TOP + plot_h
    peak = max(w["cards"] + w["would_have_warned"] for w in weeks)
    top = _nice_max(max(peak, 1))
    step = plot_w / n
    bar = min(step * 0.7, 60.0)
    parts = [
        f'<svg id="weekly-chart" viewBox="0 0 {WIDTH} {HEIGHT}" width="100%" '
        f'preserveAspectRatio="xMidYMid meet" role="img" '
        'aria-labelledby="chart-title chart-desc" xmlns="http://www.w3.org/2000/svg">',
        '<title id="chart-title">Cards per week and override rate</title>',
        f'<desc id="chart-desc">{n} week{"s" if n != 1 else ""}: bars are cards shown (warning, '
        "info) and silent mode's would-have-warned; the red line is the override rate.</desc>",
    ]
    for i in range(5):  # grid and both axes' ticks
        y = base - plot_h * i / 4
        parts.append(
            f'<line x1="{LEFT}" y1="{y:.1f}" x2="{WIDTH - RIGHT}" y2="{y:.1f}" '
            f'stroke="{"#333" if i == 0 else "#e3e3e3"}"/>'
            f'<text x="{LEFT - 6}" y="{y + 4:.1f}" font-size="11" text-anchor="end">'
            f"{top * i // 4}</text>"
            f'<text x="{WIDTH - RIGHT + 6}" y="{y + 4:.1f}" font-size="11" fill="{LINE}">'
            f"{25 * i} %</text>"
        )
    parts.append(
        f'<text x="12" y="{TOP + plot_h / 2:.1f}" font-size="11" text-anchor="middle" '
        f'transform="rotate(-90 12 {TOP + plot_h / 2:.1f})">cards</text>'
    )
    every = max(1, -(-n // 13))  # at most ~13 week labels
    points = []
    for i, w in enumerate(weeks):
        x = LEFT + step * i + (step - bar) / 2
        y = base
        for value, fill, what in (
            (w["warning"], WARNING_FILL, "warning"),
            (w["info"], INFO_FILL, "info"),
            (w["would_have_warned"], SILENT_FILL, "would have warned (silent mode)"),
        ):
            if not value:
                continue
            h = plot_h * value / top
            y -= h
            parts.append(
                f'<rect class="bar" x="{x:.1f}" y="{y:.1f}" width="{bar:.1f}" height="{h:.1f}" '
                f'fill="{fill}"><title>{w["week"]}: {value} {what}</title></rect>'
            )
        cx = LEFT + step * (i + 0.5)
        if n <= 8 and w["cards"] + w["would_have_warned"]:
            parts.append(
                f'<text x="{cx:.1f}" y="{y - 4:.1f}" font-size="11" text-anchor="middle">'
                f"{w['cards'] + w['would_have_warned']}</text>"
            )
        if w["override_rate"] is not None:
            cy = base - plot_h * w["override_rate"]
            points.append((cx, cy, w))
        if i % every == 0 or n == 1:
            parts.append(
                f'<text x="{cx:.1f}" y="{base + 16}" font-size="11" text-anchor="middle">'
                f"{html.escape(w['starts'][5:] if n > 1 else w['week'])}</text>"
            )
    if len(points) > 1:
        path = " ".join(f"{x:.1f},{y:.1f}" for x, y, _ in points)
        parts.append(
            f'<polyline points="{path}" fill="none" stroke="{LINE}" stroke-width="2.5" '
            'stroke-linejoin="round"/>'
        )
    for x, y, w in points:
        parts.append(
            f'<circle class="rate" cx="{x:.1f}" cy="{y:.1f}" r="{5 if n <= 26 else 3.5}" '
            f'fill="{LINE}"><title>{w["week"]}: override rate {_pct(w["override_rate"])}'
            "</title></circle>"
        )
        if n <= 8:
            parts.append(
                f'<text x="{x + 8:.1f}" y="{y - 6:.1f}" font-size="11" fill="{LINE}">'
                f"{_pct(w['override_rate'])}</text>"
            )
    first, last = weeks[0]["starts"], weeks[-1]["starts"]
    caption = (
        f"the week starting {first}"
        if n == 1
        else f"{n} weeks, labelled by the Monday they start on (month-day), {first} to {last}"
    )
    parts.append(
        f'<text x="{LEFT + plot_w / 2:.1f}" y="{HEIGHT - 6}" font-size="11" '
        f'text-anchor="middle">{caption}</text>'
    )
    parts.append("</svg>")
    legend = (
        '<p class="legend">'
        f'<span style="background:{WARNING_FILL}"></span>warning cards '
        f'<span style="background:{INFO_FILL}"></span>info cards '
        f'<span style="background:{SILENT_FILL}"></span>would have warned (silent mode) '
        f'<span class="line" style="background:{LINE}"></span>override rate (right axis)</p>'
    )
    return "".join(parts) + legend


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
        ("warning cards", ind.get("warning", _outcomes())["cards"]),
        ("info cards", ind.get("info", _outcomes())["cards"]),
        ("accept rate", _pct(fb["accept_rate"])),
        ("override rate", _pct(fb["override_rate"])),
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
            _pct(r["accept_rate"]),
            _pct(r["override_rate"]),
            r["would_have_warned"],
            r["held_back"],
        ]
        for study, r in report["by_study"].items()
    ]
    indicator_rows = [
        [k, r["cards"], r["accepted"], r["overridden"], _pct(r["accept_rate"]),
         _pct(r["override_rate"])]
        for k, r in report["by_indicator"].items()
    ]  # fmt: skip
    total_over = sum(report["override_reasons"].values())
    reason_rows = [
        [reason, count, _pct(_rate(count, total_over))]
        for reason, count in report["override_reasons"].items()
    ]
    week_rows = [
        [w["week"], w["starts"], w["cards"], w["warning"], w["info"], w["would_have_warned"],
         w["overridden"], _pct(w["override_rate"])]
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
<p class="meta" id="period">Period: <strong>{html.escape(_period_text(report))}</strong>.
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
