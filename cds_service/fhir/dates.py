"""FHIR dates as dates: dateTimes, partial dates, an ``onsetAge``, a date written as text.

Every reading is the conservative one for the rules: a partial date takes the LAST day it can
mean (a symptom dated "2026" is as recent as it can be).
"""

from __future__ import annotations

import calendar
import re
from collections.abc import Mapping
from datetime import date
from typing import Any

from ..memo import Memo
from .elements import as_dict, as_number

_DATE = re.compile(r"^(\d{4})(?:-(\d{2})(?:-(\d{2}))?)?")


def parse_date(value: Any) -> date | None:
    """A FHIR date/dateTime as a date; partial dates take the LAST day they can mean.

    The last day is the conservative reading for every rule here: a symptom dated "2026" is as
    recent as it can be, and so is a diagnosis dated "2026-03".
    """
    if not isinstance(value, str):
        return None
    key = value[:10]  # all the pattern reads: records repeat dates (a lab panel, a visit)
    # Memo.recall written out: the call through it cost ~130 ns more per date (timeit), and a
    # large record carries thousands of dates.
    found = _DATES.get(key, _UNSEEN)
    if found is not _UNSEEN:
        return found  # type: ignore[return-value]
    return _DATES.remember(key, _parse_date(key))


_DATES: Memo[str, date | None] = Memo(50_000)
_UNSEEN = object()


def _parse_date(value: str) -> date | None:
    match = _DATE.match(value)
    if not match:
        return None
    year, month, day = match.groups()
    try:
        y = int(year)
        m = int(month) if month else 12
        d = int(day) if day else calendar.monthrange(y, m)[1]
        return date(y, m, d)
    except ValueError:
        return None


_PATHS: dict[str, tuple[str, ...]] = {}


def first_date(resource: Mapping[str, Any], *paths: str) -> date | None:
    for path in paths:
        parts = _PATHS.get(path)
        if parts is None:
            parts = _PATHS[path] = tuple(path.split("."))
        node: Any = resource.get(parts[0])
        for part in parts[1:]:
            node = node.get(part) if type(node) is dict else None
        if type(node) is str:
            found = parse_date(node)
            if found:
                return found
    return None


def onset_from_age(raw: Mapping[str, Any], birth: date | None) -> date | None:
    """``onsetAge`` in years: the last day the patient had that age (conservative: recent)."""
    age = as_dict(raw.get("onsetAge"))
    years = as_number(age.get("value"))
    if birth is None or years is None or age.get("code", "a") not in ("a", None):
        return None
    try:
        return date(birth.year + int(years) + 1, birth.month, min(birth.day, 28))
    except ValueError:
        return None


_YEAR_IN_TEXT = re.compile(r"\b(?:(0?[1-9]|1[0-2])[/-])?((?:19|20)\d\d)\b")


def date_in_text(text: str | None) -> date | None:
    """A date written as text ("06/2022", "2019", "June 2022: completed FOLFOX"): the last
    day of the latest month or year it names (the conservative reading: as recent as it can
    be)."""
    if not text:
        return None
    found = [
        _parse_date(f"{year}-{int(month):02d}" if month else year)
        for month, year in _YEAR_IN_TEXT.findall(text[:200])
    ]
    dates = [d for d in found if d]
    return max(dates) if dates else None
