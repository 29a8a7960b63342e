"""Words that silence: the concepts a chart names in free text rather than in a code.

A problem-list title under a local code ("Metastatic breast cancer to bone"), a lab's name
("ALK PHOS"), a drug's name ("Ibrance 125 mg"), an order's note ("r/o mets, new back pain"):
``WordMatcher.find`` names the concepts such a text mentions, for one *scope* (the kind of
element the text comes from: condition, observation, medication, procedure, report, order).

The phrases are data (``mappings/words.json``) and can only silence: ``_load_words`` refuses a
phrase for a concept that could make the service warn. Matching is linear in the text: one
Aho-Corasick pass (``pyahocorasick``) over the normalised text finds every phrase at once, each
on word boundaries ("asymptomatic" does not contain the word "symptomatic"). A hit is dropped
when the clause negates it (a cue such as "no", "denies", "negative for" in the few words
before it, or "absent", "negative" right after it), names someone else ("family history of",
"mother"), or holds one of the concept's own ``unless`` phrases ("history of" for an active
treatment). Clauses end at sentence punctuation and at "but"/"however".
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import ahocorasick
from pydantic import ValidationError

from ..errors import MappingError
from ..memo import Memo
from .schema import ConceptDef, WordsFile, _fail, _read_json

SCOPES = ("condition", "observation", "medication", "procedure", "report", "order")

_CLAUSES = re.compile(
    r"[.;!\n\r](?=\s|$)|[;!\n\r]|\b(?:BUT|HOWEVER|ALTHOUGH|THOUGH|NOW|CURRENTLY|PRESENTLY)\b"
)
_QUESTION = re.compile(r"\?")
_NOT_WORD = re.compile(r"[^0-9A-Z]+")
# Words that may stand between a finding and its after-cue: "back pain (2009), resolved",
# "cough has since resolved".
_AFTER_FILLER = re.compile(
    r"^\s*(?:(?:\d+|HAS|HAVE|HAD|SINCE|NOW|IS|WAS|ARE|WERE|BEEN|FULLY|IN)\s+)*"
)
_SEGMENTS = re.compile(r"[,;.\n]|\s-\s")
_REACH = 200  # characters around a hit that negation cues are looked for in
_MEMO_TEXT = 2048  # longer texts are read each time rather than remembered
_GROUP = re.compile(r"\(([^()]*)\)")
_SEMANTIC_TAG = re.compile(r"\s*\((qualifier value|finding|disorder|situation)\)\s*$", re.I)


def normalise(text: str) -> str:
    """Upper case without accents ("metástasis" reads as METASTASIS), every run of characters
    other than letters and digits as one space, padded with a space at each end (so that a
    phrase " X " sits on word boundaries)."""
    if not text.isascii():
        folded = unicodedata.normalize("NFKD", text)
        text = "".join(ch for ch in folded if not unicodedata.combining(ch))
    return " " + _NOT_WORD.sub(" ", text.upper()).strip() + " "


def _clauses(text: str) -> list[tuple[str, bool]]:
    """(normalised clause, whether it is a question) in order: negation does not reach across
    clauses; "injury or accident? N" is a question and its answer."""
    out: list[tuple[str, bool]] = []
    for part in _CLAUSES.split(text.upper()):
        if not part:
            continue
        pieces = _QUESTION.split(part)
        for index, piece in enumerate(pieces):
            norm = normalise(piece)
            if norm.strip():
                out.append((norm, index < len(pieces) - 1))
    return out


def expand(phrase: str) -> list[str]:
    """A phrase with alternatives, "(LUNG|BRONCHUS) (CANCER|CARCINOMA)", as plain phrases.
    An empty alternative makes its group optional: "(LEFT |RIGHT |)LUNG"; groups nest."""
    group = _GROUP.search(phrase)
    if group is None:
        return [" ".join(phrase.split())]
    head, tail = phrase[: group.start()], phrase[group.end() :]
    return [out for alt in group.group(1).split("|") for out in expand(head + alt + tail)]


@dataclass(frozen=True)
class WordHit:
    """A concept named in a text, and the phrase of ours that named it (our data, never the
    chart's words: safe to audit)."""

    concept: str
    phrase: str


@dataclass(frozen=True)
class _Key:
    concept: str
    phrase: str
    kind: str  # "phrase" | "unless" | "requires"


@dataclass
class WordMatcher:
    """Concepts named in free text, by scope. Build with ``WordMatcher.build``."""

    automata: Mapping[str, Any]  # scope -> ahocorasick.Automaton of (literal, [_Key, ...])
    requires: Mapping[str, frozenset[str]]  # concept -> phrases one of which must be present
    before: Any  # Automaton of negation cues that precede
    pseudo: Any  # Automaton of phrases that look like negation and are not ("no change")
    after: tuple[str, ...]  # cues that follow ("absent", "negative")
    after_alone: frozenset[str]  # cues that negate only when nothing else follows ("no")
    others: Any  # Automaton of words naming someone else ("family history", "mother")
    terminate: Any  # Automaton of words that end a negation's reach ("reports", "new")
    strong: Any  # Automaton of negations that hold a terminator word ("has not had")
    window: int
    before_words: tuple[str, ...] = ()  # the negation cues that precede, as written
    pseudo_concepts: frozenset[str] = frozenset()  # where "no new X" still says X
    abnormal: frozenset[str] = frozenset()  # interpretations in words that mean "abnormal"
    phrase_count: int = 0  # plain phrases once expanded, over all scopes (check-mappings)
    _memo: Memo[tuple[str, str], tuple[WordHit, ...]] = field(
        default_factory=lambda: Memo(50_000), repr=False
    )
    _denials: Memo[str, bool] = field(default_factory=lambda: Memo(20_000), repr=False)

    def __post_init__(self) -> None:
        self._after_set = frozenset(self.after)
        self._after_prefixes = tuple(cue + " " for cue in self.after)
        self._after_suffixes = tuple(" " + cue + " " for cue in (*self.after, *self.after_alone))
        self._before_padded = tuple(" " + cue + " " for cue in self.before_words)

    @classmethod
    def build(cls, doc: Mapping[str, Any]) -> WordMatcher:
        """From the validated content of ``mappings/words.json`` (see ``_load_words``)."""
        literals: dict[str, dict[str, list[_Key]]] = {scope: {} for scope in SCOPES}
        requires: dict[str, frozenset[str]] = {}
        for concept, spec in doc["concepts"].items():
            kinds: list[tuple[str, Any]] = [
                ("phrase", spec["phrases"]),
                ("unless", spec.get("unless", ())),
            ]
            if spec.get("requires"):
                kinds.append(("requires", spec["requires"]))
                requires[concept] = frozenset(
                    p.rstrip("*").strip() for r in spec["requires"] for p in expand(r)
                )
            for kind, phrases in kinds:
                for written in phrases:
                    for phrase in expand(written):
                        literal = _literal(phrase)
                        for scope in spec["scopes"]:
                            key = _Key(concept, phrase.rstrip("*").strip(), kind)
                            literals[scope].setdefault(literal, []).append(key)
        negation = doc["negation"]
        return cls(
            automata={scope: _automaton(found) for scope, found in literals.items()},
            requires=requires,
            before=_automaton({_literal(c): [c] for c in negation["before"]}),
            pseudo=_automaton({_literal(c): [c] for c in negation["pseudo"]}),
            after=tuple(sorted(negation["after"], key=len, reverse=True)),
            after_alone=frozenset(negation["after_alone"]),
            others=_automaton({_literal(c): [c] for c in negation["other_person"]}),
            terminate=_automaton({_literal(c): [c] for c in negation.get("terminate", ())}),
            strong=_automaton({_literal(c): [c] for c in negation.get("strong", ())}),
            window=int(negation["window"]),
            before_words=tuple(" ".join(c.split()) for c in negation["before"]),
            pseudo_concepts=frozenset(negation.get("pseudo_concepts", ())),
            abnormal=frozenset(normalise(w).strip() for w in doc["interpretation"]["abnormal"]),
            phrase_count=sum(len(found) for found in literals.values()),
        )

    def find(self, scope: str, text: str | None) -> tuple[WordHit, ...]:
        """The concepts the text names (not negated, about the patient), once each."""
        if not text or not text.strip():
            return ()
        if len(text) > _MEMO_TEXT:  # a long note: read, not remembered (memory is bounded)
            return self._find(scope, text)
        return self._memo.recall((scope, text), self._find, scope, text)

    def concepts(self, scope: str, texts: Iterable[str | None]) -> tuple[WordHit, ...]:
        """``find`` over several texts of one element, first hit per concept."""
        seen: dict[str, WordHit] = {}
        for text in texts:
            for hit in self.find(scope, text):
                seen.setdefault(hit.concept, hit)
        return tuple(seen.values())

    def without_denials(self, text: str) -> str:
        """The text without its denied parts: "Surveillance, no pain, no cough" reads as
        "Surveillance". A part (between commas, semicolons and stops) that starts with a
        negation ("no", "denies"), ends with a denial ("... negative") or is a question
        answered no ("abnormal? No") is left out."""
        kept = []
        for segment in _SEGMENTS.split(text):
            question, mark, answer = segment.rpartition("?")
            if mark and self.denies(answer):
                continue
            norm = normalise(segment).strip()
            if not norm:
                continue
            padded = " " + norm + " "
            if padded.startswith(self._before_padded) or padded.endswith(self._after_suffixes):
                continue
            kept.append(segment)
        return ", ".join(kept)

    def says_abnormal(self, text: str | None) -> bool:
        """Is this interpretation, given as text ("H", "High", "Abnormal"), an abnormal one?"""
        return bool(text) and normalise(_SEMANTIC_TAG.sub("", text or "")).strip() in self.abnormal

    def denies(self, text: str | None) -> bool:
        """Is this answer a denial ("Absent", "No", "Negative", "No (qualifier value)")?"""
        if not text:
            return False
        found = self._denials.get(text)
        if found is None:
            answer = normalise(_SEMANTIC_TAG.sub("", text)).strip()
            found = (
                answer in self.after_alone
                or answer in self._after_set
                or answer.startswith(self._after_prefixes)
            )
            if len(text) <= _MEMO_TEXT:
                self._denials.remember(text, found)
        return found

    def _find(self, scope: str, text: str) -> tuple[WordHit, ...]:
        automaton = self.automata[scope]
        if not len(automaton):
            return ()
        found: dict[str, WordHit] = {}
        parts = _clauses(text)
        for position, (clause, question) in enumerate(parts):
            if question and position + 1 < len(parts) and self.denies(parts[position + 1][0]):
                continue  # "Injury or accident? N": the question answered no
            hits: list[tuple[int, int, _Key]] = []
            for end, (literal, keys) in automaton.iter(clause):
                start = end - len(literal) + 1
                hits += [(start, end, key) for key in keys]
            if not hits or _any(self.others, clause):
                continue
            unless = {k.concept for _, _, k in hits if k.kind == "unless"}
            present = {k.phrase for _, _, k in hits if k.kind == "requires"}
            for start, end, key in hits:
                if key.kind != "phrase" or key.concept in unless or key.concept in found:
                    continue
                needed = self.requires.get(key.concept)
                if needed is not None and not needed & present:
                    continue
                if self._negated(clause, start, end, key.concept in self.pseudo_concepts):
                    continue
                found[key.concept] = WordHit(key.concept, key.phrase)
        return tuple(found.values())

    def _negated(self, clause: str, start: int, end: int, pseudo: bool = True) -> bool:
        # Bounded slices around the hit: reading a negation costs the same in a 100 KiB note.
        before = clause[max(0, start - _REACH) : start].split()[-self.window :]
        if before:
            window = " " + " ".join(before) + " "
            if _any(self.strong, window):  # "has not had any cough": HAD does not end it
                return True
            stops = [
                (stop_end, literal)
                for stop_end, (literal, _) in (
                    self.terminate.iter(window) if len(self.terminate) else ()
                )
                # "denies new cough", "no new symptoms": a terminator right after a negation
                # is inside its reach, not the end of it
                if not (" " + window[: stop_end - len(literal) + 2]).endswith(self._before_padded)
            ]
            if stops:
                window = " " + window[max(stops)[0] + 1 :]  # "no fever, reports cough"
            for pseudo_end, (literal, _) in self.pseudo.iter(window) if pseudo else ():
                cut = pseudo_end - len(literal) + 1
                window = (
                    window[:cut] + " " + "_" * (len(literal) - 2) + " " + window[pseudo_end + 1 :]
                )
            if _any(self.before, window):
                return True
        word_end = clause.find(" ", end)  # after the word (a stem ends inside it)
        rest = _AFTER_FILLER.sub(
            "", clause[word_end : word_end + _REACH]
        ).strip()  # "(2009) resolved"
        if not rest:
            return False
        if rest in self.after_alone and len(clause) - word_end <= _REACH:
            return True
        return rest in self._after_set or rest.startswith(self._after_prefixes)


def _literal(phrase: str) -> str:
    """How a phrase is searched: " X Y " on both word boundaries, " X Y" for "X Y*" (a stem)."""
    words = " ".join(phrase.upper().split())
    if words.endswith("*"):
        return " " + words[:-1].rstrip()
    return " " + words + " "


def _automaton(entries: Mapping[str, Sequence[Any]]) -> Any:
    automaton = ahocorasick.Automaton()
    for literal, values in entries.items():
        automaton.add_word(literal, (literal, list(values)))
    if len(automaton):
        automaton.make_automaton()
    return automaton


def _any(automaton: Any, text: str) -> bool:
    if not len(automaton):
        return False
    for _ in automaton.iter(text):
        return True
    return False


_PHRASE = re.compile(r"^[0-9A-Z ]+\*?$")  # each phrase once its (A|B) groups are expanded


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
