"""Markdown text helpers for card wording: fitting summaries, escaping record text, listing
records, counting the words a reader sees."""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import date

from ..rules import Evidence

SUMMARY_MAX = 139  # the spec says "<140 characters"; Inferno's CRD kit rejects 140
EVIDENCE_SHOWN = 2  # records named per list on a card; the rest are counted

_MARKDOWN_SPECIAL = re.compile(r"([\\`*_\[\]<>#|~])")


def fit_summary(text: str) -> str:
    return text if len(text) <= SUMMARY_MAX else text[: SUMMARY_MAX - 1].rstrip() + "…"


def plain(text: str) -> str:
    """Text from the record (labels, an order's reason) as literal markdown: no emphasis,
    link or raw HTML of its own (the sandbox renders raw HTML in a detail)."""
    return _MARKDOWN_SPECIAL.sub(r"\\\1", text)


def fit_words(text: str, limit: int) -> str:
    words = text.split()
    return text if len(words) <= limit else " ".join(words[:limit]) + "…"


def _when(value: date | None) -> str:
    return f", {value.isoformat()}" if value else ""


def records(items: Iterable[Evidence], more: str = "", limit: int = 0, label_words: int = 0) -> str:
    """The records as "label (kind, date)"; past ``limit`` (0: none) the rest are counted
    with ``more`` (its ``{count}`` filled in); labels longer than ``label_words`` (0: any
    length) are cut."""
    seen: list[str] = []
    for item in items:
        label = item.label or item.concept
        if label_words:
            label = fit_words(label, label_words)
        line = f"{plain(label)} ({item.kind}{_when(item.when)})"
        if line not in seen:
            seen.append(line)
    if limit and len(seen) > limit:
        return "; ".join(seen[:limit]) + " " + more.format(count=len(seen) - limit)
    return "; ".join(seen)


def markdown_link(label: str, url: str) -> str:
    return f"[{label}]({url})"


def visible_words(markdown: str) -> int:
    """About the words a reader sees: link targets and markup are not words."""
    text = re.sub(r"\]\([^)]*\)", " ", markdown)
    return sum(1 for token in text.split() if re.search(r"[^\W_]|[^\x00-\x7f]", token))
