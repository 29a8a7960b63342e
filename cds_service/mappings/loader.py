"""Load and validate ``mappings/*.json`` once at start-up into an immutable ``Knowledge``.

The files are the service's clinical knowledge (see ``mappings/README.md``). Validation covers
the schema of every file, one concept per code across all files (prefix families included),
references between concepts, the concepts the rules need, and the order-text matcher's own
examples. Any failure raises ``MappingError`` naming the file and the entry.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from ..errors import MappingError
from ..memo import Memo
from .codes import CodeMap, _build_code_map, _load_systems
from .guideline import GuidelineFile, _load_guideline
from .schema import ConceptDef, ConceptFile, OverrideCodeSystem, _fail, _read_json
from .stage_text import StageText, _load_stage_text
from .text import TextMatcher, _load_text
from .topic import AcrTopic, _load_topic
from .wording import WordingFile, _load_wording
from .words import WordMatcher, _load_words

CODE_SYSTEMS_FILE = "code-systems.json"
TEXT_PATTERNS_FILE = "order-text-patterns.json"
GUIDELINE_FILE = "acr-variant-10.json"
OVERRIDE_FILE = "override-reasons.json"
WORDS_FILE = "words.json"
WORDING_FILE = "wording.json"
TOPIC_FILE = "acr-topic.json"
STAGE_TEXT_FILE = "stage-text.json"


@dataclass(frozen=True)
class Knowledge:
    """All mapping data, validated: the code index, the order-text matcher, the words that
    silence, the guideline content, the ACR topic and the stage words."""

    codes: CodeMap
    text: TextMatcher
    guideline: GuidelineFile
    override_reasons: OverrideCodeSystem
    files: tuple[str, ...]
    words: WordMatcher
    wording: WordingFile
    topic: AcrTopic  # the ACR topic's variants and confirmed ratings (Variants 1-2)
    stage_text: StageText  # how a stage is written in free text
    # Readings of repeated codes (an Observation's code: its concepts and name), remembered
    # for this knowledge (fhir.reader.ResourceReader); bounded, as codes come from clients.
    readings: Memo[Any, Any] = field(
        default_factory=lambda: Memo(20_000), repr=False, compare=False
    )


_NOT_CONCEPT_FILES = frozenset(
    {
        CODE_SYSTEMS_FILE,
        TEXT_PATTERNS_FILE,
        GUIDELINE_FILE,
        OVERRIDE_FILE,
        WORDS_FILE,
        WORDING_FILE,
        TOPIC_FILE,
        STAGE_TEXT_FILE,
    }
)


def load_dir(
    directory: Path | str, required: Iterable[str] = (), enabling: Iterable[str] = ()
) -> Knowledge:
    """Load every mapping file in ``directory``; raise ``MappingError`` on the first problem.

    ``required``: the concepts the rules read; ``enabling``: those that can make the service
    warn (no words may name them)."""
    root = Path(directory)
    if not root.is_dir():
        raise MappingError(str(root), "", "mappings directory not found")
    systems = _load_systems(_existing(root / CODE_SYSTEMS_FILE))
    concepts, concept_file = _load_concepts(root)
    _check_concepts(root, concepts, concept_file, required)
    code_map = _build_code_map(systems, concepts, concept_file)
    text = _load_text(_existing(root / TEXT_PATTERNS_FILE), concepts)
    guideline = _load_guideline(_existing(root / GUIDELINE_FILE), concepts)
    overrides = _load_overrides(root / OVERRIDE_FILE)
    words = _load_words(_existing(root / WORDS_FILE), concepts, frozenset(enabling))
    wording = _load_wording(root / WORDING_FILE, guideline)
    topic = _load_topic(_existing(root / TOPIC_FILE), concepts)
    stage_text = _load_stage_text(_existing(root / STAGE_TEXT_FILE))
    files = tuple(dict.fromkeys(path.name for path in concept_file.values()))  # in file order
    return Knowledge(code_map, text, guideline, overrides, files, words, wording, topic, stage_text)


def _existing(path: Path) -> Path:
    if not path.is_file():
        raise MappingError(str(path), "", "file is missing")
    return path


def _load_concepts(root: Path) -> tuple[dict[str, ConceptDef], dict[str, Path]]:
    """The concepts of every concept file (each ``*.json`` but the named ones), and the file
    that defines each; a concept is defined once."""
    concepts: dict[str, ConceptDef] = {}
    concept_file: dict[str, Path] = {}
    for path in sorted(root.glob("*.json")):
        if path.name in _NOT_CONCEPT_FILES:
            continue
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
    return concepts, concept_file


def _check_concepts(
    root: Path,
    concepts: Mapping[str, ConceptDef],
    concept_file: Mapping[str, Path],
    required: Iterable[str],
) -> None:
    """Every concept a concept implies ("also") exists, and so does every one the rules read."""
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


def _load_overrides(path: Path) -> OverrideCodeSystem:
    """``override-reasons.json``: the reasons a clinician may give for going ahead, once each."""
    try:
        overrides = OverrideCodeSystem.model_validate(_read_json(path))
    except ValidationError as exc:
        raise _fail(path, exc) from exc
    codes_seen = [c.code for c in overrides.concept]
    if len(codes_seen) != len(set(codes_seen)):
        raise MappingError(str(path), "concept", "duplicate code")
    return overrides
