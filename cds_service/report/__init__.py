"""``cds-service report``: how often the cards fire, what clinicians do with them, and why they
override, from the audit and feedback tables, for a pilot committee. No patient data is read or
shown. Rates are fractions in ``--json`` and percentages in the text and HTML reports.

``build`` reads the tables into figures; ``text``, ``page`` and ``chart`` render them.
"""

from .build import build_report
from .chart import INFO_FILL, LINE, WARNING_FILL, render_chart
from .page import render_html
from .text import render_text

__all__ = [
    "INFO_FILL",
    "LINE",
    "WARNING_FILL",
    "build_report",
    "render_chart",
    "render_html",
    "render_text",
]
