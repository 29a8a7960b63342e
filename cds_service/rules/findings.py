"""What the rules produce: the look-back windows they take, and the Evidence, Exclusion,
Assessment and Finding (with its Verdict) they return."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Literal

from ..facts import OrderFact


@dataclass(frozen=True)
class Windows:
    """The configurable look-back windows, in days."""

    symptom_new: int = 90
    symptom_persistent: int = 365
    lab: int = 90
    new_diagnosis: int = 365
    active_treatment: int = 183


DEFAULT_WINDOWS = Windows()


@dataclass(frozen=True)
class Evidence:
    """One record that decided something, named for the clinician (never logged)."""

    kind: str  # FHIR resource type
    id: str
    label: str
    when: date | None = None
    concept: str = ""
    how: str = ""  # the code ("code system|code") or our phrase ("words 'METASTA'") that named it


@dataclass(frozen=True)
class Exclusion:
    """Why the patient is not in routine surveillance; ``code`` is safe to log and audit."""

    code: str  # e.g. "metastatic-disease", "symptom:bone-pain", "abnormal-lab:calcium"
    evidence: Evidence | None = None


@dataclass(frozen=True)
class Assessment:
    """The patient's side of the verdict, shared by every order of one call."""

    survivor: bool
    evidence: tuple[Evidence, ...]
    exclusions: tuple[Exclusion, ...]  # any of these: not Variant 10
    symptoms: tuple[Exclusion, ...]  # the Variant 11 part of exclusions (symptoms and labs)
    long_standing: tuple[Evidence, ...]  # chronic symptom entries that do not silence alone
    not_applicable: str = ""  # why there is no scenario at all (no invasive breast cancer, ...)


# The verdict on one order (``Finding.verdict``), never the store's table of audited calls:
# "warn" (Variant 10, Usually Not Appropriate), "info-targeted" (Variant 11: the studies that fit
# the symptoms), "info-tumor-marker" (a tumour marker in surveillance), "silent" (no card), and
# "snoozed" (a warning the clinician snoozed: set by policy, never by the rules).
Verdict = Literal["warn", "info-targeted", "info-tumor-marker", "silent", "snoozed"]


@dataclass(frozen=True)
class Finding:
    order: OrderFact
    study: str | None
    verdict: Verdict
    reason: str  # safe to log: which rule decided
    evidence: tuple[Evidence, ...] = ()
    long_standing: tuple[Evidence, ...] = ()
    symptoms: tuple[Exclusion, ...] = ()
    targeted: tuple[str, ...] = ()  # for info-targeted: the studies that fit the symptoms
    surveillance_reason: bool = False
    offer_mammogram: bool = False  # no mammogram in the last year: suggest one instead
    # The rules' verdict when the site's or the client's policy (policy.apply_policy) changed
    # it: a snoozed or switched-off warning is still a Usually Not Appropriate order.
    before_policy: Verdict | None = None
    # For a verdict that is not a warning: the record (or the order's own words) that decided
    # it, with the code or our phrase that named the concept (audit, evaluate --explain).
    cause: Evidence | None = None
