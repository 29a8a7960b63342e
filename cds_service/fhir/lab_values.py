"""An Observation as a fact: its value (or a value written as text, with its flag), the upper
limit of its reference range (or a range written as text; calcium in either unit) and its
interpretation (coded, or in words).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from ..facts import ObservationFact
from ..mappings import TextMatcher, WordMatcher
from .dates import first_date
from .elements import NO_CONCEPTS, as_dict, as_list, as_number, as_str, concept_label

# Analytes whose normal range spans less than 2.5 times its lower limit (read below).
_NARROW = frozenset({"alkaline-phosphatase", "lactate-dehydrogenase", "calcium", "calcium-ionized"})


def observation_fact(
    raw: Mapping[str, Any],
    concepts: frozenset[str],
    values: frozenset[str],
    text: TextMatcher | None = None,
    how: tuple[tuple[str, str], ...] = (),
    words: WordMatcher | None = None,
) -> ObservationFact:
    # Hot on large records (thousands of labs): concrete type checks, nothing built that is
    # not kept.
    quantity = raw.get("valueQuantity")
    value = as_number(quantity.get("value")) if type(quantity) is dict else None
    flagged = False
    unbounded = False
    if value is None and type(raw.get("valueString")) is str:
        # A result given only as text: "260 H", "412 (H)", "7.1 HIGH".
        written = _VALUE_TEXT.match(raw["valueString"])
        if written:
            value = float(written.group(1))
            flagged = bool(written.group(2))
    high = None
    for reference in as_list(raw.get("referenceRange")):
        bound = as_dict(as_dict(reference).get("high"))
        high = as_number(bound.get("value"))
        if high is not None and value is not None and "calcium" in concepts:
            value = _same_unit(value, as_dict(quantity), bound)
        if high is None:
            high = _range_high(as_str(as_dict(reference).get("text")))
        if high is not None:
            break
        low = as_number(as_dict(as_dict(reference).get("low")).get("value"))
        if low is not None and value is not None and value > 2.5 * low and concepts & _NARROW:
            # A range with a lower limit only ("> 40 U/L"): the upper limit is not given. For
            # analytes whose normal range spans less than two and a half times its lower limit
            # (ALP about 40-130 U/L, LDH about 140-280 U/L, calcium about 8.6-10.3 mg/dL), a
            # value past that is read as possibly high (an ALP of 412 against 40).
            unbounded = True
    interpretation = NO_CONCEPTS
    interpretations = raw.get("interpretation")
    if interpretations:
        interpretation = frozenset(
            code
            for concept in as_list(interpretations)
            for coding in as_list(as_dict(concept).get("coding"))
            if (code := as_str(as_dict(coding).get("code")))
        )
        if not interpretation and (text is not None or words is not None):
            # Only words ("H", "High", "Abnormal"): read as the abnormal code they stand for.
            flags = [as_str(as_dict(concept).get("text")) for concept in as_list(interpretations)]
            if any(
                (words is not None and words.says_abnormal(w))
                or (text is not None and text.mentions_finding(w))
                for w in flags
                if w
            ):
                interpretation = _ABNORMAL_BY_TEXT
    value_bool = raw.get("valueBoolean")
    return ObservationFact(
        id=as_str(raw.get("id")) or "",
        concepts=concepts,
        label=concept_label(raw.get("code")),
        status=as_str(raw.get("status")),
        effective=first_date(
            raw,
            "effectiveDateTime",
            "effectivePeriod.end",
            "effectivePeriod.start",
            "effectiveInstant",
            "issued",
        ),
        value_concepts=values,
        value=value,
        value_bool=value_bool if isinstance(value_bool, bool) else None,
        reference_high=high,
        interpretation=interpretation
        | (_ABNORMAL_BY_TEXT if flagged or (unbounded and high is None) else NO_CONCEPTS),
        how=how,
    )


# Calcium in mass and molar units (40.08 g/mol): a value in one beside a range in the other.
_CALCIUM_MG_DL_PER_MMOL_L = 4.008
_MOLAR = frozenset({"MMOL/L", "MMOL L"})
_MASS = frozenset({"MG/DL", "MG DL"})


def _same_unit(value: float, quantity: Mapping[str, Any], bound: Mapping[str, Any]) -> float:
    """A calcium value in its reference range's unit (mg/dL and mmol/L told apart by UCUM
    code or unit text); unchanged when either unit is unknown or they already agree."""
    have = str(quantity.get("code") or quantity.get("unit") or "").upper()
    want = str(bound.get("code") or bound.get("unit") or "").upper()
    if have in _MOLAR and want in _MASS:
        return value * _CALCIUM_MG_DL_PER_MMOL_L
    if have in _MASS and want in _MOLAR:
        return value / _CALCIUM_MG_DL_PER_MMOL_L
    return value


_ABNORMAL_BY_TEXT = frozenset({"A"})  # v3 ObservationInterpretation "Abnormal"
# A reference range written only as text, "40-129 U/L" or "40 - 129": its upper bound.
_RANGE_TEXT = re.compile(r"(?<![\d.\-])(\d+(?:\.\d+)?)\s*(?:-|–|to)\s*(\d+(?:\.\d+)?)\b(?![\-.]\d)")
# A value written as text, with a flag: "260 H", "412 (H)", "7.1 HIGH", "96 U/mL HH".
_VALUE_TEXT = re.compile(
    r"^\s*[<>]?\s*(\d+(?:\.\d+)?)\s*(?:(?!(?:HH?|HIGH|ABN|A)\b)[A-Za-z/%µ]+\s*)?"
    r"(\(?\b(?:HH?|HIGH|ABN|A)\b\)?)?\s*$",
    re.IGNORECASE,
)
# Only an upper limit: "<38", "< 38 U/mL", "<=5.0", "≤ 38", "up to 38".
_UPPER_TEXT = re.compile(r"^\s*(?:<=?|≤|up to)\s*(\d+(?:\.\d+)?)\b", re.IGNORECASE)


def _range_high(text: str | None) -> float | None:
    match = _RANGE_TEXT.search(text[:200]) if text else None  # "Ref: 35-104 U/L" too
    if match:
        return float(match.group(2))
    upper = _UPPER_TEXT.match(text) if text else None
    return float(upper.group(1)) if upper else None
