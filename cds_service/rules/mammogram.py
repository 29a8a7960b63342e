"""The annual mammogram suggestion (ACR Variants 6-7, ASCO): is one due for this patient?"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date

from ..facts import OrderFact, PatientFacts
from ..mappings import Knowledge
from .concepts import MAMMOGRAPHY, MASTECTOMY
from .orders import classify_order
from .records import VOID_RESULT, counts, within

MAMMOGRAM_INTERVAL_DAYS = 365


def mammogram_due(
    facts: PatientFacts, drafts: Sequence[OrderFact], knowledge: Knowledge, today: date
) -> bool:
    """Annual mammography is the surveillance that helps (ACR Variants 6-7, ASCO): suggest it when
    none is recorded, done or ordered, in the last year and none is among the draft orders."""
    if facts.gender == "male":
        return False  # a man's follow-up mammography is individual, not a standard suggestion
    if any(MASTECTOMY in c.concepts and counts(c) for c in facts.conditions):
        return False
    if any(classify_order(order, knowledge) == MAMMOGRAPHY for order in drafts):
        return False
    for record in facts.procedures:
        if MAMMOGRAPHY not in record.concepts or record.status in VOID_RESULT | {"revoked"}:
            continue
        if record.performed is None or within(record.performed, today, MAMMOGRAM_INTERVAL_DAYS):
            return False
        if record.performed > today:  # a mammogram already scheduled
            return False
    return True
