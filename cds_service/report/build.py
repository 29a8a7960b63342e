"""Building the pilot's report: the audit and feedback tables, read for a period, turned into
figures (counts, rates, percentiles, weeks). No patient data is read."""

from __future__ import annotations

import statistics
from collections import Counter, defaultdict
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from sqlalchemy import select

from ..store import AuditedVerdict, Call, Feedback, Snooze, Store

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


def rate(part: int, whole: int) -> float | None:
    return round(part / whole, 3) if whole else None


def _monday(moment: datetime) -> date:
    day = _utc(moment).date()
    return day - timedelta(days=day.weekday())


def empty_outcomes() -> dict[str, Any]:
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
                AuditedVerdict.study,
                AuditedVerdict.verdict,
                AuditedVerdict.rule,
                AuditedVerdict.indicator,
                AuditedVerdict.card_uuid,
                Call.silent,
                Call.received_at,
            )
            .join(Call, AuditedVerdict.call_id == Call.id)
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
        lambda: {
            **empty_outcomes(),
            "warning": 0,
            "info": 0,
            "would_have_warned": 0,
            "held_back": 0,
        }
    )
    by_indicator: dict[str, dict[str, Any]] = defaultdict(empty_outcomes)
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
        row["accept_rate"] = rate(row["accepted"], row["cards"])
        row["override_rate"] = rate(row["overridden"], row["cards"])

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
            "accept_rate": rate(outcomes["accepted"], len(cards)),
            "override_rate": rate(outcomes["overridden"], len(cards)),
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
                "override_rate": rate(overridden[week], shown),
            }
        )
        week += timedelta(days=7)
    return out
