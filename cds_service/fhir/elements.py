"""Lenient readers of FHIR JSON elements: an element of the wrong shape reads as absent.

Hot on large records: concrete type checks (JSON objects arrive as dicts), nothing built that is
not kept.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, cast

_EMPTY: Mapping[str, Any] = {}
NO_CONCEPTS: frozenset[str] = frozenset()


def as_dict(value: Any) -> Mapping[str, Any]:
    # JSON objects arrive as dicts: the concrete check is much cheaper than an ABC check.
    return value if type(value) is dict else _EMPTY


def as_list(value: Any) -> Sequence[Any]:
    return value if type(value) is list else ()


def as_str(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def coding_pairs(concept: Any) -> list[tuple[str, str]]:
    """(system, code) of a CodeableConcept's codings that have both (hot: inlined checks)."""
    if type(concept) is not dict:
        return []
    codings = concept.get("coding")
    if type(codings) is not list:
        return []
    out = []
    for c in codings:
        if type(c) is dict:
            system, code = c.get("system"), c.get("code")
            if type(system) is str and type(code) is str and system and code:
                out.append((system, code))
    return out


def concept_label(concept: Any) -> str:
    """A CodeableConcept's name: its text, else its first coding's display or code."""
    cc = as_dict(concept)
    text = as_str(cc.get("text"))
    if text:
        return text
    for coding in as_list(cc.get("coding")):
        c = as_dict(coding)
        shown = as_str(c.get("display")) or as_str(c.get("code"))
        if shown:
            return shown
    return ""


def first_code(concept: Any) -> str | None:
    """A CodeableConcept's first code (a status: ``clinicalStatus``, ``verificationStatus``)."""
    for coding in as_list(as_dict(concept).get("coding")):
        code = as_str(as_dict(coding).get("code"))
        if code:
            return code
    return None


def as_number(value: Any) -> float | None:
    kind = type(value)  # JSON numbers are exactly int or float (a bool is not a number here)
    if kind is float:
        return cast(float, value)
    if kind is int:
        return float(value)
    return None
