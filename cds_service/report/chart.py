"""The report's weekly chart as inline SVG."""

from __future__ import annotations

import html
from typing import Any

from .formats import percent

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
            f'fill="{LINE}"><title>{w["week"]}: override rate {percent(w["override_rate"])}'
            "</title></circle>"
        )
        if n <= 8:
            parts.append(
                f'<text x="{x + 8:.1f}" y="{y - 6:.1f}" font-size="11" fill="{LINE}">'
                f"{percent(w['override_rate'])}</text>"
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
