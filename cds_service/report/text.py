"""The report as plain text (``cds-service report``)."""

from __future__ import annotations

from typing import Any

from .build import empty_outcomes
from .formats import percent, period_text


def render_text(report: dict[str, Any]) -> str:
    fb = report["feedback"]
    ind = report["by_indicator"]
    warning = ind.get("warning", empty_outcomes())
    info = ind.get("info", empty_outcomes())
    lines = [
        "Breast surveillance imaging CDS: pilot report",
        f"period: {period_text(report)}",
        f"generated: {report['generated_at']}",
        "",
        f"calls: {report['calls']}   cards issued: {report['cards_issued']} "
        f"(warning {warning['cards']}, info {info['cards']})   snoozes: {report['snoozes']}",
        f"feedback: {fb['accepted']} accepted, {fb['overridden']} overridden; "
        f"accept rate {percent(fb['accept_rate'])}, override rate {percent(fb['override_rate'])}",
        f"  warning cards: accept rate {percent(warning.get('accept_rate'))}, "
        f"override rate {percent(warning.get('override_rate'))}",
        f"  info cards: accept rate {percent(info.get('accept_rate'))}, "
        f"override rate {percent(info.get('override_rate'))}",
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
            f"{row['accepted']:>9} {row['overridden']:>11} {percent(row['accept_rate']):>8} "
            f"{percent(row['override_rate']):>9} {row['would_have_warned']:>11}"
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
