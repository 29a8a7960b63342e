"""``wording.json``: what clinicians and patients read (card phrases, guidance pages, handout),
and its loader, which checks each phrase's placeholders."""

from __future__ import annotations

import string
from pathlib import Path

from pydantic import Field

from ..errors import MappingError
from .guideline import GuidelineFile
from .schema import _read_model, _Strict


class CodingDef(_Strict):
    system: str
    code: str
    display: str


class OrderWording(_Strict):
    """A draft order the cards offer: its codes and the words it is shown with."""

    coding: tuple[CodingDef, ...] = Field(min_length=1)
    text: str


class CardWording(_Strict):
    """The cards' words, markdown included; ``{name}`` placeholders are filled in by
    ``cds_service/cards/``."""

    warning_summary: str
    headline: str
    radiation: str
    radiation_with_dose: str
    why: str
    why_short: dict[str, str]  # study -> the card's one line of why
    instead: str
    this_patient: str
    more_records: str
    order_reason: str
    order_reason_coded: str
    long_standing: str
    mammogram_due: str
    no_id: str  # a draft order without an id: no delete action can name it
    changes: str
    more_link: str
    source_label: str
    remove_label: str
    mammogram_label: str
    remove_action: str
    mammogram_action: str
    mammogram_order: OrderWording
    targeted_summary: str
    targeted_summary_untargeted: str
    targeted_unnamed_symptom: str
    targeted_intro: str
    targeted_more_link: str
    tumor_marker_summary: str
    tumor_marker_unnamed: str
    tumor_marker_lead: str
    tumor_marker_why: str
    tumor_marker_this_patient: str
    tumor_marker_source_label: str
    tumor_marker_more_link: str
    handout_link: str
    rating_action: str  # the description of the rating written onto the order


class EarlyStageWording(_Strict):
    """The Variant 1-2 warning card's words (a new clinical stage I-IIA breast cancer)."""

    warning_summary: str
    headline: str
    why: str
    instead: str
    this_patient: str
    changes: str
    why_source: str  # where the why's figures come from (not shown)


class GuidancePage(_Strict):
    title: str
    lead: str
    rationale: tuple[str, ...]
    counselling_heading: str = ""


class HandoutSection(_Strict):
    heading: str
    paragraphs: tuple[str, ...] = ()
    bullets: tuple[str, ...] = ()
    urgent: bool = False  # shown as a red box (what to report the same day)


class Handout(_Strict):
    title: str
    lead: str
    sections: tuple[HandoutSection, ...] = Field(min_length=1)
    footer: str


GUIDANCE_KINDS = ("surveillance-imaging", "targeted-imaging", "tumour-markers")


class WordingFile(_Strict):
    """``wording.json``: what clinicians and patients read (cards, guidance pages, handout)."""

    card: CardWording
    early_stage_card: EarlyStageWording
    pages: dict[str, GuidancePage]
    handout: Handout
    description: str | None = None


# The placeholders each card phrase may use (cds_service/cards/ fills them in).
_PLACEHOLDERS = {
    "warning_summary": {"study"},
    "headline": {"study", "rating", "radiation"},
    "radiation": {"level"},
    "radiation_with_dose": {"level", "dose"},
    "why": {"why"},
    "this_patient": {"records"},
    "more_records": {"count"},
    "order_reason": {"reason"},
    "long_standing": {"records"},
    "source_label": {"variant"},
    "remove_label": {"study"},
    "remove_action": {"order"},
    "targeted_summary": {"label", "targeted", "study"},
    "targeted_summary_untargeted": {"label", "study"},
    "tumor_marker_summary": {"order"},
    "tumor_marker_lead": {"order"},
    "tumor_marker_this_patient": {"records"},
    "rating_action": {"rating", "order"},
}
_EARLY_STAGE_PLACEHOLDERS = {
    "warning_summary": {"study"},
    "headline": {"study", "rating", "radiation"},
    "this_patient": {"records", "stage", "date"},
}


def _load_wording(path: Path, guideline: GuidelineFile) -> WordingFile:
    doc = _read_model(path, WordingFile)
    for section, phrases, allowed in (
        ("card", doc.card, _PLACEHOLDERS),
        ("early_stage_card", doc.early_stage_card, _EARLY_STAGE_PLACEHOLDERS),
    ):
        for name, text in phrases:
            if not isinstance(text, str):
                continue
            used = {f for _, f, _, _ in string.Formatter().parse(text) if f is not None}
            unknown = used - allowed.get(name, set())
            if unknown:
                raise MappingError(
                    str(path), f"{section}.{name}", f"unknown placeholders {sorted(unknown)}"
                )
    warned = {k for k, v in guideline.studies.items() if v.warn}
    missing = sorted(warned - set(doc.card.why_short))
    if missing:
        raise MappingError(str(path), "card.why_short", f"no line for the studies {missing}")
    unknown_studies = sorted(set(doc.card.why_short) - set(guideline.studies))
    if unknown_studies:
        raise MappingError(str(path), "card.why_short", f"unknown studies {unknown_studies}")
    if set(doc.pages) != set(GUIDANCE_KINDS):
        raise MappingError(str(path), "pages", f"expected exactly {list(GUIDANCE_KINDS)}")
    return doc
