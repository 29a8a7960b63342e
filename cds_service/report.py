"""``cds-service report``: how often the card fires, what clinicians do with it, and why they
override, from the audit and feedback tables. No patient data is read or shown."""

from __future__ import annotations

import html
import statistics
from collections import Counter, defaultdict
from datetime import UTC, date, datetime, time
from typing import Any

from sqlalchemy import select

from .store import Call, Feedback, Snooze, Store, Verdict


def _since(value: date | None) -> datetime:
    return datetime.combine(value or date(1970, 1, 1), time.min, tzinfo=UTC)


def _percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    if len(values) == 1:
        return round(values[0], 1)
    return round(statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1], 1)


def _rate(part: int, whole: int) -> float | None:
    return round(part / whole, 3) if whole else None


def build_report(store: Store, since: date | None = None) -> dict[str, Any]:
    start = _since(since)
    with store.session() as s:
        calls = s.execute(
            select(Call.id, Call.received_at, Call.latency_ms, Call.silent).where(
                Call.received_at >= start
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
            .where(Call.received_at >= start)
        ).all()
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
        snoozes = len(s.execute(select(Snooze.id).where(Snooze.created_at >= start)).all())

    card_study = {v.card_uuid: v.study for v in verdicts if v.card_uuid}
    card_week = {v.card_uuid: v.received_at.isocalendar()[:2] for v in verdicts if v.card_uuid}
    by_study: dict[str, dict[str, Any]] = defaultdict(
        lambda: {"cards": 0, "accepted": 0, "overridden": 0}
    )
    by_indicator: Counter[str] = Counter()
    for v in verdicts:
        if v.card_uuid:
            by_study[v.study or "-"]["cards"] += 1
            by_indicator[v.indicator or "-"] += 1
    outcomes: Counter[str] = Counter()
    reasons: Counter[str] = Counter()
    weekly_over: Counter[tuple[int, int]] = Counter()
    for f in feedback:
        outcomes[f.outcome] += 1
        study = card_study.get(f.card_uuid)
        if study:
            by_study[study][f.outcome] += 1
        if f.outcome == "overridden":
            reasons[f.override_display or f.override_code or "(no reason given)"] += 1
            week = card_week.get(f.card_uuid)
            if week:
                weekly_over[week] += 1
    for row in by_study.values():
        row["override_rate"] = _rate(row["overridden"], row["cards"])
        row["accept_rate"] = _rate(row["accepted"], row["cards"])
    weekly_cards: Counter[tuple[int, int]] = Counter(card_week.values())
    cards_issued = sum(1 for v in verdicts if v.card_uuid)
    latencies = [c.latency_ms for c in calls]
    return {
        "since": since.isoformat() if since else None,
        "calls": len(calls),
        "cards_issued": cards_issued,
        "by_indicator": dict(by_indicator),
        "by_study": {k: by_study[k] for k in sorted(by_study)},
        "feedback": {
            "accepted": outcomes["accepted"],
            "overridden": outcomes["overridden"],
            "accept_rate": _rate(outcomes["accepted"], cards_issued),
            "override_rate": _rate(outcomes["overridden"], cards_issued),
            "items_with_missing_fields": sum(1 for f in feedback if f.missing),
        },
        "override_reasons": dict(reasons.most_common()),
        "snoozes": snoozes,
        "verdicts": dict(Counter(f"{v.verdict}:{v.rule}" for v in verdicts).most_common()),
        "silent_mode_verdicts": dict(Counter(v.verdict for v in verdicts if v.silent)),
        "latency_ms": {"p50": _percentile(latencies, 50), "p95": _percentile(latencies, 95)},
        "weekly": [
            {
                "week": f"{y}-W{w:02d}",
                "cards": weekly_cards[(y, w)],
                "overridden": weekly_over[(y, w)],
                "override_rate": _rate(weekly_over[(y, w)], weekly_cards[(y, w)]),
            }
            for (y, w) in sorted(weekly_cards)
        ],
    }


def render_text(report: dict[str, Any]) -> str:
    fb = report["feedback"]
    lines = [
        f"calls: {report['calls']}   cards issued: {report['cards_issued']}   "
        f"snoozes: {report['snoozes']}",
        f"feedback: {fb['accepted']} accepted, {fb['overridden']} overridden "
        f"(override rate {fb['override_rate']})",
        f"latency ms: p50 {report['latency_ms']['p50']}, p95 {report['latency_ms']['p95']}",
        "",
        f"{'study':28} {'cards':>6} {'accepted':>9} {'overridden':>11} {'override rate':>14}",
    ]
    for study, row in report["by_study"].items():
        lines.append(
            f"{study:28} {row['cards']:>6} {row['accepted']:>9} {row['overridden']:>11} "
            f"{row['override_rate'] if row['override_rate'] is not None else '-':>14}"
        )
    if report["override_reasons"]:
        lines += ["", "override reasons:"]
        lines += [f"  {count:>5}  {reason}" for reason, count in report["override_reasons"].items()]
    if report["silent_mode_verdicts"]:
        lines += ["", f"silent-mode verdicts: {report['silent_mode_verdicts']}"]
    return "\n".join(lines)


def render_html(report: dict[str, Any]) -> str:
    """A self-contained page: weekly cards as bars, override rate as a line (inline SVG)."""
    weeks = report["weekly"]
    width, height, pad = 720, 260, 40
    peak = max((w["cards"] for w in weeks), default=0) or 1
    step = (width - 2 * pad) / max(len(weeks), 1)
    bars, points, labels = [], [], []
    for i, week in enumerate(weeks):
        x = pad + i * step
        h = (height - 2 * pad) * week["cards"] / peak
        bars.append(
            f'<rect x="{x + step * 0.15:.1f}" y="{height - pad - h:.1f}" width="{step * 0.7:.1f}" '
            f'height="{h:.1f}" fill="#8fb3de"><title>{week["week"]}: {week["cards"]} cards'
            "</title></rect>"
        )
        rate = week["override_rate"] or 0.0
        points.append(f"{x + step / 2:.1f},{height - pad - (height - 2 * pad) * rate:.1f}")
        labels.append(
            f'<text x="{x + step / 2:.1f}" y="{height - pad + 16}" font-size="10" '
            f'text-anchor="middle">{html.escape(week["week"])}</text>'
        )
    line = (
        f'<polyline points="{" ".join(points)}" fill="none" stroke="#c0392b" stroke-width="2"/>'
        if points
        else ""
    )
    svg = (
        f'<svg viewBox="0 0 {width} {height}" width="100%" role="img" '
        'aria-label="Cards per week (bars) and override rate (line)">'
        f'<line x1="{pad}" y1="{height - pad}" x2="{width - pad}" y2="{height - pad}" '
        'stroke="#333"/>' + "".join(bars) + line + "".join(labels) + "</svg>"
    )
    rows = "".join(
        f"<tr><td>{html.escape(study)}</td><td>{r['cards']}</td><td>{r['accepted']}</td>"
        f"<td>{r['overridden']}</td><td>{'' if r['override_rate'] is None else r['override_rate']}"
        "</td></tr>"
        for study, r in report["by_study"].items()
    )
    reasons = "".join(
        f"<tr><td>{html.escape(reason)}</td><td>{count}</td></tr>"
        for reason, count in report["override_reasons"].items()
    )
    fb = report["feedback"]
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Breast surveillance imaging CDS: report</title>
<style>body{{font-family:system-ui,sans-serif;max-width:52rem;margin:auto;padding:1rem}}
table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;padding:.3rem .6rem;text-align:right}}
td:first-child,th:first-child{{text-align:left}}</style></head><body>
<h1>Breast surveillance imaging CDS</h1>
<p>{report["calls"]} calls, <strong>{report["cards_issued"]} cards</strong>,
{fb["accepted"]} accepted, {fb["overridden"]} overridden (override rate {fb["override_rate"]}),
{report["snoozes"]} snoozes. Latency p50 {report["latency_ms"]["p50"]} ms,
p95 {report["latency_ms"]["p95"]} ms.</p>
<h2>Cards per week (bars) and override rate (red line, 0 to 100%)</h2>
{svg}
<h2>By study</h2>
<table><tr><th>study</th><th>cards</th><th>accepted</th><th>overridden</th><th>override rate</th>
</tr>{rows}</table>
<h2>Override reasons</h2>
<table><tr><th>reason</th><th>count</th></tr>{reasons}</table>
</body></html>
"""
