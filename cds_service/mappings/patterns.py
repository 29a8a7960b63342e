"""Compiling the regular expressions of the mapping files to run in linear time (RE2)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, cast

from ..errors import MappingError

try:  # decided once: RE2 matches in time linear in the text, whatever the pattern
    import re2 as _linear  # google-re2
except ImportError:  # pragma: no cover - no wheel for this platform: Python's backtracking re
    _linear = None
LINEAR_TIME = _linear is not None


def _compile(path: Path, where: str, pattern: str) -> re.Pattern[str]:
    """Order-text patterns come from data and read client text (up to the body limit): with
    Python's re, ``\\bCT\\b.*\\bCHEST\\b`` took 13.8 s on 101 KiB. They are compiled with RE2
    (linear time); a pattern RE2 cannot run (backreferences, lookaround) is a mapping error,
    so check-mappings and start-up refuse it."""
    try:
        compiled = re.compile(pattern)
    except re.error as exc:
        raise MappingError(str(path), where, f"bad regular expression {pattern!r}: {exc}") from exc
    if _linear is None:
        return compiled
    try:
        parts = _lookaheads(pattern)
        if parts is not None:  # "^(?=.*A)(?=.*B)": A and B anywhere, each searched by RE2
            return cast("re.Pattern[str]", _AllOf(pattern, [_linear.compile(p) for p in parts]))
        return cast("re.Pattern[str]", _linear.compile(pattern))
    except _linear.error as exc:
        raise MappingError(
            str(path),
            where,
            f"regular expression {pattern!r} is not linear-time (RE2 refuses it: {exc}); "
            "write it without backreferences or lookaround",
        ) from exc


class _AllOf:
    """``^(?=.*A)(?=.*B)...``, the one lookaround form mappings/ uses ("the text names A and
    B, in any order"), run as RE2 searches for A, B, ... (search only: such patterns are
    study includes and excludes)."""

    def __init__(self, pattern: str, parts: list[Any]) -> None:
        self.pattern = pattern
        self.parts = parts

    def search(self, text: str) -> Any:
        found = None
        for part in self.parts:
            found = part.search(text)
            if found is None:
                return None
        return found


def _lookaheads(pattern: str) -> list[str] | None:
    """The bodies A, B of a pattern that is exactly ``^(?=.*A)(?=.*B)...``, else None."""
    if not pattern.startswith("^(?=.*"):
        return None
    parts: list[str] = []
    i = 1
    while i < len(pattern):
        if not pattern.startswith("(?=.*", i):
            return None
        start = j = i + 5
        depth, in_class = 1, False
        while j < len(pattern) and depth:
            c = pattern[j]
            if c == "\\":
                j += 2
                continue
            if in_class:
                in_class = c != "]"
            elif c == "[":
                in_class = True
            elif c == "(":
                depth += 1
            elif c == ")":
                depth -= 1
            j += 1
        if depth:
            return None
        parts.append(pattern[start : j - 1])
        i = j
    return parts or None
