"""The code index: ``(system, code)`` to concepts (``CodeMap``), built and checked from the
concept files and ``code-systems.json``."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import ValidationError

from ..errors import MappingError
from ..memo import Memo
from .schema import USABLE, USABLE_STRICT, CodeSystemsFile, ConceptDef, _fail, _read_json


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


def _closure(concepts: Mapping[str, ConceptDef], start: str) -> frozenset[str]:
    seen = {start}
    todo = [start]
    while todo:
        for other in concepts[todo.pop()].also:
            if other not in seen:
                seen.add(other)
                todo.append(other)
    return frozenset(seen)


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


def _build_code_map(
    systems: CodeSystems, concepts: Mapping[str, ConceptDef], concept_file: Mapping[str, Path]
) -> CodeMap:
    """The index of the concepts' usable codes; raise ``MappingError`` on an alias system, a
    code two concepts map, or a prefix family that swallows another concept's code."""
    index = _CodeIndex()
    for concept_id in concepts:
        index.add(systems, concepts, concept_id, concept_file[concept_id])
    index.check_prefix_families(concept_file)
    return CodeMap(
        systems=systems,
        exact=index.exact,
        prefixes=index.prefixes,
        concepts=concepts,
        fallbacks=index.fallbacks,
        sources={cid: path.name for cid, path in concept_file.items()},
    )


@dataclass
class _CodeIndex:
    """The code tables of a ``CodeMap`` while they are built, with the owner of every mapped
    code (usable or not) to refuse a code mapped twice."""

    exact: dict[tuple[str, str], frozenset[str]] = field(default_factory=dict)
    prefixes: dict[str, dict[str, frozenset[str]]] = field(default_factory=dict)
    fallbacks: dict[str, dict[str, frozenset[str]]] = field(default_factory=dict)
    owner: dict[tuple[str, str, str], str] = field(default_factory=dict)  # (system, code, match)

    def add(
        self,
        systems: CodeSystems,
        concepts: Mapping[str, ConceptDef],
        concept_id: str,
        path: Path,
    ) -> None:
        """Index one concept's codes: each maps to the concept and all it implies."""
        concept = concepts[concept_id]
        implied = _closure(concepts, concept_id)
        usable = USABLE_STRICT if concept.strict else USABLE
        for index, entry in enumerate(concept.codes):
            where = f"concepts.{concept_id}.codes.{index}"
            canon = systems.canon(entry.system)
            if canon != entry.system:
                raise MappingError(
                    str(path),
                    where,
                    f"use the canonical system {canon}, not the alias {entry.system}",
                )
            norm = systems.norm_code(canon, entry.code)
            if entry.fallback:
                if entry.match != "prefix":
                    raise MappingError(str(path), where, "a fallback must be a prefix")
                if entry.verified in usable:
                    self.fallbacks.setdefault(canon, {})[norm] = implied
                continue
            key = (canon, norm, entry.match)
            if key in self.owner:
                raise MappingError(
                    str(path),
                    where,
                    f"{entry.system}|{entry.code} is already mapped to concept {self.owner[key]!r}",
                )
            self.owner[key] = concept_id
            if entry.verified not in usable:
                continue  # documented, never used (see mappings/README.md)
            if entry.match == "exact":
                self.exact[(canon, norm)] = implied
            else:
                self.prefixes.setdefault(canon, {})[norm] = implied

    def check_prefix_families(self, concept_file: Mapping[str, Path]) -> None:
        """A prefix family must not swallow a code that another concept owns."""
        for (canon, norm, kind), concept_id in self.owner.items():
            families = self.prefixes.get(canon, {})
            for end in range(len(norm), 0, -1):
                if norm[:end] not in families or (end == len(norm) and kind == "prefix"):
                    continue
                other_owner = self.owner[(canon, norm[:end], "prefix")]
                if other_owner != concept_id:
                    raise MappingError(
                        str(concept_file[concept_id]),
                        f"concepts.{concept_id}",
                        f"{canon}|{norm} is also covered by the prefix {norm[:end]!r} "
                        f"of concept {other_owner!r} ({concept_file[other_owner].name})",
                    )
