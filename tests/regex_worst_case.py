"""Run every order-text pattern of mappings/ on 100 KiB of adversarial text; print the slowest.

Run by tests/test_faults.py in a subprocess (so that a pattern that backtracks ends in the
test's timeout instead of hanging the suite); also ``python -m tests.regex_worst_case``.
"""

from __future__ import annotations

import dataclasses
import sys
import time
from typing import Any

from cds_service.config import default_mappings_dir
from cds_service.mappings import LINEAR_TIME, load_dir
from cds_service.rules import REQUIRED_CONCEPTS

SIZE = 100 * 1024
TEXTS = {
    "CT repeated": ("CT " * (SIZE // 3))[:SIZE],
    "words without the last": ("CT CHEST ABDOMEN BONE SCAN PET " * SIZE)[:SIZE],
    "one letter": "A" * SIZE,
    "spaces": "CT" + " " * (SIZE - 8) + "CHEST",
    "stage text": ("STAGE IV M1 NOT METASTATIC " * SIZE)[:SIZE],
}


def patterns(value: Any) -> list[Any]:
    if hasattr(value, "search") and hasattr(value, "pattern"):
        return [value]
    if isinstance(value, tuple | list):
        return [p for item in value for p in patterns(item)]
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return [p for f in dataclasses.fields(value) for p in patterns(getattr(value, f.name))]
    return []


def main() -> int:
    matcher = load_dir(default_mappings_dir(), REQUIRED_CONCEPTS).text
    found = [
        p
        for f in dataclasses.fields(matcher)
        if not f.name.startswith("_")
        for p in patterns(getattr(matcher, f.name))
    ]
    slowest = (0.0, "", "")
    started = time.perf_counter()
    for name, text in TEXTS.items():
        for pattern in found:
            t = time.perf_counter()
            pattern.search(text)
            took = time.perf_counter() - t
            slowest = max(slowest, (took, pattern.pattern, name))
        # And the matcher's own readings of the text (normalising, synonyms, every question).
        for read in (matcher.match, matcher.reason, matcher.mentions_finding, matcher.says_distant):
            read(text)
    total = time.perf_counter() - started
    print(
        f"linear={LINEAR_TIME} patterns={len(found)} texts={len(TEXTS)} x {SIZE} chars: "
        f"total {total:.2f} s, slowest {slowest[0] * 1000:.1f} ms ({slowest[1]!r} on {slowest[2]})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
