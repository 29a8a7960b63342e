"""The order's side of the decision: which study is ordered, what its own reasons, words and
sibling orders say, and the verdict for it given the patient's Assessment."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from ..concepts import LABS, SYMPTOMS
from ..facts import OrderFact, PatientFacts
from ..mappings import Knowledge
from .concepts import (
    BREAST_CANCER,
    COMPLETED_TREATMENT,
    CONTRADICTED,
    DCIS,
    DISTANT_METASTASIS,
    ENDOCRINE,
    HISTORY,
    METASTATIC,
    OTHER_CANCER,
    RECURRENCE,
    REMISSION,
    STUDIES,
    SURGERY,
    SURVEILLANCE_ENCOUNTER,
    TUMOR_MARKER,
    US_AXILLA,
    US_EXTREMITY_FOCAL,
)
from .early_stage import judge_early_stage
from .findings import Assessment, Evidence, Exclusion, Finding
from .records import URGENT, counts


def classify_order(order: OrderFact, knowledge: Knowledge) -> str | None:
    """Which study is ordered: by code first, then by the order text for EHR-local codes."""
    if TUMOR_MARKER in order.concepts:
        return TUMOR_MARKER
    studies = {s for s in STUDIES if s in order.concepts}
    text = " ".join(t for t in (order.text, order.body_site_text) if t)
    if studies == {US_EXTREMITY_FOCAL}:
        # CPT 76882 covers any focal extremity structure: the axilla only when the order says so.
        return US_AXILLA if knowledge.text.match(text) == US_AXILLA else US_EXTREMITY_FOCAL
    if not studies:
        return knowledge.text.match(text)
    if len(studies) == 1:
        study = studies.pop()
        # The order text contradicts the code ("CT chest" coded, "PE protocol" or "low-dose
        # lung screening" written): we cannot tell which is right, so no Variant 10 verdict.
        return CONTRADICTED if knowledge.text.contradicts(study, text) else study
    # CPT 71260 and 74177 as two codings of one order describe CT chest/abdomen/pelvis.
    if studies == {"ct-chest", "ct-abdomen-pelvis"}:
        return "ct-chest-abdomen-pelvis"
    # Codings that disagree otherwise (PET/CT whole body and limited): no verdict either.
    return CONTRADICTED


# Order reasons that are compatible with routine surveillance (the cancer itself, its history,
# follow-up encounters, adjuvant therapy); anything else given as a reason is a work-up.
SURVEILLANCE_REASONS = frozenset(
    {
        BREAST_CANCER,
        HISTORY,
        REMISSION,
        SURVEILLANCE_ENCOUNTER,
        COMPLETED_TREATMENT,
        ENDOCRINE,
        SURGERY,
        "receptor-status-codes",
    }
)
DIAGNOSTIC_REASONS = frozenset(
    {*SYMPTOMS, *LABS, METASTATIC, DISTANT_METASTASIS, RECURRENCE, OTHER_CANCER, DCIS}
)


def _order_reason(
    order: OrderFact, facts: PatientFacts, knowledge: Knowledge
) -> tuple[list[Exclusion], bool]:
    """The order's own reason: a symptom or finding means a diagnostic work-up.

    A reason counts for surveillance only when we can read it as such (a coded breast cancer
    history or follow-up, or text such as "routine follow-up"); a reason we cannot read (an
    unmapped code, a free-text finding, a reference to a record we do not have) silences the
    warning: the clinician has told us why, and we cannot tell that it is routine.
    """
    reasons: list[tuple[frozenset[str], str]] = [(r.concepts, r.text) for r in order.reasons]
    by_id = {c.id: c for c in facts.conditions}
    for ref in order.reason_references:
        target = by_id.get(ref.split("/")[-1]) if ref.startswith("Condition/") else None
        if target is None:
            reasons.append((frozenset(), ""))
        elif counts(target):
            reasons.append((target.concepts, target.label))
    found: list[Exclusion] = []
    surveillance = False
    for concepts, text in reasons:
        # Denied parts say nothing ("Surveillance, no pain, no cough"; "abnormal? No").
        cleared = knowledge.words.without_denials(text) if text else text
        named = bool(text) and bool(knowledge.words.concepts("order", (text,)))
        diagnostic = concepts & DIAGNOSTIC_REASONS
        if diagnostic:
            found.append(Exclusion(f"order-reason:{sorted(diagnostic)[0]}"))
        elif concepts & SURVEILLANCE_REASONS:
            # A surveillance code whose text names a finding ("Z85.3 - new rib pain", "Hx
            # breast ca, c/o RUQ discomfort"): the text says more than the code, and wins.
            if knowledge.text.names_work_up(cleared) or named:
                found.append(Exclusion("order-reason:not-surveillance"))
            else:
                surveillance = True
        elif knowledge.text.reason(cleared) == "surveillance" and not named:
            surveillance = True
        else:
            found.append(Exclusion("order-reason:not-surveillance"))
    return found, surveillance


def _targets(symptoms: Iterable[Exclusion], knowledge: Knowledge) -> tuple[set[str], list[str]]:
    studies: set[str] = set()
    concepts: list[str] = []
    for s in symptoms:
        concept = s.code.split(":", 1)[1]
        target = knowledge.guideline.symptom_targets.get(concept)
        if target is not None:
            studies |= set(target.studies)
            concepts.append(concept)
    return studies, concepts


def judge_order(
    order: OrderFact, patient: Assessment, facts: PatientFacts, knowledge: Knowledge
) -> Finding:
    """The verdict for one order, given the patient's assessment."""
    study = classify_order(order, knowledge)
    if study is None:
        return Finding(order, None, "silent", "not-a-recognised-study")
    if study == TUMOR_MARKER:
        if (
            patient.survivor
            and not patient.exclusions
            and not _order_reason(order, facts, knowledge)[0]
        ):
            return Finding(
                order,
                study,
                "info-tumor-marker",
                "tumor-marker-surveillance",
                patient.evidence,
                patient.long_standing,
            )
        return Finding(order, study, "silent", patient.not_applicable or _first(patient))
    info = knowledge.guideline.studies.get(study)
    if info is None or not info.warn:
        return Finding(order, study, "silent", "not-a-variant-10-study")
    if not patient.survivor:
        return Finding(order, study, "silent", patient.not_applicable)
    early = judge_early_stage(order, study, patient, facts, knowledge)
    if early is not None:  # a new stage I-IIA cancer being staged (ACR Variants 1-2)
        return early
    reasons, surveillance = _order_reason(order, facts, knowledge)
    if reasons:
        return Finding(order, study, "silent", reasons[0].code, cause=reasons[0].evidence)
    if knowledge.text.names_work_up(order.text):
        # "PET/CT RESTAGING", "CT CHEST R/O METASTASES": the order says it is a work-up.
        return Finding(order, study, "silent", "order-text:work-up")
    named = knowledge.words.concepts("order", (order.text, *order.words))
    if named:
        # Its note, "reason for exam" answers or instructions name a symptom, a finding or an
        # indication that is not surveillance ("r/o mets", "fall", "pre-op planning").
        kind, _, rid = order.reference.partition("/")
        own = Evidence(kind, rid, order.text, None, named[0].concept, f"words '{named[0].phrase}'")
        return Finding(order, study, "silent", f"order-text:{named[0].concept}", cause=own)
    if order.priority in URGENT:
        return Finding(order, study, "silent", f"order-priority:{order.priority}")
    hard = [e for e in patient.exclusions if e not in patient.symptoms]
    if hard:
        return Finding(order, study, "silent", hard[0].code, cause=hard[0].evidence)
    if patient.symptoms:
        targeted, _ = _targets(patient.symptoms, knowledge)
        labs_only = all(s.code.startswith("abnormal-lab:") for s in patient.symptoms)
        if study in targeted or labs_only or not targeted:
            first = patient.symptoms[0]
            return Finding(order, study, "silent", first.code, cause=first.evidence)
        return Finding(
            order,
            study,
            "info-targeted",
            patient.symptoms[0].code,
            patient.evidence,
            symptoms=patient.symptoms,
            targeted=tuple(sorted(targeted)),
        )
    return Finding(
        order,
        study,
        "warn",
        "variant-10",
        patient.evidence,
        patient.long_standing,
        surveillance_reason=surveillance,
    )


def _first(patient: Assessment) -> str:
    return patient.exclusions[0].code if patient.exclusions else "not-in-scenario"


# What another draft order's words may say to silence this one: a symptom or a finding (its
# own indication, "trauma" on a head CT, says nothing of this order).
SIBLING_WORDS = frozenset({*SYMPTOMS, METASTATIC, RECURRENCE})


def sibling_reason(
    order: OrderFact, drafts: Sequence[OrderFact], knowledge: Knowledge, staging: bool = False
) -> str | None:
    """Another draft order of the same call given a symptom or finding as its reason (a chest
    X-ray "for chronic cough" beside the CT chest): the work-up is under way, so the CT is not
    routine surveillance either. Only reasons that name a symptom or finding count; a reason
    that is merely unreadable on another order does not silence this one. ``staging``: this
    order stages a new cancer (Variant 2), so another order's "staging" is no finding."""
    for other in drafts:
        if other.reference == order.reference:
            continue
        for reason in other.reasons:
            diagnostic = reason.concepts & DIAGNOSTIC_REASONS
            if diagnostic:
                return f"sibling-order-reason:{sorted(diagnostic)[0]}"
            if staging and knowledge.stage_text.plain_staging(reason.text):
                continue
            if knowledge.text.mentions_finding(reason.text):
                return "sibling-order-reason:finding"
            said = [
                h
                for h in knowledge.words.concepts("order", (reason.text,))
                if h.concept in SIBLING_WORDS
            ]
            if said:
                return f"sibling-order-reason:{said[0].concept}"
        named = [
            h for h in knowledge.words.concepts("order", other.words) if h.concept in SIBLING_WORDS
        ]
        if named:
            return f"sibling-order-text:{named[0].concept}"
    return None


def needs_record(order: OrderFact, knowledge: Knowledge) -> bool:
    """Could this order get a card? Only then is the patient's record worth reading."""
    study = classify_order(order, knowledge)
    if study == TUMOR_MARKER:
        return True
    info = knowledge.guideline.studies.get(study) if study else None
    return bool(info and info.warn)


def judge_without_record(orders: Sequence[OrderFact], knowledge: Knowledge) -> list[Finding]:
    """Verdicts when no order can get a card (mammography, non-imaging orders, ...)."""
    findings = []
    for order in orders:
        study = classify_order(order, knowledge)
        reason = "not-a-recognised-study" if study is None else "not-a-variant-10-study"
        findings.append(Finding(order, study, "silent", reason))
    return findings
