"""The Variant 1-2 warning card: systemic staging (bone scan, CT, FDG-PET/CT) of a new clinical
stage I-IIA breast cancer, in at most WORD_BUDGET words (``mappings/wording.json``
``early_stage_card``; the rating and radiation level from ``mappings/acr-topic.json``)."""

from __future__ import annotations

from ..mappings import Knowledge
from ..rules import Finding
from ..rules.early_stage import VARIANT
from .models import Card, Link, new_uuid
from .presentation import Presentation
from .sources import absolute_link, acr_source, guideline_links, override_reasons
from .text import fit_summary, fit_words, plain, records, visible_words
from .warning import WORD_BUDGET, order_suggestions, radiation_line, study_name

_SHRINK = (0, 8, 4)  # words per record label until the detail fits WORD_BUDGET (0: whole)


def _detail(finding: Finding, knowledge: Knowledge, name: str, label_words: int) -> str:
    words = knowledge.wording.early_stage_card
    card = knowledge.wording.card
    rating = knowledge.topic.rating(VARIANT, finding.study or "")
    category = rating.category if rating else ""
    radiation = radiation_line(rating.rrl, rating.dose, card) if rating else ""
    stage = next((e for e in finding.evidence if e.concept == "early-stage"), None)
    cancer = [e for e in finding.evidence if e.concept != "early-stage"]
    patient = records(cancer, card.more_records, 1, label_words)
    stage_words = plain(fit_words(stage.label, label_words or 8)) if stage else ""
    when = stage.when.isoformat() if stage and stage.when else "date not given"
    lines = [
        words.headline.format(study=name, rating=category, radiation=radiation).rstrip(),
        "",
        words.why,
        "",
        words.instead,
        "",
        words.this_patient.format(records=patient, stage=stage_words, date=when),
    ]
    if "/" not in finding.order.reference:  # no id: no suggestion can name the order
        lines += ["", card.no_id]
    lines += ["", words.changes]
    return "\n".join(lines)


def _statements(knowledge: Knowledge) -> list[Link]:
    """The guideline statements on staging early breast cancer (ASCO Choosing Wisely 2012)."""
    return [
        absolute_link(g.body, g.sources[0])
        for g in knowledge.topic.doc.guidelines
        if g.applies_to == "Variants 1-2"
    ]


def early_stage_card(finding: Finding, knowledge: Knowledge, where: Presentation) -> Card:
    """Variant 2 (distant staging of a new stage I-IIA cancer): the rating and radiation, why,
    what to do instead (Variant 1's breast imaging), the stage on record and what would change
    the answer; the same remove-order suggestion, override reasons and feedback as Variant 10,
    no mammogram suggestion (breast imaging is part of this cancer's staging)."""
    name = study_name(finding, knowledge)
    for label_words in _SHRINK:
        detail = _detail(finding, knowledge, name, label_words)
        if visible_words(detail) <= WORD_BUDGET:
            break
    words = knowledge.wording.card
    suggestions = order_suggestions(finding, where, words, name) if where.suggestions else []
    return Card(
        uuid=new_uuid(),
        summary=fit_summary(knowledge.wording.early_stage_card.warning_summary.format(study=name)),
        indicator="warning",
        detail=detail,
        source=acr_source(knowledge, VARIANT),
        links=[*guideline_links(knowledge, ("acr-criteria",)), *_statements(knowledge)],
        override_reasons=list(override_reasons(knowledge, where)),
        suggestions=suggestions,
        selection_behavior="at-most-one" if suggestions else None,
    )
