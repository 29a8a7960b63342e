"""``acr-variant-10.json``: the guideline's ratings, symptom targets and links, and its loader."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal, get_args

from pydantic import Field, ValidationError, field_validator

from ..errors import MappingError
from .schema import _fail, _read_json, _Strict


class GuidelineRef(_Strict):
    title: str
    variant: int
    variant_text: str
    citation: str
    url: str


class StudyInfo(_Strict):
    name: str
    short: str | None = None
    rating: str
    warn: bool
    why: str
    rating_source: str
    rrl: str | None = None
    dose: str | None = None
    rrl_source: str | None = None
    note: str | None = None


class SymptomTarget(_Strict):
    label: str
    targeted: str | None = None  # a short phrase naming the targeted studies, for summaries
    studies: tuple[str, ...] = ()
    advice: str


LinkRole = Literal["acr-criteria", "asco-follow-up", "choosing-wisely"]


class LinkDef(_Strict):
    role: LinkRole  # which source it is: the cards choose their links by role
    label: str
    url: str


class TumorMarkerInfo(_Strict):
    why: str
    source: str


class GuidelineFile(_Strict):
    guideline: GuidelineRef
    studies: dict[str, StudyInfo] = Field(min_length=1)
    symptom_targets: dict[str, SymptomTarget]
    links: tuple[LinkDef, ...] = Field(min_length=1)
    alternative: str
    counselling: tuple[str, ...]
    tumor_markers: TumorMarkerInfo
    description: str | None = None

    @field_validator("links")
    @classmethod
    def _one_link_per_role(cls, links: tuple[LinkDef, ...]) -> tuple[LinkDef, ...]:
        roles = [link.role for link in links]
        if sorted(roles) != sorted(get_args(LinkRole)):
            raise ValueError(f"expected one link per role {list(get_args(LinkRole))}")
        return links

    def link(self, role: LinkRole) -> LinkDef:
        return next(link for link in self.links if link.role == role)


def _load_guideline(path: Path, concepts: Mapping[str, Any]) -> GuidelineFile:
    try:
        doc = GuidelineFile.model_validate(_read_json(path))
    except ValidationError as exc:
        raise _fail(path, exc) from exc
    for study in doc.studies:
        if study not in concepts:
            raise MappingError(str(path), f"studies.{study}", f"unknown concept {study!r}")
    for symptom, target in doc.symptom_targets.items():
        if symptom not in concepts:
            raise MappingError(str(path), f"symptom_targets.{symptom}", "unknown concept")
        for study in target.studies:
            if study not in concepts:
                raise MappingError(
                    str(path), f"symptom_targets.{symptom}.studies", f"unknown concept {study!r}"
                )
    return doc
