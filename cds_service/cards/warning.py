"""The Variant 10 warning card: its detail in at most WORD_BUDGET words (wording from
``mappings/wording.json``) and its remove-order and order-a-mammogram suggestions."""

from __future__ import annotations

from typing import Any

from ..mappings import CardWording, Knowledge, StudyInfo
from ..rules import Finding
from .models import Action, Card, Suggestion, new_uuid, to_json
from .presentation import Presentation, guidance_url
from .sources import (
    TOPIC,
    absolute_link,
    acr_source,
    guideline_links,
    handout_link,
    override_reasons,
)
from .text import (
    EVIDENCE_SHOWN,
    fit_summary,
    fit_words,
    markdown_link,
    plain,
    records,
    visible_words,
)

WORD_BUDGET = 120  # a warning's detail, in words a reader sees (issue 18)

# How a warning's detail shrinks when its records make it long: records named per list, and
# words per record label (0: whole). The first that fits WORD_BUDGET is used.
_SHRINK = ((EVIDENCE_SHOWN, 0), (1, 0), (1, 8), (1, 4))


def study_name(finding: Finding, knowledge: Knowledge) -> str:
    """The order's study by its short name, else the order as written."""
    info = knowledge.guideline.studies.get(finding.study or "")
    if info is None:
        return finding.order.text
    return info.short or info.name


def radiation_line(rrl: str | None, dose: str | None, words: CardWording) -> str:
    """The relative radiation level, with its dose range when known ("" when not rated)."""
    if rrl and dose:
        return words.radiation_with_dose.format(level=rrl, dose=dose)
    if rrl:
        return words.radiation.format(level=rrl)
    return ""


def _mammogram_order(where: Presentation, words: CardWording) -> dict[str, Any]:
    """The draft ServiceRequest the order-a-mammogram suggestion creates."""
    order: dict[str, Any] = {
        "resourceType": "ServiceRequest",
        "status": "draft",
        "intent": "order",
        "category": [{"coding": [to_json(TOPIC)]}],
        "code": {
            "coding": [coding.model_dump() for coding in words.mammogram_order.coding],
            "text": words.mammogram_order.text,
        },
        "subject": {"reference": f"Patient/{where.patient_id}"},
    }
    if where.encounter_id:
        order["encounter"] = {"reference": f"Encounter/{where.encounter_id}"}
    return order


def order_suggestions(
    finding: Finding, where: Presentation, words: CardWording, name: str
) -> list[Suggestion]:
    order = finding.order
    removable = order.reference.count("/") == 1  # "Type/id": a delete action can name it
    remove = Action(
        type="delete",
        description=words.remove_action.format(order=order.text).strip(),
        resource_id=order.reference,
    )
    """Remove the order (when it has an id), and order a mammogram instead when one is due."""
    suggestions: list[Suggestion] = []
    if removable:
        suggestions.append(
            Suggestion(
                label=words.remove_label.format(study=name),
                uuid=new_uuid(),
                is_recommended=True,
                actions=[remove],
            )
        )
    if finding.offer_mammogram:
        create = Action(
            type="create",
            description=words.mammogram_action,
            resource=_mammogram_order(where, words),
        )
        suggestions.append(
            Suggestion(
                label=words.mammogram_label,
                uuid=new_uuid(),
                actions=[remove, create] if removable else [create],
            )
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
    patient = records(finding.evidence, words.more_records, shown, label_words)
    headline = words.headline.format(
        study=name, rating=info.rating, radiation=radiation_line(info.rrl, info.dose, words)
    )
    lines = [
        headline.rstrip(),
        "",
        words.why.format(why=words.why_short.get(study, info.why)),
        "",
        words.instead,
        "",
        words.this_patient.format(records=patient),
    ]
    if finding.surveillance_reason:
        reason = plain(fit_words(next((r.text for r in finding.order.reasons if r.text), ""), 12))
        line = words.order_reason.format(reason=reason) if reason else words.order_reason_coded
        lines += ["", line]
    if finding.long_standing:
        long_standing = records(finding.long_standing, words.more_records, shown, label_words)
        lines += ["", words.long_standing.format(records=long_standing)]
    if finding.offer_mammogram and not where.suggestions:  # else the suggestion says it
        lines += ["", words.mammogram_due]
    if "/" not in finding.order.reference:  # no id: no suggestion can name the order
        lines += ["", words.no_id]
    lines += ["", words.changes, "", markdown_link(words.more_link, page)]
    return "\n".join(lines)


def warning_card(finding: Finding, knowledge: Knowledge, where: Presentation) -> Card:
    """Variant 10, at most WORD_BUDGET words (tests/test_cards_wording.py): the rating and
    radiation, one line of why, the alternative, the records that put this patient in the
    scenario and what would change the answer; the rest is on the guidance page it links to."""
    words = knowledge.wording.card
    study = finding.study or ""
    info = knowledge.guideline.studies[study]
    name = study_name(finding, knowledge)
    page = guidance_url(where, "surveillance-imaging", study)
    for shown, label_words in _SHRINK:
        detail = _warning_detail(finding, words, info, name, page, where, shown, label_words)
        if visible_words(detail) <= WORD_BUDGET:
            break
    suggestions = order_suggestions(finding, where, words, name) if where.suggestions else []
    return Card(
        uuid=new_uuid(),
        summary=fit_summary(words.warning_summary.format(study=name)),
        indicator="warning",
        detail=detail,
        source=acr_source(knowledge),
        links=[
            absolute_link(words.more_link, page),
            *guideline_links(knowledge, ("acr-criteria", "asco-follow-up", "choosing-wisely")),
            handout_link(knowledge, where),
        ],
        override_reasons=list(override_reasons(knowledge, where)),
        suggestions=suggestions,
        selection_behavior="at-most-one" if suggestions else None,
    )
