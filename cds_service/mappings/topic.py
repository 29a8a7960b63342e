"""``acr-topic.json``: the ACR topic (Imaging of Invasive Breast Cancer) as variants, the patient
state each describes and, for a variant whose ratings are confirmed, its procedure ratings and
radiation levels; its loader enforces that only confirmed ratings can drive a card."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from pydantic import Field

from ..errors import MappingError
from .schema import ConceptDef, _read_model, _Strict

CATEGORIES = ("Usually Appropriate", "May Be Appropriate", "Usually Not Appropriate")


class Topic(_Strict):
    title: str
    topic_id: int
    citation: str
    narrative_url: str
    appendix_url: str
    bibliographic_record: str
    supersedes: str
    source: str


class Procedure(_Strict):
    acr_name: str
    study_keys: tuple[str, ...] = ()
    rrl: str | None = None
    dose: str | None = None
    rrl_source: str = Field(min_length=1)
    note: str | None = None


class Rating(_Strict):
    procedure: str
    acr_name: str
    category: str
    rrl: str | None = None
    source: str = Field(min_length=1)


class ExternalRatings(_Strict):
    """A variant whose ratings live in another mapping file (Variant 10: acr-variant-10.json)."""

    see: str
    path: str
    note: str


class NotRated(_Strict):
    study_keys: tuple[str, ...]
    note: str


class Variant(_Strict):
    number: int
    title: str
    title_source: str
    patient_state: dict[str, str]
    drives_cards: bool
    card_kind: str | None  # None: listed only, never drives a card
    role: str | None = None
    warn_study_keys: tuple[str, ...] = ()
    not_rated_here: NotRated | None = None
    ratings_confirmed: bool
    # Confirmed rows; a file reference (Variant 10); or why there are none (unconfirmed).
    ratings: tuple[Rating, ...] | ExternalRatings | str


class Guideline(_Strict):
    id: str
    body: str
    statement: str
    applies_to: str
    sources: tuple[str, ...] = Field(min_length=1)
    note: str | None = None


class TopicFile(_Strict):
    description: str
    topic: Topic
    rrl_scale: dict[str, str]
    categories: tuple[str, ...]
    procedures: dict[str, Procedure]
    variants: tuple[Variant, ...] = Field(min_length=1)
    guidelines: tuple[Guideline, ...] = ()


@dataclass(frozen=True)
class StudyRating:
    """One ordered study's confirmed rating in one variant."""

    variant: int
    category: str
    rrl: str | None  # None: unconfirmed, no radiation line
    dose: str | None
    acr_name: str


@dataclass(frozen=True)
class AcrTopic:
    doc: TopicFile
    # (variant, study key) -> its confirmed rating; only variants with confirmed ratings.
    ratings: Mapping[tuple[int, str], StudyRating]

    def warn_studies(self, variant: int) -> frozenset[str]:
        """The studies a variant's warning covers (empty unless its ratings are confirmed)."""
        for v in self.doc.variants:
            if v.number == variant and v.drives_cards and v.ratings_confirmed:
                return frozenset(v.warn_study_keys)
        return frozenset()

    def rating(self, variant: int, study: str) -> StudyRating | None:
        return self.ratings.get((variant, study))


def _load_topic(path: Path, concepts: Mapping[str, ConceptDef]) -> AcrTopic:
    doc = _read_model(path, TopicFile)
    if set(doc.categories) != set(CATEGORIES):
        raise MappingError(str(path), "categories", f"expected {list(CATEGORIES)}")
    for key, proc in doc.procedures.items():
        unknown = sorted(set(proc.study_keys) - set(concepts))
        if unknown:
            raise MappingError(str(path), f"procedures.{key}", f"unknown studies {unknown}")
        if proc.rrl is not None and proc.rrl not in doc.rrl_scale:
            raise MappingError(str(path), f"procedures.{key}.rrl", "not on the RRL scale")
    rows: dict[tuple[int, str], list[StudyRating]] = {}
    for i, v in enumerate(doc.variants):
        where = f"variants[{i}]"
        if v.ratings_confirmed != isinstance(v.ratings, tuple):
            raise MappingError(
                str(path), where, "rating rows are data only when ratings_confirmed is true"
            )
        if v.drives_cards and not (v.ratings_confirmed or isinstance(v.ratings, ExternalRatings)):
            raise MappingError(str(path), where, "drives a card without confirmed ratings")
        if not isinstance(v.ratings, tuple):
            continue
        for j, row in enumerate(v.ratings):
            procedure = doc.procedures.get(row.procedure)
            if procedure is None or row.category not in CATEGORIES or row.rrl != procedure.rrl:
                raise MappingError(
                    str(path), f"{where}.ratings[{j}]", "unknown procedure, category or RRL"
                )
            for study in procedure.study_keys:
                rating = StudyRating(
                    v.number, row.category, procedure.rrl, procedure.dose, row.acr_name
                )
                rows.setdefault((v.number, study), []).append(rating)
    ratings = {key: _one(found) for key, found in rows.items()}
    rated = {key: r for key, r in ratings.items() if r is not None}
    for i, v in enumerate(doc.variants):
        missing = sorted(s for s in v.warn_study_keys if (v.number, s) not in rated)
        if missing:
            raise MappingError(
                str(path), f"variants[{i}]", f"warn studies without one rating {missing}"
            )
    return AcrTopic(doc, rated)


def _one(found: list[StudyRating]) -> StudyRating | None:
    """A study's rating when its rows agree on the category (breast MRI with and without
    contrast differ in Variant 1: no rating); rows whose radiation levels differ give none."""
    if len({r.category for r in found}) != 1:
        return None
    first = found[0]
    if len({(r.rrl, r.dose) for r in found}) == 1:
        return first
    return StudyRating(first.variant, first.category, None, None, first.acr_name)
