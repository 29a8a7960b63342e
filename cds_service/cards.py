"""Findings → CDS Hooks cards. Pure: the wording comes from ``mappings/acr-variant-10.json``."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from datetime import date
from typing import Any

from .mappings import Knowledge, StudyInfo
from .rules import Evidence, Exclusion, Finding

SOURCE_LABEL = "ACR Appropriateness Criteria: Imaging of Invasive Breast Cancer"
TOPIC = {"system": "http://snomed.info/sct", "code": "363679005", "display": "Imaging (procedure)"}
SUMMARY_MAX = 139  # the spec says "<140 characters"; Inferno's CRD kit rejects 140


def _fit(text: str) -> str:
    return text if len(text) <= SUMMARY_MAX else text[: SUMMARY_MAX - 1].rstrip() + "…"


def _when(value: date | None) -> str:
    return f", {value.isoformat()}" if value else ""


def _records(items: Iterable[Evidence]) -> str:
    seen = []
    for item in items:
        line = f"{item.label or item.concept} ({item.kind}{_when(item.when)})"
        if line not in seen:
            seen.append(line)
    return "; ".join(seen)


def _study_name(info: StudyInfo | None, fallback: str) -> str:
    if info is None:
        return fallback
    return info.short or info.name


def _source(knowledge: Knowledge) -> dict[str, Any]:
    g = knowledge.guideline.guideline
    return {"label": f"{SOURCE_LABEL} (Variant {g.variant})", "url": g.url, "topic": TOPIC}


def _links(knowledge: Knowledge) -> list[dict[str, Any]]:
    return [
        {"label": link.label, "url": link.url, "type": "absolute"}
        for link in knowledge.guideline.links
    ]


def _radiation(info: StudyInfo) -> str:
    if info.rrl and info.dose:
        return f"Relative radiation level {info.rrl} ({info.dose})."
    if info.rrl:
        return f"Relative radiation level {info.rrl}."
    return ""


def warning_card(finding: Finding, knowledge: Knowledge) -> dict[str, Any]:
    g = knowledge.guideline
    info = g.studies[finding.study or ""]
    name = _study_name(info, finding.order.text)
    summary = _fit(
        f"{name}: Usually Not Appropriate for routine surveillance after breast cancer (ACR)"
    )
    lines = [
        f"**{info.name}** ordered as *{finding.order.text or name}*.",
        "",
        f"**ACR rating: {info.rating}** for surveillance of invasive breast cancer, evaluation for "
        f"distant metastatic disease (ACR Variant {g.guideline.variant}, any stage at diagnosis). "
        f"{_radiation(info)}",
        "",
        f"**Why:** {info.why} In a survivor who feels well, routine systemic imaging has a low "
        "yield, finds incidental findings that lead to a cascade of further tests and biopsies, "
        "and has not improved survival.",
        "",
        f"**Instead:** {g.alternative}",
        "",
        f"**Why this patient:** {_records(finding.evidence)}. No new or persistent symptoms, "
        "abnormal laboratory values, metastatic disease or recurrence were found in the record.",
    ]
    if finding.surveillance_reason:
        lines += ["", "The order's own reason is routine follow-up."]
    if finding.long_standing:
        lines += [
            "",
            "**Long-standing entries** (not new, so they did not change this advice; "
            f"please judge): {_records(finding.long_standing)}.",
        ]
    lines += [
        "",
        "If the patient has **new or persistent symptoms** (bone pain, cough, weight loss, "
        "jaundice, headache, neurological signs) or an abnormal laboratory value, this is a "
        "diagnostic work-up (ACR Variant 11) and targeted imaging is appropriate: record the "
        "symptom as the order's reason.",
    ]
    return {
        "uuid": str(uuid.uuid4()),
        "summary": summary,
        "indicator": "warning",
        "detail": "\n".join(lines),
        "source": _source(knowledge),
        "links": _links(knowledge),
    }


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


def targeted_card(finding: Finding, knowledge: Knowledge) -> dict[str, Any]:
    g = knowledge.guideline
    name = _study_name(g.studies.get(finding.study or ""), finding.order.text)
    first = finding.symptoms[0].code.split(":", 1)[1] if finding.symptoms else ""
    target = g.symptom_targets.get(first)
    label = target.label if target else "A symptom"
    if target and target.targeted:
        summary = f"{label} on record: {target.targeted} is the targeted study, rather than {name}"
    else:
        summary = f"{label} on record: consider imaging targeted to the symptom, not {name}"
    lines = [
        "The record shows symptoms that call for a **diagnostic work-up** (ACR Variant 11), not "
        "routine surveillance, so no appropriateness warning applies. Imaging targeted to the "
        "symptom usually answers the question with less radiation:",
        "",
        *_symptom_lines(finding.symptoms, knowledge),
    ]
    return {
        "uuid": str(uuid.uuid4()),
        "summary": _fit(summary),
        "indicator": "info",
        "detail": "\n".join(lines),
        "source": _source(knowledge),
        "links": _links(knowledge)[:1],
    }


def tumor_marker_card(finding: Finding, knowledge: Knowledge) -> dict[str, Any]:
    info = knowledge.guideline.tumor_markers
    summary = _fit(
        f"{finding.order.text or 'Tumour marker'}: not recommended for surveillance of "
        "asymptomatic breast cancer survivors"
    )
    lines = [
        f"**{finding.order.text or 'Tumour marker test'}** in a survivor of invasive breast "
        "cancer with no symptoms or abnormal findings on record.",
        "",
        info.why,
        "",
        f"**Why this patient:** {_records(finding.evidence)}.",
        "",
        f"*Sources: {info.source}*",
    ]
    return {
        "uuid": str(uuid.uuid4()),
        "summary": summary,
        "indicator": "info",
        "detail": "\n".join(lines),
        "source": {
            "label": "ASCO breast cancer follow-up guideline; Choosing Wisely",
            "url": knowledge.guideline.links[1].url
            if len(knowledge.guideline.links) > 1
            else _source(knowledge)["url"],
            "topic": TOPIC,
        },
        "links": _links(knowledge)[1:],
    }


EXTENSION_KEY = "breast-surveillance-cds"
_BUILDERS = {
    "warn": warning_card,
    "info-targeted": targeted_card,
    "info-tumor-marker": tumor_marker_card,
}


def build_cards(findings: Iterable[Finding], knowledge: Knowledge) -> list[dict[str, Any]]:
    """One card per finding that has something to say; silent findings give none.

    Each card names its order in ``extension`` (CDS Hooks has no card-to-order link), so a
    client can tie the card to the order and replace it when the order changes.
    """
    cards = []
    for finding in findings:
        builder = _BUILDERS.get(finding.verdict)
        if builder is None:
            continue
        card = builder(finding, knowledge)
        card["extension"] = {
            EXTENSION_KEY: {
                "order": finding.order.reference,
                "study": finding.study,
                "verdict": finding.verdict,
                "rule": finding.reason,
            }
        }
        cards.append(card)
    return cards
