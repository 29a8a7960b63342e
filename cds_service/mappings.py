"""Load and validate ``mappings/*.json`` once at start-up into an immutable ``Knowledge``.

The files are the service's clinical knowledge (see ``mappings/README.md``). Validation covers
the schema of every file, one concept per code across all files (prefix families included),
references between concepts, the concepts the rules need, and the order-text matcher's own
examples. Any failure raises ``MappingError`` naming the file and the entry.
"""

from __future__ import annotations

import json
import re
import string
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, cast, get_args

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from .errors import MappingError, first_problem
from .memo import Memo
from .words import WordMatcher, expand

Verification = Literal["V", "V2", "P", "U"]
USABLE_STRICT = frozenset({"V", "V2"})
USABLE = frozenset({"V", "V2", "P"})

CODE_SYSTEMS_FILE = "code-systems.json"
TEXT_PATTERNS_FILE = "order-text-patterns.json"
GUIDELINE_FILE = "acr-variant-10.json"
OVERRIDE_FILE = "override-reasons.json"
WORDS_FILE = "words.json"
WORDING_FILE = "wording.json"


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
    pages: dict[str, GuidancePage]
    handout: Handout
    description: str | None = None


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


_PHRASE = re.compile(r"^[0-9A-Z ]+\*?$")  # each phrase once its (A|B) groups are expanded


def _fail(path: Path, exc: ValidationError) -> MappingError:
    return MappingError(str(path), *first_problem(exc))


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise MappingError(str(path), "", f"cannot read JSON: {exc}") from exc


# --------------------------------------------------------------------------------------------
# Code index


@dataclass(frozen=True)
class CodeSystems:
    """Canonical system URIs and code normalisation."""

    canonical: Mapping[str, str]
    normaliser: Mapping[str, str]

    def canon(self, system: str) -> str:
        return self.canonical.get(system, system)

    def norm_code(self, system: str, code: str) -> str:
        kind = self.normaliser.get(system, "none")
        code = code.strip()
        if kind == "icd10":
            return code.replace(".", "").upper()
        if kind == "upper":
            return code.upper()
        return code


_NOTHING: frozenset[str] = frozenset()


@dataclass(frozen=True)
class CodeMap:
    """``(system, code)`` → concept ids, with ICD-style prefix families; built once."""

    systems: CodeSystems
    exact: Mapping[tuple[str, str], frozenset[str]]
    prefixes: Mapping[str, Mapping[str, frozenset[str]]]
    concepts: Mapping[str, ConceptDef]
    fallbacks: Mapping[str, Mapping[str, frozenset[str]]] = field(default_factory=dict)
    sources: Mapping[str, str] = field(default_factory=dict)  # concept id -> file name
    # Memo of lookups: records repeat the same few codes thousands of times.
    _memo: Memo[tuple[str, str], frozenset[str]] = field(
        default_factory=lambda: Memo(200_000), repr=False, compare=False
    )

    def lookup(self, system: str | None, code: str | None) -> frozenset[str]:
        if not system or not code:
            return _NOTHING
        key = (system, code)
        found = self._memo.get(key)
        if found is None:
            found = self._memo.remember(key, self._lookup(system, code))
        return found

    def _lookup(self, system: str, code: str) -> frozenset[str]:
        canon = self.systems.canon(system)
        norm = self.systems.norm_code(canon, code)
        hit = self.exact.get((canon, norm), frozenset())
        families = self.prefixes.get(canon)
        if families:
            for end in range(len(norm), 0, -1):
                more = families.get(norm[:end])
                if more:
                    hit = hit | more
        if not hit:
            chapters = self.fallbacks.get(canon)
            if chapters:
                for end in range(len(norm), 0, -1):
                    more = chapters.get(norm[:end])
                    if more:
                        return more
        return hit

    def lookup_all(self, codings: Iterable[tuple[str | None, str | None]]) -> frozenset[str]:
        found = _NOTHING
        for system, code in codings:
            hit = self.lookup(system, code)
            if hit:
                found = found | hit if found else hit
        return found

    def codes_of(self, concept: str, systems: Iterable[str] | None = None) -> list[tuple[str, str]]:
        """The usable exact codes of a concept (for prefetch templates and documentation)."""
        wanted = set(systems) if systems is not None else None
        found: list[tuple[str, str]] = []
        # The concept's own codes and those of every concept that implies it ("also": the
        # analyte's other LOINCs, a cytotoxic drug for chemotherapy).
        for cid, defn in self.concepts.items():
            if cid != concept and concept not in _closure(self.concepts, cid):
                continue
            usable = USABLE_STRICT if defn.strict else USABLE
            found += [
                (entry.system, entry.code)
                for entry in defn.codes
                if entry.verified in usable
                and entry.match == "exact"
                and (wanted is None or entry.system in wanted)
                and (entry.system, entry.code) not in found
            ]
        return found


# --------------------------------------------------------------------------------------------
# Order-text matcher


_PUNCTUATION = re.compile(r"[/\-,;:()+&.\[\]]+")
_SPACES = re.compile(r"\s+")


def _plain(text: str) -> str:
    """Upper case, punctuation as spaces, runs of spaces as one."""
    return _SPACES.sub(" ", _PUNCTUATION.sub(" ", text.upper())).strip()


@dataclass(frozen=True)
class _CompiledStudy:
    study: str
    include: tuple[re.Pattern[str], ...]
    exclude: tuple[re.Pattern[str], ...]


@dataclass(frozen=True)
class TextMatcher:
    """Recognises a study from free order text when the only code is an EHR-local one, and
    reads free-text order reasons."""

    synonyms: tuple[tuple[re.Pattern[str], str], ...]
    studies: tuple[_CompiledStudy, ...]
    surveillance_reasons: tuple[re.Pattern[str], ...] = ()
    diagnostic_reasons: tuple[re.Pattern[str], ...] = ()
    filler: tuple[re.Pattern[str], ...] = ()
    stage_iv: tuple[re.Pattern[str], ...] = ()
    m1: tuple[re.Pattern[str], ...] = ()
    metastatic: tuple[re.Pattern[str], ...] = ()
    not_metastatic: tuple[re.Pattern[str], ...] = ()
    # Answers by (question, text): order texts repeat across calls (order-select re-fires as
    # the clinician edits), and reading one runs ~100 regular expressions. Bounded: texts come
    # from clients.
    _memo: Memo[tuple[str, str, str], Any] = field(
        default_factory=lambda: Memo(20_000), repr=False, compare=False
    )

    def distant_stage(self, text: str | None) -> bool:
        """Stage text that says stage IV or M1 ("Stage IV", "cM1")."""
        if not text or not text.strip():
            return False
        return bool(self._memo.recall(("stage", "", text), self._distant_stage, text))

    def _distant_stage(self, text: str) -> bool:
        norm = _plain(text)  # the staging patterns are matched without the order-text synonyms
        return any(p.search(norm) for p in (*self.stage_iv, *self.m1))

    def names_metastatic(self, text: str | None) -> bool:
        """A diagnosis or stage text that says the disease has spread ("Metastatic breast
        cancer", "... metastatic to bone", "Secondary malignant neoplasm of liver", "Stage
        IV"), not one that says it has not ("non-metastatic", "no evidence of metastasis")."""
        if not text or not text.strip():
            return False
        return bool(self._memo.recall(("metastatic", "", text), self._metastatic, text))

    def _metastatic(self, text: str) -> bool:
        norm = _plain(text)
        return any(p.search(norm) for p in self.metastatic) and not any(
            p.search(norm) for p in self.not_metastatic
        )

    def says_distant(self, text: str | None) -> bool:
        """A stage or diagnosis text that says distant disease: stage IV or M1, or words of
        spread ("Metastatic")."""
        return self.distant_stage(text) or self.names_metastatic(text)

    def names_work_up(self, text: str | None) -> bool:
        """An order's text or reason that says it is a work-up: a symptom or finding, or stage
        IV ("Stage IV breast cancer")."""
        return self.mentions_finding(text) or self.distant_stage(text)

    def reason(self, text: str | None) -> str | None:
        """Read a free-text order reason: "surveillance", "diagnostic" or None (no text).

        Surveillance only when the whole text is surveillance phrases and filler words (an
        allow-list); anything else, text we cannot read included, is a diagnostic work-up.
        """
        if not text or not text.strip():
            return None
        return cast("str | None", self._memo.recall(("reason", "", text), self._reason, text))

    def _reason(self, text: str) -> str:
        norm = self.normalise(text)
        if any(p.search(norm) for p in self.diagnostic_reasons):
            return "diagnostic"
        if not any(p.search(norm) for p in self.surveillance_reasons):
            return "diagnostic"
        rest = norm
        for pattern in (*self.surveillance_reasons, *self.filler):
            rest = pattern.sub(" ", rest)
        return "diagnostic" if re.search(r"[A-Z]{2,}", rest) else "surveillance"

    def mentions_finding(self, text: str | None) -> bool:
        """Does the text name a symptom, finding or work-up (the 'diagnostic' patterns)?"""
        if not text or not text.strip():
            return False
        return bool(self._memo.recall(("finding", "", text), self._names_finding, text))

    def _names_finding(self, text: str) -> bool:
        norm = self.normalise(text)
        return any(p.search(norm) for p in self.diagnostic_reasons)

    def normalise(self, text: str) -> str:
        out = _plain(text)
        for pattern, replacement in self.synonyms:
            out = pattern.sub(replacement, out)
        return _SPACES.sub(" ", out).strip()

    def contradicts(self, study: str, text: str | None) -> bool:
        """Does the order text carry one of the study's own exclusions (e.g. a CT chest code
        with the text "CT chest PE protocol")?"""
        if not text or not text.strip():
            return False
        return bool(self._memo.recall(("contradicts", study, text), self._contradicts, study, text))

    def _contradicts(self, study: str, text: str) -> bool:
        norm = self.normalise(text)
        return any(
            p.search(norm) for entry in self.studies if entry.study == study for p in entry.exclude
        )

    def match(self, text: str | None) -> str | None:
        if not text or not text.strip():
            return None
        return cast("str | None", self._memo.recall(("match", "", text), self._match, text))

    def _match(self, text: str) -> str | None:
        norm = self.normalise(text)
        for study in self.studies:
            if any(p.search(norm) for p in study.include) and not any(
                p.search(norm) for p in study.exclude
            ):
                return study.study
        return None


# --------------------------------------------------------------------------------------------
# Loading


@dataclass(frozen=True)
class Knowledge:
    """All mapping data, validated: the code index, the order-text matcher, the words that
    silence and the guideline content."""

    codes: CodeMap
    text: TextMatcher
    guideline: GuidelineFile
    override_reasons: OverrideCodeSystem
    files: tuple[str, ...]
    words: WordMatcher
    wording: WordingFile
    # Readings of repeated codes (an Observation's code: its concepts and name), remembered
    # for this knowledge (fhir._Reader); bounded, as codes come from clients.
    readings: Memo[Any, Any] = field(
        default_factory=lambda: Memo(20_000), repr=False, compare=False
    )


def _load_words(
    path: Path, concepts: Mapping[str, ConceptDef], enabling: frozenset[str]
) -> WordMatcher:
    """``words.json``: phrases per concept. Words may only silence: a concept that can make
    the service warn (``enabling``, or any ``strict`` concept) has no phrases."""
    try:
        doc = WordsFile.model_validate(_read_json(path))
    except ValidationError as exc:
        raise _fail(path, exc) from exc
    for concept_id, spec in doc.concepts.items():
        where = f"concepts.{concept_id}"
        if concept_id not in concepts and concept_id not in doc.word_only:
            raise MappingError(str(path), where, f"unknown concept {concept_id!r}")
        known = concepts.get(concept_id)
        if concept_id in enabling or (known is not None and known.strict):
            raise MappingError(
                str(path), where, "words may only silence: this concept can make the service warn"
            )
        for kind in ("phrases", "unless", "requires"):
            for phrase in getattr(spec, kind):
                if not all(_PHRASE.match(p) for p in expand(phrase)):
                    raise MappingError(
                        str(path),
                        f"{where}.{kind}",
                        f"{phrase!r}: upper-case words, digits, (A|B) groups, a final *",
                    )
    for word_only in doc.word_only:
        if word_only in concepts:
            raise MappingError(str(path), f"word_only.{word_only}", "is a concept with codes")
    matcher = WordMatcher.build(doc.model_dump())
    for concept_id, spec in doc.concepts.items():
        where = f"concepts.{concept_id}"
        for example in spec.must_match:
            if concept_id not in {h.concept for h in matcher.find(spec.scopes[0], example)}:
                raise MappingError(str(path), f"{where}.must_match", f"{example!r} not found")
        for example in spec.must_not_match:
            for scope in spec.scopes:
                if concept_id in {h.concept for h in matcher.find(scope, example)}:
                    raise MappingError(
                        str(path), f"{where}.must_not_match", f"{example!r} found ({scope})"
                    )
    return matcher


def _load_systems(path: Path) -> CodeSystems:
    try:
        doc = CodeSystemsFile.model_validate(_read_json(path))
    except ValidationError as exc:
        raise _fail(path, exc) from exc
    canonical: dict[str, str] = {}
    normaliser: dict[str, str] = {}
    for index, system in enumerate(doc.systems):
        for uri in (system.uri, *system.aliases):
            if uri in canonical:
                raise MappingError(str(path), f"systems.{index}", f"URI {uri} listed twice")
            canonical[uri] = system.uri
        normaliser[system.uri] = system.normalise
    return CodeSystems(canonical, normaliser)


try:  # decided once: RE2 matches in time linear in the text, whatever the pattern
    import re2 as _linear  # google-re2
except ImportError:  # pragma: no cover - no wheel for this platform: Python's backtracking re
    _linear = None
LINEAR_TIME = _linear is not None


def _compile(path: Path, where: str, pattern: str) -> re.Pattern[str]:
    """Order-text patterns come from data and read client text (up to the body limit): with
    Python's re, ``\\bCT\\b.*\\bCHEST\\b`` took 13.8 s on 101 KiB. They are compiled with RE2
    (linear time); a pattern RE2 cannot run (backreferences, lookaround) is a mapping error,
    so check-mappings and start-up refuse it."""
    try:
        compiled = re.compile(pattern)
    except re.error as exc:
        raise MappingError(str(path), where, f"bad regular expression {pattern!r}: {exc}") from exc
    if _linear is None:
        return compiled
    try:
        parts = _lookaheads(pattern)
        if parts is not None:  # "^(?=.*A)(?=.*B)": A and B anywhere, each searched by RE2
            return cast("re.Pattern[str]", _AllOf(pattern, [_linear.compile(p) for p in parts]))
        return cast("re.Pattern[str]", _linear.compile(pattern))
    except _linear.error as exc:
        raise MappingError(
            str(path),
            where,
            f"regular expression {pattern!r} is not linear-time (RE2 refuses it: {exc}); "
            "write it without backreferences or lookaround",
        ) from exc


class _AllOf:
    """``^(?=.*A)(?=.*B)...``, the one lookaround form mappings/ uses ("the text names A and
    B, in any order"), run as RE2 searches for A, B, ... (search only: such patterns are
    study includes and excludes)."""

    def __init__(self, pattern: str, parts: list[Any]) -> None:
        self.pattern = pattern
        self.parts = parts

    def search(self, text: str) -> Any:
        found = None
        for part in self.parts:
            found = part.search(text)
            if found is None:
                return None
        return found


def _lookaheads(pattern: str) -> list[str] | None:
    """The bodies A, B of a pattern that is exactly ``^(?=.*A)(?=.*B)...``, else None."""
    if not pattern.startswith("^(?=.*"):
        return None
    parts: list[str] = []
    i = 1
    while i < len(pattern):
        if not pattern.startswith("(?=.*", i):
            return None
        start = j = i + 5
        depth, in_class = 1, False
        while j < len(pattern) and depth:
            c = pattern[j]
            if c == "\\":
                j += 2
                continue
            if in_class:
                in_class = c != "]"
            elif c == "[":
                in_class = True
            elif c == "(":
                depth += 1
            elif c == ")":
                depth -= 1
            j += 1
        if depth:
            return None
        parts.append(pattern[start : j - 1])
        i = j
    return parts or None


def _check_examples(
    path: Path, where: str, patterns: ReasonPatterns, says: Callable[[str], bool]
) -> None:
    """A pattern group's own test cases: every must_match example is read as saying it, no
    must_not_match example is."""
    for example in patterns.must_match:
        if not says(example):
            raise MappingError(str(path), f"{where}.must_match", f"{example!r}")
    for example in patterns.must_not_match:
        if says(example):
            raise MappingError(str(path), f"{where}.must_not_match", f"{example!r}")


def _load_text(path: Path, concepts: Mapping[str, Any]) -> TextMatcher:
    try:
        doc = TextPatternsFile.model_validate(_read_json(path))
    except ValidationError as exc:
        raise _fail(path, exc) from exc
    synonyms = tuple(
        (_compile(path, f"synonyms.{i}.from", s.from_), s.to) for i, s in enumerate(doc.synonyms)
    )
    studies = []
    for i, study in enumerate(doc.studies):
        if study.study not in concepts:
            raise MappingError(str(path), f"studies.{i}.study", f"unknown concept {study.study!r}")
        studies.append(
            _CompiledStudy(
                study.study,
                tuple(_compile(path, f"studies.{i}.include", p) for p in study.include),
                tuple(_compile(path, f"studies.{i}.exclude", p) for p in study.exclude),
            )
        )
    matcher = TextMatcher(
        synonyms,
        tuple(studies),
        tuple(
            _compile(path, "reasons.surveillance.include", p)
            for p in doc.reasons.surveillance.include
        ),
        tuple(
            _compile(path, "reasons.diagnostic.include", p) for p in doc.reasons.diagnostic.include
        ),
        tuple(_compile(path, "reasons.filler", p) for p in doc.reasons.filler),
        tuple(_compile(path, "staging.stage_iv", p) for p in doc.staging.stage_iv.include),
        tuple(_compile(path, "staging.m1", p) for p in doc.staging.m1.include),
        tuple(
            _compile(path, "staging.metastatic.include", p) for p in doc.staging.metastatic.include
        ),
        tuple(
            _compile(path, "staging.metastatic.exclude", p) for p in doc.staging.metastatic.exclude
        ),
    )
    _check_examples(path, "staging.metastatic", doc.staging.metastatic, matcher.names_metastatic)
    for kind in ("stage_iv", "m1"):
        _check_examples(path, f"staging.{kind}", getattr(doc.staging, kind), matcher.distant_stage)
    # The file carries its own test cases; a pattern edit that breaks one stops the service.
    for i, study in enumerate(doc.studies):
        for example in study.must_match:
            got = matcher.match(example)
            if got != study.study:
                raise MappingError(
                    str(path),
                    f"studies.{i}.must_match",
                    f"{example!r} is recognised as {got!r}, expected {study.study!r}",
                )
        for example in study.must_not_match:
            if matcher.match(example) == study.study:
                raise MappingError(
                    str(path),
                    f"studies.{i}.must_not_match",
                    f"{example!r} must not be recognised as {study.study!r}",
                )
    for kind in ("surveillance", "diagnostic"):
        patterns: ReasonPatterns = getattr(doc.reasons, kind)
        for example in patterns.must_match:
            if matcher.reason(example) != kind:
                raise MappingError(
                    str(path), f"reasons.{kind}.must_match", f"{example!r} is not read as {kind}"
                )
        for example in patterns.must_not_match:
            if matcher.reason(example) == kind:
                raise MappingError(
                    str(path), f"reasons.{kind}.must_not_match", f"{example!r} is read as {kind}"
                )
    return matcher


def _closure(concepts: Mapping[str, ConceptDef], start: str) -> frozenset[str]:
    seen = {start}
    todo = [start]
    while todo:
        for other in concepts[todo.pop()].also:
            if other not in seen:
                seen.add(other)
                todo.append(other)
    return frozenset(seen)


def load_dir(
    directory: Path | str, required: Iterable[str] = (), enabling: Iterable[str] = ()
) -> Knowledge:
    """Load every mapping file in ``directory``; raise ``MappingError`` on the first problem.

    ``required``: the concepts the rules read; ``enabling``: those that can make the service
    warn (no words may name them)."""
    root = Path(directory)
    if not root.is_dir():
        raise MappingError(str(root), "", "mappings directory not found")
    systems_path = root / CODE_SYSTEMS_FILE
    if not systems_path.is_file():
        raise MappingError(str(systems_path), "", "file is missing")
    systems = _load_systems(systems_path)

    concepts: dict[str, ConceptDef] = {}
    concept_file: dict[str, Path] = {}
    files = []
    for path in sorted(root.glob("*.json")):
        if path.name in (
            CODE_SYSTEMS_FILE,
            TEXT_PATTERNS_FILE,
            GUIDELINE_FILE,
            OVERRIDE_FILE,
            WORDS_FILE,
            WORDING_FILE,
        ):
            continue
        files.append(path.name)
        try:
            doc = ConceptFile.model_validate(_read_json(path))
        except ValidationError as exc:
            raise _fail(path, exc) from exc
        for concept_id, concept in doc.concepts.items():
            if concept_id in concepts:
                raise MappingError(
                    str(path),
                    f"concepts.{concept_id}",
                    f"concept also defined in {concept_file[concept_id].name}",
                )
            concepts[concept_id] = concept
            concept_file[concept_id] = path

    for concept_id, concept in concepts.items():
        for other in concept.also:
            if other not in concepts:
                raise MappingError(
                    str(concept_file[concept_id]),
                    f"concepts.{concept_id}.also",
                    f"unknown concept {other!r}",
                )
    missing = sorted(set(required) - set(concepts))
    if missing:
        raise MappingError(str(root), "", f"concepts the rules need are missing: {missing}")

    exact: dict[tuple[str, str], frozenset[str]] = {}
    prefixes: dict[str, dict[str, frozenset[str]]] = {}
    fallbacks: dict[str, dict[str, frozenset[str]]] = {}
    owner: dict[tuple[str, str, str], str] = {}
    for concept_id, concept in concepts.items():
        implied = _closure(concepts, concept_id)
        usable = USABLE_STRICT if concept.strict else USABLE
        for index, entry in enumerate(concept.codes):
            where = f"concepts.{concept_id}.codes.{index}"
            canon = systems.canon(entry.system)
            if canon != entry.system:
                raise MappingError(
                    str(concept_file[concept_id]),
                    where,
                    f"use the canonical system {canon}, not the alias {entry.system}",
                )
            norm = systems.norm_code(canon, entry.code)
            if entry.fallback:
                if entry.match != "prefix":
                    raise MappingError(
                        str(concept_file[concept_id]), where, "a fallback must be a prefix"
                    )
                if entry.verified in usable:
                    fallbacks.setdefault(canon, {})[norm] = implied
                continue
            key = (canon, norm, entry.match)
            if key in owner:
                raise MappingError(
                    str(concept_file[concept_id]),
                    where,
                    f"{entry.system}|{entry.code} is already mapped to concept {owner[key]!r}",
                )
            owner[key] = concept_id
            if entry.verified not in usable:
                continue  # documented, never used (see mappings/README.md)
            if entry.match == "exact":
                exact[(canon, norm)] = implied
            else:
                prefixes.setdefault(canon, {})[norm] = implied

    # A prefix family must not swallow a code that another concept owns.
    for (canon, norm, kind), concept_id in owner.items():
        families = prefixes.get(canon, {})
        for end in range(len(norm), 0, -1):
            if norm[:end] not in families or (end == len(norm) and kind == "prefix"):
                continue
            other_owner = owner[(canon, norm[:end], "prefix")]
            if other_owner != concept_id:
                raise MappingError(
                    str(concept_file[concept_id]),
                    f"concepts.{concept_id}",
                    f"{canon}|{norm} is also covered by the prefix {norm[:end]!r} "
                    f"of concept {other_owner!r} ({concept_file[other_owner].name})",
                )

    code_map = CodeMap(
        systems=systems,
        exact=exact,
        prefixes=prefixes,
        concepts=concepts,
        fallbacks=fallbacks,
        sources={cid: path.name for cid, path in concept_file.items()},
    )
    text_path = root / TEXT_PATTERNS_FILE
    if not text_path.is_file():
        raise MappingError(str(text_path), "", "file is missing")
    text = _load_text(text_path, concepts)
    guideline_path = root / GUIDELINE_FILE
    if not guideline_path.is_file():
        raise MappingError(str(guideline_path), "", "file is missing")
    guideline = _load_guideline(guideline_path, concepts)
    override_path = root / OVERRIDE_FILE
    try:
        overrides = OverrideCodeSystem.model_validate(_read_json(override_path))
    except ValidationError as exc:
        raise _fail(override_path, exc) from exc
    codes_seen = [c.code for c in overrides.concept]
    if len(codes_seen) != len(set(codes_seen)):
        raise MappingError(str(override_path), "concept", "duplicate code")
    words_path = root / WORDS_FILE
    if not words_path.is_file():
        raise MappingError(str(words_path), "", "file is missing")
    words = _load_words(words_path, concepts, frozenset(enabling))
    wording = _load_wording(root / WORDING_FILE, guideline)
    return Knowledge(code_map, text, guideline, overrides, tuple(files), words, wording)


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


def _load_wording(path: Path, guideline: GuidelineFile) -> WordingFile:
    if not path.is_file():
        raise MappingError(str(path), "", "file is missing")
    try:
        doc = WordingFile.model_validate(_read_json(path))
    except ValidationError as exc:
        raise _fail(path, exc) from exc
    for name, text in doc.card:
        if not isinstance(text, str):
            continue
        used = {field for _, field, _, _ in string.Formatter().parse(text) if field is not None}
        unknown = used - _PLACEHOLDERS.get(name, set())
        if unknown:
            raise MappingError(str(path), f"card.{name}", f"unknown placeholders {sorted(unknown)}")
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
