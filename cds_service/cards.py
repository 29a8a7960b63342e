"""Findings → CDS Hooks cards. Pure: the wording comes from ``mappings/acr-variant-10.json``."""

from __future__ import annotations

import os
import re
import threading
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from .mappings import CardWording, Knowledge, StudyInfo
from .memo import Memo
from .namespace import NAMESPACE
from .rules import Evidence, Exclusion, Finding

SOURCE_LABEL = "ACR Appropriateness Criteria: Imaging of Invasive Breast Cancer"
TOPIC = {"system": "http://snomed.info/sct", "code": "363679005", "display": "Imaging (procedure)"}
SUMMARY_MAX = 139  # the spec says "<140 characters"; Inferno's CRD kit rejects 140
HANDOUT_PATH = "/handouts/breast-surveillance"
GUIDANCE_PATH = "/guidance/"  # + a card kind (mappings.GUIDANCE_KINDS)
EVIDENCE_SHOWN = 2  # records named per list on a card; the rest are counted
WORD_BUDGET = 120  # a warning's detail, in words a reader sees (issue 18)
OVERRIDE_PATH = "/CodeSystem/override-reason"
PAMA = "http://fhir.org/argonaut/Extension/"
PAMA_RATING_SYSTEM = "http://fhir.org/argonaut/CodeSystem/pama-rating"
CPT = "http://www.ama-assn.org/go/cpt"
LOINC = "http://loinc.org"
SCT = "http://snomed.info/sct"


class _RandomUuids:
    """Version 4 UUIDs from ``os.urandom`` read 4 KiB at a time: one system call per 256 ids,
    not one per id (a card carries up to four). The buffer is dropped in a forked child, so
    gunicorn workers never hand out the same ids."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.buffer = b""
        self.position = 0

    def next(self) -> str:
        with self.lock:
            if self.position >= len(self.buffer):
                self.buffer, self.position = os.urandom(4096), 0
            raw = self.buffer[self.position : self.position + 16]
            self.position += 16
        return str(uuid.UUID(bytes=raw, version=4))

    def reset(self) -> None:
        # In a forked child: the parent's bytes must not be reused, and a lock a parent's
        # thread held at the fork would never be released.
        self.lock = threading.Lock()
        self.buffer, self.position = b"", 0


_UUIDS = _RandomUuids()
os.register_at_fork(after_in_child=_UUIDS.reset)


def new_uuid() -> str:
    return _UUIDS.next()


@dataclass(frozen=True)
class Presentation:
    """What the cards need from the call: where the service lives and the orders as received."""

    base_url: str  # external base URL of the service, no trailing slash
    patient_id: str
    drafts: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)  # "Type/id" -> resource
    encounter_id: str | None = None
    snooze_months: tuple[int, ...] = (3, 6, 12)  # the snooze override reasons offered
    suggestions: bool = True

    @property
    def override_system(self) -> str:
        return self.base_url + OVERRIDE_PATH


def _fit(text: str) -> str:
    return text if len(text) <= SUMMARY_MAX else text[: SUMMARY_MAX - 1].rstrip() + "…"


_MARKDOWN_SPECIAL = re.compile(r"([\\`*_\[\]<>#|~])")


def _plain(text: str) -> str:
    """Text from the record (labels, an order's reason) as literal markdown: no emphasis,
    link or raw HTML of its own (the sandbox renders raw HTML in a detail)."""
    return _MARKDOWN_SPECIAL.sub(r"\\\1", text)


def _fit_words(text: str, limit: int) -> str:
    words = text.split()
    return text if len(words) <= limit else " ".join(words[:limit]) + "…"


def _when(value: date | None) -> str:
    return f", {value.isoformat()}" if value else ""


def _records(
    items: Iterable[Evidence], more: str = "", limit: int = 0, label_words: int = 0
) -> str:
    """The records as "label (kind, date)"; past ``limit`` (0: none) the rest are counted;
    labels longer than ``label_words`` (0: any length) are cut."""
    seen: list[str] = []
    for item in items:
        label = item.label or item.concept
        if label_words:
            label = _fit_words(label, label_words)
        line = f"{_plain(label)} ({item.kind}{_when(item.when)})"
        if line not in seen:
            seen.append(line)
    if limit and len(seen) > limit:
        return "; ".join(seen[:limit]) + " " + more.format(count=len(seen) - limit)
    return "; ".join(seen)


def _study_name(info: StudyInfo | None, fallback: str) -> str:
    if info is None:
        return fallback
    return info.short or info.name


def _source(knowledge: Knowledge, variant: int | None = None) -> dict[str, Any]:
    g = knowledge.guideline.guideline
    label = f"{SOURCE_LABEL} (Variant {variant or g.variant})"
    return {"label": label, "url": g.url, "topic": TOPIC}


def _links(knowledge: Knowledge) -> list[dict[str, Any]]:
    return [
        {"label": link.label, "url": link.url, "type": "absolute"}
        for link in knowledge.guideline.links
    ]


def _radiation(info: StudyInfo, word: str) -> str:
    if info.rrl and info.dose:
        return f"{word} {info.rrl} ({info.dose})."
    if info.rrl:
        return f"{word} {info.rrl}."
    return ""


def guidance_url(where: Presentation, kind: str, anchor: str | None = None) -> str:
    """The guidance page of a card kind: a stable address with no patient data in it."""
    return where.base_url + GUIDANCE_PATH + kind + (f"#{anchor}" if anchor else "")


def _links_with_handout(
    knowledge: Knowledge, where: Presentation, page: tuple[str, str] | None = None
) -> list[dict[str, Any]]:
    """The card's links: its guidance page first (label, url), the sources, the handout."""
    handout = {
        "label": knowledge.wording.card.handout_link,
        "url": where.base_url + HANDOUT_PATH,
        "type": "absolute",
    }
    first = [{"label": page[0], "url": page[1], "type": "absolute"}] if page else []
    return [*first, *_links(knowledge), handout]


# One entry per base URL and snooze setting: a handful.
_REASONS: Memo[tuple[int, str, tuple[int, ...]], list[tuple[str, str]]] = Memo(64)


def override_reasons(knowledge: Knowledge, where: Presentation) -> list[dict[str, Any]]:
    key = (id(knowledge.override_reasons), where.override_system, where.snooze_months)
    offered = _REASONS.get(key)
    if offered is None:
        days = {round(m * 365 / 12) for m in where.snooze_months}
        reasons = knowledge.override_reasons
        offered = _REASONS.remember(
            key,
            [
                (c.code, c.display)
                for c in reasons.concept
                if reasons.snooze_days(c.code) in (None, *days)
            ],
        )
    system = where.override_system
    return [{"code": code, "system": system, "display": display} for code, display in offered]


def _mammogram_order(where: Presentation) -> dict[str, Any]:
    order: dict[str, Any] = {
        "resourceType": "ServiceRequest",
        "status": "draft",
        "intent": "order",
        "category": [{"coding": [TOPIC]}],
        "code": {
            "coding": [
                {
                    "system": CPT,
                    "code": "77067",
                    "display": "Screening mammography, bilateral (2-view study of each breast), "
                    "including computer-aided detection (CAD) when performed",
                },
                {"system": LOINC, "code": "24606-6", "display": "MG Breast Screening"},
            ],
            "text": "Mammography, bilateral (annual surveillance after breast cancer)",
        },
        "subject": {"reference": f"Patient/{where.patient_id}"},
    }
    if where.encounter_id:
        order["encounter"] = {"reference": f"Encounter/{where.encounter_id}"}
    return order


def _suggestions(
    finding: Finding, where: Presentation, words: CardWording, name: str
) -> list[dict[str, Any]]:
    order = finding.order
    suggestions: list[dict[str, Any]] = []
    if order.reference.count("/") == 1:
        suggestions.append(
            {
                "label": words.remove_label.format(study=name),
                "uuid": new_uuid(),
                "isRecommended": True,
                "actions": [
                    {
                        "type": "delete",
                        "description": words.remove_action.format(order=order.text).strip(),
                        "resourceId": order.reference,
                    }
                ],
            }
        )
    if finding.offer_mammogram:
        actions: list[dict[str, Any]] = []
        if order.reference.count("/") == 1:
            actions.append(
                {
                    "type": "delete",
                    "description": words.remove_action.format(order=order.text).strip(),
                    "resourceId": order.reference,
                }
            )
        actions.append(
            {
                "type": "create",
                "description": words.mammogram_action,
                "resource": _mammogram_order(where),
            }
        )
        suggestions.append(
            {
                "label": words.mammogram_label,
                "uuid": new_uuid(),
                "actions": actions,
            }
        )
    return suggestions


def _warning_detail(
    finding: Finding,
    words: CardWording,
    info: StudyInfo,
    name: str,
    page: str,
    where: Presentation,
    shown: int,
    label_words: int,
) -> str:
    study = finding.study or ""
    patient = _records(finding.evidence, words.more_records, shown, label_words)
    lines = [
        f"**{name}: {info.rating}** {words.rating} {_radiation(info, words.radiation)}".rstrip(),
        "",
        f"**Why:** {words.why_short.get(study, info.why)}",
        "",
        f"**Instead:** {words.instead}",
        "",
        f"**This patient:** {patient}; {words.this_patient_none}",
    ]
    if finding.surveillance_reason:
        reason = _plain(_fit_words(next((r.text for r in finding.order.reasons if r.text), ""), 12))
        line = words.order_reason.format(reason=reason) if reason else words.order_reason_coded
        lines += ["", line]
    if finding.long_standing:
        records = _records(finding.long_standing, words.more_records, shown, label_words)
        lines += ["", words.long_standing.format(records=records)]
    if finding.offer_mammogram and not where.suggestions:  # else the suggestion says it
        lines += ["", words.mammogram_due]
    if "/" not in finding.order.reference:  # no id: no suggestion can name the order
        lines += ["", words.no_id]
    lines += [
        "",
        f"**What would change this:** {words.changes}",
        "",
        f"[{words.more_link}]({page})",
    ]
    return "\n".join(lines)


# How a warning's detail shrinks when its records make it long: records named per list, and
# words per record label (0: whole). The first that fits WORD_BUDGET is used.
_SHRINK = ((EVIDENCE_SHOWN, 0), (1, 0), (1, 8), (1, 4))


def visible_words(markdown: str) -> int:
    """About the words a reader sees: link targets and markup are not words."""
    text = re.sub(r"\]\([^)]*\)", " ", markdown)
    return sum(1 for token in text.split() if re.search(r"[^\W_]|[^\x00-\x7f]", token))


def warning_card(finding: Finding, knowledge: Knowledge, where: Presentation) -> dict[str, Any]:
    """Variant 10, at most WORD_BUDGET words (tests/test_wording.py): the rating and radiation,
    one line of why, the alternative, the records that put this patient in the scenario and
    what would change the answer; the rest is on the guidance page it links to."""
    g = knowledge.guideline
    words = knowledge.wording.card
    study = finding.study or ""
    info = g.studies[study]
    name = _study_name(info, finding.order.text)
    page = guidance_url(where, "surveillance-imaging", study)
    for shown, label_words in _SHRINK:
        detail = _warning_detail(finding, words, info, name, page, where, shown, label_words)
        if visible_words(detail) <= WORD_BUDGET:
            break
    card: dict[str, Any] = {
        "uuid": new_uuid(),
        "summary": _fit(words.warning_summary.format(study=name)),
        "indicator": "warning",
        "detail": detail,
        "source": _source(knowledge),
        "links": _links_with_handout(knowledge, where, (words.more_link, page)),
        "overrideReasons": override_reasons(knowledge, where),
    }
    suggestions = _suggestions(finding, where, words, name) if where.suggestions else []
    if suggestions:
        card["suggestions"] = suggestions
        card["selectionBehavior"] = "at-most-one"
    return card


def _symptom_lines(symptoms: Iterable[Exclusion], knowledge: Knowledge) -> list[str]:
    lines = []
    for symptom in symptoms:
        concept = symptom.code.split(":", 1)[1]
        target = knowledge.guideline.symptom_targets.get(concept)
        label = target.label if target else concept.replace("-", " ")
        record = f" ({_records([symptom.evidence])})" if symptom.evidence else ""
        advice = f" {target.advice}" if target else ""
        lines.append(f"- **{label}**{record}.{advice}")
    return lines


def targeted_card(finding: Finding, knowledge: Knowledge, where: Presentation) -> dict[str, Any]:
    g = knowledge.guideline
    words = knowledge.wording.card
    name = _study_name(g.studies.get(finding.study or ""), finding.order.text)
    first = finding.symptoms[0].code.split(":", 1)[1] if finding.symptoms else ""
    target = g.symptom_targets.get(first)
    label = target.label if target else "A symptom"
    if target and target.targeted:
        summary = words.targeted_summary.format(label=label, targeted=target.targeted, study=name)
    else:
        summary = words.targeted_summary_untargeted.format(label=label, study=name)
    page = guidance_url(where, "targeted-imaging", first or None)
    lines = [
        words.targeted_intro,
        "",
        *_symptom_lines(finding.symptoms, knowledge),
        "",
        f"[{words.targeted_more_link}]({page})",
    ]
    return {
        "uuid": new_uuid(),
        "summary": _fit(summary),
        "indicator": "info",
        "detail": "\n".join(lines),
        "source": _source(knowledge, variant=11),  # the symptomatic branch
        "links": [
            {"label": words.targeted_more_link, "url": page, "type": "absolute"},
            *_links(knowledge)[:1],
            *_links_with_handout(knowledge, where)[-1:],
        ],
    }


def tumor_marker_card(
    finding: Finding, knowledge: Knowledge, where: Presentation
) -> dict[str, Any]:
    words = knowledge.wording.card
    order = finding.order.text or "Tumour marker"
    page = guidance_url(where, "tumour-markers")
    lines = [
        f"**{_plain(order)}** {words.tumor_marker_lead}",
        "",
        words.tumor_marker_why,
        "",
        f"**This patient:** {_records(finding.evidence, words.more_records, EVIDENCE_SHOWN)}.",
        "",
        f"[{words.tumor_marker_more_link}]({page})",
    ]
    links = _links_with_handout(knowledge, where, (words.tumor_marker_more_link, page))
    return {
        "uuid": new_uuid(),
        "summary": _fit(words.tumor_marker_summary.format(order=order)),
        "indicator": "info",
        "detail": "\n".join(lines),
        "source": {
            "label": "ASCO breast cancer follow-up guideline; Choosing Wisely",
            "url": knowledge.guideline.links[1].url
            if len(knowledge.guideline.links) > 1
            else _source(knowledge)["url"],
            "topic": TOPIC,
        },
        "links": [links[0], *links[2:]],  # the page, ASCO, Choosing Wisely, the handout
    }


# The rules' reasons that say the patient is outside the ACR topic altogether (no invasive
# breast cancer), and the one that says the record was read only in part.
OUTSIDE_TOPIC = frozenset({"no-invasive-breast-cancer", "dcis-only", "family-history-only"})


def rating_action(
    finding: Finding, knowledge: Knowledge, where: Presentation, consult_id: str
) -> dict[str, Any] | None:
    """The verdict written onto the order (Argonaut CDS Hooks for PAMA): an ``update`` of the
    draft ServiceRequest as received, with the rating extensions added and nothing else changed.

    Only orders the criteria speak about are rated: an imaging study the ACR topic (Imaging of
    Invasive Breast Cancer, Variant 10) rates in ``mappings/acr-variant-10.json``, for a
    patient with invasive breast cancer, whose record was read in full. Every other order
    (chest X-ray, head CT, mammography, a study whose codes disagree, a patient without
    invasive breast cancer, a partial record) gets no action: the guide forbids rating on
    insufficient evidence, and a rating there would rewrite orders the criteria never judged.
    ``not-appropriate`` (with ``auc-applied`` = the criteria) for a Variant 10 warning, also
    when a snooze, the site or the client kept its card from being shown;
    ``no-criteria-apply`` (no ``auc-applied``: none was applied) when the topic's patient has
    a reason that takes the order out of Variant 10 (a symptom, a work-up, active treatment).
    The PAMA ``qcdsm-consulted`` G-code is left out: this service is not a CMS-qualified CDS
    mechanism and the PAMA programme is rescinded.
    """
    draft = where.drafts.get(finding.order.reference)
    if draft is None or finding.study not in knowledge.guideline.studies:
        return None
    if finding.reason in OUTSIDE_TOPIC or finding.reason == "partial-record":
        return None
    judged = finding.before_policy or finding.verdict
    rating = "not-appropriate" if judged == "warn" else "no-criteria-apply"
    resource = dict(draft)  # shallow: only "extension" is replaced, nothing nested is changed
    ours = {
        PAMA + name for name in ("pama-rating", "pama-rating-consult-id", "pama-rating-auc-applied")
    }
    existing = resource.get("extension")
    kept = [
        e
        for e in (existing if isinstance(existing, list) else [])
        if isinstance(e, dict) and e.get("url") not in ours
    ]
    resource["extension"] = [
        *kept,
        {
            "url": PAMA + "pama-rating",
            "valueCodeableConcept": {"coding": [{"system": PAMA_RATING_SYSTEM, "code": rating}]},
        },
        {"url": PAMA + "pama-rating-consult-id", "valueUri": consult_id},
    ]
    if rating == "not-appropriate":
        resource["extension"].append(
            {"url": PAMA + "pama-rating-auc-applied", "valueUri": knowledge.guideline.guideline.url}
        )
    return {
        "type": "update",
        "description": f"ACR rating {rating}: {finding.order.text or finding.order.reference}",
        "resource": resource,
    }


EXTENSION_KEY = NAMESPACE  # card extension key (reverse-domain)
_BUILDERS = {
    "warn": warning_card,
    "info-targeted": targeted_card,
    "info-tumor-marker": tumor_marker_card,
}


@dataclass(frozen=True)
class Advice:
    cards: list[dict[str, Any]]
    system_actions: list[dict[str, Any]]
    consult_ids: dict[str, str]  # order reference -> consult id (audit)
    card_for: dict[str, dict[str, Any]]  # order reference -> its card


def build_advice(findings: Iterable[Finding], knowledge: Knowledge, where: Presentation) -> Advice:
    """Cards (one per finding with something to say) and rating system actions.

    Each card names its order in ``extension`` (CDS Hooks has no card-to-order link), so a
    client can tie the card to the order and replace it when the order changes.
    """
    cards = []
    actions = []
    consult_ids: dict[str, str] = {}
    card_for: dict[str, dict[str, Any]] = {}
    for finding in findings:
        consult_id = f"urn:uuid:{new_uuid()}"
        action = rating_action(finding, knowledge, where, consult_id)
        if action is not None:
            actions.append(action)
            consult_ids[finding.order.reference] = consult_id
        builder = _BUILDERS.get(finding.verdict)
        if builder is None:
            continue
        card = builder(finding, knowledge, where)
        ours = {
            "order": finding.order.reference,
            "study": finding.study,
            "verdict": finding.verdict,
            "rule": finding.reason,
        }
        if finding.order.reference in consult_ids:
            ours["consultId"] = consult_ids[finding.order.reference]
        card["extension"] = {EXTENSION_KEY: ours}
        cards.append(card)
        card_for[finding.order.reference] = card
    return Advice(cards, actions, consult_ids, card_for)
