"""The order-text matcher: studies named in free order text, order reasons and stage words,
and loading ``order-text-patterns.json`` into it (checking the file's own examples)."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, cast

from pydantic import ValidationError

from ..errors import MappingError
from ..memo import Memo
from .patterns import _compile
from .schema import ReasonPatterns, TextPatternsFile, _fail, _read_json

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


class _Examples(Protocol):
    """A pattern group with its own test cases."""

    @property
    def must_match(self) -> tuple[str, ...]: ...

    @property
    def must_not_match(self) -> tuple[str, ...]: ...


def _check_examples(
    path: Path, where: str, patterns: _Examples, says: Callable[[str], bool]
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
    """``order-text-patterns.json``: its patterns compiled into a matcher, which must read the
    file's own examples as the file says."""
    try:
        doc = TextPatternsFile.model_validate(_read_json(path))
    except ValidationError as exc:
        raise _fail(path, exc) from exc
    matcher = _compile_matcher(path, doc, concepts)
    _check_text_examples(path, doc, matcher)
    return matcher


def _compile_matcher(path: Path, doc: TextPatternsFile, concepts: Mapping[str, Any]) -> TextMatcher:
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
    return TextMatcher(
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


def _check_text_examples(path: Path, doc: TextPatternsFile, matcher: TextMatcher) -> None:
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
