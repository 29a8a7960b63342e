"""The shape of the code, order-text, override and words files (pydantic models), and reading
one mapping file as JSON."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from ..errors import MappingError, first_problem

Verification = Literal["V", "V2", "P", "U"]
USABLE_STRICT = frozenset({"V", "V2"})
USABLE = frozenset({"V", "V2", "P"})


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class CodeEntry(_Strict):
    system: str
    code: str = Field(min_length=1)
    display: str = Field(min_length=1)
    source: str = Field(min_length=1)
    verified: Verification
    match: Literal["exact", "prefix"] = "exact"
    # A fallback prefix applies only to codes that no other entry maps (an ICD chapter).
    fallback: bool = False
    note: str | None = None

    @field_validator("system")
    @classmethod
    def _absolute_uri(cls, value: str) -> str:
        if not re.match(r"^(https?://\S+|urn:(oid|uuid):\S+)$", value):
            raise ValueError("must be an absolute URI")
        return value

    @field_validator("code")
    @classmethod
    def _no_blank(cls, value: str) -> str:
        if value != value.strip():
            raise ValueError("must not start or end with white space")
        return value


class ConceptDef(_Strict):
    description: str = Field(min_length=1)
    strict: bool = False
    also: tuple[str, ...] = ()
    codes: tuple[CodeEntry, ...] = Field(min_length=1)


class ConceptFile(_Strict):
    group: str = Field(min_length=1)
    description: str = Field(min_length=1)
    concepts: dict[str, ConceptDef] = Field(min_length=1)


class SystemDef(_Strict):
    uri: str
    name: str
    aliases: tuple[str, ...] = ()
    normalise: Literal["icd10", "upper", "none"] = "none"
    source: str = Field(min_length=1)


class CodeSystemsFile(_Strict):
    systems: tuple[SystemDef, ...] = Field(min_length=1)
    description: str | None = None


class Synonym(_Strict):
    from_: str = Field(alias="from")
    to: str
    note: str | None = None


class StudyPattern(_Strict):
    study: str
    include: tuple[str, ...] = Field(min_length=1)
    exclude: tuple[str, ...] = ()
    must_match: tuple[str, ...] = Field(min_length=1)
    must_not_match: tuple[str, ...] = ()
    note: str | None = None


class ReasonPatterns(_Strict):
    include: tuple[str, ...] = Field(min_length=1)
    must_match: tuple[str, ...] = Field(min_length=1)
    must_not_match: tuple[str, ...] = ()


class ReasonPatternsFile(_Strict):
    description: str
    surveillance: ReasonPatterns
    diagnostic: ReasonPatterns
    filler: tuple[str, ...] = ()


class OverrideConcept(_Strict):
    code: str = Field(min_length=1, pattern=r"^[a-z0-9-]+$")
    display: str = Field(min_length=1)
    definition: str = Field(min_length=1)


class OverrideCodeSystem(_Strict):
    """A FHIR CodeSystem (served at /CodeSystem/override-reason; url set at serving time)."""

    resourceType: Literal["CodeSystem"]
    id: str
    name: str
    title: str
    status: Literal["active"]
    content: Literal["complete"]
    description: str
    concept: tuple[OverrideConcept, ...] = Field(min_length=4)

    def snooze_days(self, code: str) -> int | None:
        """Snooze codes name their period: ``snooze-3-months`` → 91 days."""
        match = re.fullmatch(r"snooze-(\d+)-months?", code)
        return round(int(match.group(1)) * 365 / 12) if match else None


class ExcludingPatterns(ReasonPatterns):
    description: str | None = None
    exclude: tuple[str, ...] = ()


class StagingPatternsFile(_Strict):
    description: str
    stage_iv: ReasonPatterns
    m1: ReasonPatterns
    metastatic: ExcludingPatterns


class TextPatternsFile(_Strict):
    normalisation: str
    synonyms: tuple[Synonym, ...] = ()
    studies: tuple[StudyPattern, ...] = Field(min_length=1)
    reasons: ReasonPatternsFile
    staging: StagingPatternsFile
    description: str | None = None
    source: str | None = None


class NegationDef(_Strict):
    description: str
    window: int = Field(ge=1, le=40)
    before: tuple[str, ...] = Field(min_length=1)
    pseudo: tuple[str, ...] = ()
    after: tuple[str, ...] = ()
    after_alone: tuple[str, ...] = ()
    other_person: tuple[str, ...] = ()
    terminate: tuple[str, ...] = ()
    strong: tuple[str, ...] = ()
    pseudo_concepts: tuple[str, ...] = ()


Scope = Literal["condition", "observation", "medication", "procedure", "report", "order"]


class WordConcept(_Strict):
    scopes: tuple[Scope, ...] = Field(min_length=1)
    phrases: tuple[str, ...] = Field(min_length=1)
    unless: tuple[str, ...] = ()
    requires: tuple[str, ...] = ()
    must_match: tuple[str, ...] = Field(min_length=1)
    must_not_match: tuple[str, ...] = ()
    note: str | None = None


class InterpretationDef(_Strict):
    description: str
    abnormal: tuple[str, ...] = Field(min_length=1)


class WordsFile(_Strict):
    description: str
    negation: NegationDef
    interpretation: InterpretationDef
    word_only: dict[str, str] = {}
    concepts: dict[str, WordConcept] = Field(min_length=1)


def _fail(path: Path, exc: ValidationError) -> MappingError:
    return MappingError(str(path), *first_problem(exc))


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise MappingError(str(path), "", f"cannot read JSON: {exc}") from exc


_Model = TypeVar("_Model", bound=BaseModel)


def _read_model(path: Path, model: type[_Model]) -> _Model:
    """A mapping file that must exist, read and validated against its model."""
    if not path.is_file():
        raise MappingError(str(path), "", "file is missing")
    try:
        return model.model_validate(_read_json(path))
    except ValidationError as exc:
        raise _fail(path, exc) from exc
