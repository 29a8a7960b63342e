"""``stage-text.json``: how a stage is written in free text (stage groups, TNM, a bare summary,
the staging basis) and the order-reason phrases that only say "plain staging"; its loader
compiles the patterns (RE2) and checks the file's own examples."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from pydantic import Field

from ..errors import MappingError
from .patterns import _compile
from .schema import _read_model, _Strict
from .text import _check_examples, _plain


class StagePatterns(_Strict):
    description: str
    patterns: tuple[str, ...] = Field(min_length=1)
    must_match: tuple[str, ...] = Field(min_length=1)
    must_not_match: tuple[str, ...] = Field(min_length=1)


class StageTextFile(_Strict):
    description: str
    stage_group: StagePatterns
    tnm: StagePatterns
    summary: StagePatterns
    basis: StagePatterns
    plain_staging: StagePatterns
    side: StagePatterns
    breast_report: StagePatterns
    doubt: StagePatterns


# What each section's patterns must name (its named groups).
_GROUPS = {
    "stage_group": {"group", "basis", "upto"},
    "tnm": {"basis", "t", "n", "m"},
    "summary": {"group"},
    "basis": {"post", "pathological", "clinical"},
    "plain_staging": set(),
    "side": {"left", "right"},
    "breast_report": set(),
    "doubt": set(),
}
_NUMERALS = {"0": "0", "1": "I", "2": "II", "3": "III", "4": "IV"}
_BASES = {"C": "clinical", "P": "pathological", "CLINICAL": "clinical"}
_BASES |= {"PATHOLOGIC": "pathological", "PATHOLOGICAL": "pathological"}


def roman_group(group: str) -> str:
    """A stage group in Roman numerals ("1A" -> "IA", "IIA" unchanged)."""
    head = group[0]
    return _NUMERALS[head] + group[1:] if head in _NUMERALS else group


def _basis_word(word: str | None) -> str | None:
    if not word:
        return None
    return _BASES.get(word.replace(" ", ""), "post-therapy")


@dataclass(frozen=True)
class TnmText:
    basis: str | None
    t: str
    n: str
    m: str | None


@dataclass(frozen=True)
class StageText:
    """Reads stage words; every method takes raw text and normalises it first."""

    stage_group: tuple[re.Pattern[str], ...]
    tnm: tuple[re.Pattern[str], ...]
    summary: tuple[re.Pattern[str], ...]
    basis_words: tuple[re.Pattern[str], ...]
    plain: tuple[re.Pattern[str], ...]
    sides: tuple[re.Pattern[str], ...]
    breast: tuple[re.Pattern[str], ...]
    doubts: tuple[re.Pattern[str], ...]

    def groups(self, text: str) -> list[tuple[str | None, str]]:
        """(basis, stage group) of every "stage ..." phrase."""
        plain = _plain(text)
        found = []
        for p in self.stage_group:
            for m in p.finditer(plain):
                group = roman_group(m.group("group"))
                if m.group("upto"):  # a range, "stage I-II": it places nothing
                    group = f"{group}-{roman_group(m.group('upto'))}"
                found.append((_basis_word(m.group("basis")), group))
        return found

    def tnm_readings(self, text: str) -> list[TnmText]:
        plain = _plain(text)
        return [
            TnmText(_basis_word(m.group("basis")), m.group("t"), m.group("n"), m.group("m"))
            for p in self.tnm
            for m in p.finditer(plain)
        ]

    def summary_group(self, text: str) -> str | None:
        plain = _plain(text)
        for p in self.summary:
            m = p.search(plain)
            if m:
                return roman_group(m.group("group"))
        return None

    def basis(self, text: str) -> str | None:
        """The basis a staging code's words name: post-therapy, pathological or clinical."""
        plain = _plain(text)
        for p in self.basis_words:
            m = p.search(plain)
            if m:
                return next(
                    name.replace("post", "post-therapy")
                    for name in ("post", "pathological", "clinical")
                    if m.group(name)
                )
        return None

    def side(self, text: str) -> str | None:
        """ "left" or "right" when the text names that side only."""
        plain = _plain(text)
        named = {
            name
            for p in self.sides
            for m in p.finditer(plain)
            for name in ("left", "right")
            if m.group(name)
        }
        return named.pop() if len(named) == 1 else None

    def about_breast(self, text: str) -> bool:
        """Is a report about the breast (its stage words are then read)? Not when it also
        names another organ's cancer."""
        return self.names_breast(text) and not self.doubted(text)

    def names_breast(self, text: str) -> bool:
        """Does the text name the breast or a breast carcinoma ("left breast", "IDC")?"""
        plain = _plain(text)
        return any(p.search(plain) for p in self.breast)

    def doubted(self, text: str) -> bool:
        """Words that put a stage written beside them in doubt, or show it is not an invasive
        breast carcinoma's stage at presentation (a suspicion, another organ, a recurrence)."""
        plain = _plain(text)
        return any(p.search(plain) for p in self.doubts)

    def plain_staging(self, text: str) -> bool:
        """Does the text say only "staging of a new breast cancer"?"""
        return not self.without_plain_staging(text)

    def without_plain_staging(self, text: str) -> str:
        """The text with its plain-staging phrases taken out (normalised, stripped)."""
        plain = _plain(text)
        for p in self.plain:
            plain = p.sub(" ", plain)
        return " ".join(plain.split())


def _load_stage_text(path: Path) -> StageText:
    doc = _read_model(path, StageTextFile)
    compiled: dict[str, tuple[re.Pattern[str], ...]] = {}
    for section, names in _GROUPS.items():
        spec: StagePatterns = getattr(doc, section)
        patterns = []
        for i, pattern in enumerate(spec.patterns):
            where = f"{section}.patterns[{i}]"
            missing = names - set(re.compile(pattern).groupindex)
            if missing:
                raise MappingError(str(path), where, f"named groups missing: {sorted(missing)}")
            patterns.append(_compile(path, where, pattern))
        compiled[section] = tuple(patterns)
    reader = StageText(
        compiled["stage_group"],
        compiled["tnm"],
        compiled["summary"],
        compiled["basis"],
        compiled["plain_staging"],
        compiled["side"],
        compiled["breast_report"],
        compiled["doubt"],
    )
    checks = {
        "stage_group": lambda t: bool(reader.groups(t)),
        "tnm": lambda t: bool(reader.tnm_readings(t)),
        "summary": lambda t: reader.summary_group(t) is not None,
        "basis": lambda t: reader.basis(t) is not None,
        "plain_staging": reader.plain_staging,
        "side": lambda t: reader.side(t) is not None,
        "breast_report": reader.about_breast,
        "doubt": reader.doubted,
    }
    for section, check in checks.items():
        _check_examples(path, section, getattr(doc, section), check)
    return reader
