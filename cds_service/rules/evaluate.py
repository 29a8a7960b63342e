"""The whole guideline decision for one hook call: one Finding per order, and the records the
cards will cite."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import replace
from datetime import date

from ..facts import OrderFact, PatientFacts
from ..mappings import Knowledge
from .findings import DEFAULT_WINDOWS, Finding, Windows
from .mammogram import mammogram_due
from .orders import judge_order, sibling_reason
from .patient import assess_patient


def evaluate(
    facts: PatientFacts,
    orders: Sequence[OrderFact],
    knowledge: Knowledge,
    today: date,
    windows: Windows = DEFAULT_WINDOWS,
    drafts: Sequence[OrderFact] = (),
    partial: bool = False,
) -> list[Finding]:
    """One finding per order: the whole guideline decision for one hook call.

    ``drafts`` are all the draft orders of the call (context for suggestions and their
    reasons); ``orders`` the ones to judge. ``partial``: the record is known to be incomplete
    (a search with more pages than were read), so it cannot show that the patient has no
    symptom, abnormal lab, metastasis or recurrence, which is what a Variant 10 warning
    asserts: no warning from it (silent, "partial-record"); the other verdicts stand, as what
    was read already explains them.
    """
    patient = assess_patient(facts, today, windows)
    findings = [judge_order(order, patient, facts, knowledge) for order in orders]
    on_partial = "partial-record" if partial else None
    findings = [
        replace(f, verdict="silent", reason=why)
        if f.verdict == "warn"
        and (
            why := sibling_reason(f.order, drafts, knowledge, f.reason == "variant-2") or on_partial
        )
        else f
        for f in findings
    ]
    if any(f.verdict == "warn" for f in findings) and mammogram_due(
        facts, drafts or orders, knowledge, today
    ):
        # Not on a Variant 1-2 warning: a new cancer's breast imaging is part of its staging.
        findings = [
            replace(f, offer_mammogram=f.verdict == "warn" and f.reason != "variant-2")
            for f in findings
        ]
    return findings


def cited(findings: Iterable[Finding]) -> list[tuple[str, str]]:
    """(resource type, id) of every record a card will name, warning or info."""
    out = []
    for f in findings:
        if f.verdict == "silent":
            continue
        out += [(e.kind, e.id) for e in (*f.evidence, *f.long_standing)]
        out += [(s.evidence.kind, s.evidence.id) for s in f.symptoms if s.evidence]
    return out
