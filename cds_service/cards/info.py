"""The information cards: imaging targeted to a symptom on record (ACR Variant 11) and tumour
markers in surveillance (ASCO, Choosing Wisely)."""

from __future__ import annotations

from collections.abc import Iterable

from ..mappings import Knowledge
from ..rules import Exclusion, Finding
from .models import Card, Source, new_uuid
from .presentation import Presentation, guidance_url
from .sources import TOPIC, absolute_link, acr_source, guideline_links, handout_link
from .text import EVIDENCE_SHOWN, fit_summary, markdown_link, plain, records
from .warning import study_name

SYMPTOMATIC_VARIANT = 11  # the ACR topic's symptomatic branch


def _symptom_lines(symptoms: Iterable[Exclusion], knowledge: Knowledge) -> list[str]:
    lines = []
    for symptom in symptoms:
        concept = symptom.code.split(":", 1)[1]
        target = knowledge.guideline.symptom_targets.get(concept)
        label = target.label if target else concept.replace("-", " ")
        record = f" ({records([symptom.evidence])})" if symptom.evidence else ""
        advice = f" {target.advice}" if target else ""
        lines.append(f"- **{label}**{record}.{advice}")
    return lines


def targeted_card(finding: Finding, knowledge: Knowledge, where: Presentation) -> Card:
    """A symptom on record: the imaging aimed at it, rather than the survey ordered."""
    words = knowledge.wording.card
    name = study_name(finding, knowledge)
    first = finding.symptoms[0].code.split(":", 1)[1] if finding.symptoms else ""
    target = knowledge.guideline.symptom_targets.get(first)
    label = target.label if target else words.targeted_unnamed_symptom
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
        markdown_link(words.targeted_more_link, page),
    ]
    return Card(
        uuid=new_uuid(),
        summary=fit_summary(summary),
        indicator="info",
        detail="\n".join(lines),
        source=acr_source(knowledge, variant=SYMPTOMATIC_VARIANT),
        links=[
            absolute_link(words.targeted_more_link, page),
            *guideline_links(knowledge, ("acr-criteria",)),
            handout_link(knowledge, where),
        ],
    )


def tumor_marker_card(finding: Finding, knowledge: Knowledge, where: Presentation) -> Card:
    """A tumour marker ordered for an asymptomatic survivor: not recommended, not a warning."""
    words = knowledge.wording.card
    order = finding.order.text or words.tumor_marker_unnamed
    page = guidance_url(where, "tumour-markers")
    patient = records(finding.evidence, words.more_records, EVIDENCE_SHOWN)
    lines = [
        words.tumor_marker_lead.format(order=plain(order)),
        "",
        words.tumor_marker_why,
        "",
        words.tumor_marker_this_patient.format(records=patient),
        "",
        markdown_link(words.tumor_marker_more_link, page),
    ]
    return Card(
        uuid=new_uuid(),
        summary=fit_summary(words.tumor_marker_summary.format(order=order)),
        indicator="info",
        detail="\n".join(lines),
        source=Source(
            label=words.tumor_marker_source_label,
            url=knowledge.guideline.link("asco-follow-up").url,
            topic=TOPIC,
        ),
        links=[
            absolute_link(words.tumor_marker_more_link, page),
            *guideline_links(knowledge, ("asco-follow-up", "choosing-wisely")),
            handout_link(knowledge, where),
        ],
    )
