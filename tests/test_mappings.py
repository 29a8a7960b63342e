"""Mapping data: every code maps to its concept, the text matcher keeps its examples, and a bad
file stops the service naming the file and the entry."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from cds_service import create_app
from cds_service.errors import MappingError
from cds_service.mappings import USABLE, USABLE_STRICT, Knowledge, load_dir
from cds_service.rules import REQUIRED_CONCEPTS, WARNING_ENABLERS

from .conftest import MAPPINGS, load_json

KNOWLEDGE = load_dir(MAPPINGS, REQUIRED_CONCEPTS, WARNING_ENABLERS)
CONCEPT_FILES = [
    p
    for p in sorted(MAPPINGS.glob("*.json"))
    if "concepts" in load_json(p) and "group" in load_json(p)
]


def _entries() -> list[tuple[str, str, dict[str, Any], bool]]:
    rows = []
    for path in CONCEPT_FILES:
        for concept_id, concept in load_json(path)["concepts"].items():
            for entry in concept["codes"]:
                rows.append((path.name, concept_id, entry, concept.get("strict", False)))
    return rows


ENTRIES = _entries()


@pytest.mark.parametrize(
    ("file", "concept", "entry", "strict"),
    ENTRIES,
    ids=[f"{c}:{e['code']}" for _, c, e, _ in ENTRIES],
)
def test_each_code_maps_to_its_concept(
    file: str, concept: str, entry: dict[str, Any], strict: bool
) -> None:
    found = KNOWLEDGE.codes.lookup(entry["system"], entry["code"])
    usable = USABLE_STRICT if strict else USABLE
    if entry["verified"] in usable:
        assert concept in found, f"{file}: {entry}"
        if entry.get("match") == "prefix":
            # A family matches its members whatever the dots and case.
            member = entry["code"] + "9"
            assert concept in KNOWLEDGE.codes.lookup(entry["system"], member.lower())
    else:
        assert concept not in found, f"{entry['verified']} code must not be used: {entry}"
    assert entry["source"].strip() and entry["display"].strip()


@pytest.mark.parametrize(
    ("system", "code", "concept"),
    [
        ("http://hl7.org/fhir/sid/icd-10-cm", "C50.A1", "invasive-breast-cancer"),
        ("http://hl7.org/fhir/sid/icd-10-cm", "C50912", "invasive-breast-cancer"),
        ("urn:oid:2.16.840.1.113883.6.90", "C50.921", "invasive-breast-cancer"),
        ("http://hl7.org/fhir/sid/icd-10-cm", "Z85.3", "invasive-breast-cancer"),
        ("http://hl7.org/fhir/sid/icd-10-cm", "C79.51", "metastatic-disease"),
        ("http://hl7.org/fhir/sid/icd-10-cm", "D05.11", "dcis"),
        ("http://hl7.org/fhir/sid/icd-10-cm", "R05.3", "cough"),
        ("http://hl7.org/fhir/sid/icd-10-cm", "C34.90", "other-primary-malignancy"),
        ("http://www.radlex.org", "rpid5083", "bone-scan-whole-body"),
    ],
)
def test_lookup_normalises_codes_and_systems(system: str, code: str, concept: str) -> None:
    assert concept in KNOWLEDGE.codes.lookup(system, code)


@pytest.mark.parametrize(
    ("system", "code", "concept"),
    [
        ("http://hl7.org/fhir/sid/icd-10-cm", "Z80.3", "invasive-breast-cancer"),
        ("http://snomed.info/sct", "429740004", "invasive-breast-cancer"),
        ("http://hl7.org/fhir/sid/icd-10-cm", "C77.3", "metastatic-disease"),
        ("http://hl7.org/fhir/sid/icd-10-cm", "D05.11", "invasive-breast-cancer"),
        ("http://snomed.info/sct", "109889007", "invasive-breast-cancer"),
        ("http://hl7.org/fhir/sid/icd-10-cm", "C44.91", "other-primary-malignancy"),
        ("http://www.ama-assn.org/go/cpt", "78811", "pet-ct"),
        ("http://snomed.info/sct", "241615005", "brain-mri"),
    ],
)
def test_pitfalls_do_not_map(system: str, code: str, concept: str) -> None:
    assert concept not in KNOWLEDGE.codes.lookup(system, code)


def _text_examples() -> list[tuple[str, str, bool]]:
    doc = load_json(MAPPINGS / "order-text-patterns.json")
    rows = []
    for study in doc["studies"]:
        rows += [(study["study"], text, True) for text in study["must_match"]]
        rows += [(study["study"], text, False) for text in study.get("must_not_match", [])]
    return rows


@pytest.mark.parametrize(("study", "text", "matches"), _text_examples())
def test_order_text_examples(study: str, text: str, matches: bool) -> None:
    got = KNOWLEDGE.text.match(text)
    assert (got == study) is matches, f"{text!r} → {got!r}"


@pytest.mark.parametrize(
    ("text", "study"),
    [
        ("NM BONE SCAN WHOLE BODY", "bone-scan-whole-body"),
        ("PET CT SKULL BASE TO MID THIGH", "pet-ct"),
        ("CT CHEST ABD PELVIS W CONTRAST", "ct-chest-abdomen-pelvis"),
        ("CT C/A/P W", "ct-chest-abdomen-pelvis"),
        ("CT HEAD WO CONTRAST", "head-ct"),
        ("PET/CT BRAIN FDG", None),
        ("CTA CHEST PE PROTOCOL", None),
        ("LOW DOSE CT CHEST LUNG CANCER SCREENING", None),
        ("DXA BONE DENSITY", None),
        ("NM BONE SCAN LIMITED", "bone-scan-limited"),
        ("MRI BREAST BILATERAL", "breast-mri"),
        ("US BREAST LEFT", "breast-us"),
        ("", None),
    ],
)
def test_issue_look_alikes(text: str, study: str | None) -> None:
    got = KNOWLEDGE.text.match(text)
    if study is None:
        assert got not in {
            "pet-ct",
            "ct-chest",
            "ct-chest-abdomen-pelvis",
            "bone-scan-whole-body",
        }, got
    else:
        assert got == study


# --- a bad file stops the service, naming the file and the entry --------------------------


@pytest.fixture()
def mappings_copy(tmp_path: Path) -> Path:
    target = tmp_path / "mappings"
    shutil.copytree(MAPPINGS, target)
    return target


def _edit(directory: Path, name: str, change: Callable[[Any], None]) -> None:
    path = directory / name
    doc = json.loads(path.read_text())
    change(doc)
    path.write_text(json.dumps(doc))


def _first_code(doc: Any) -> dict[str, Any]:
    entry: dict[str, Any] = next(iter(doc["concepts"].values()))["codes"][0]
    return entry


BAD_EDITS: list[tuple[str, str, Callable[[Any], None], str]] = [
    ("breast-cancer.json", "no-source", lambda d: _first_code(d).pop("source"), "source"),
    (
        "breast-cancer.json",
        "relative-system",
        lambda d: _first_code(d).update(system="icd10"),
        "absolute URI",
    ),
    (
        "breast-cancer.json",
        "bad-mark",
        lambda d: _first_code(d).update(verified="maybe"),
        "verified",
    ),
    (
        "breast-cancer.json",
        "unknown-field",
        lambda d: _first_code(d).update(colour="red"),
        "colour",
    ),
    (
        "symptoms.json",
        "duplicate-code",
        lambda d: d["concepts"]["cough"]["codes"].append(
            {
                "system": "http://snomed.info/sct",
                "code": "254837009",
                "display": "x",
                "source": "x",
                "verified": "V",
            }
        ),
        "already mapped",
    ),
    (
        "symptoms.json",
        "prefix-swallows-other-concept",
        lambda d: d["concepts"]["cough"]["codes"].append(
            {
                "system": "http://hl7.org/fhir/sid/icd-10-cm",
                "code": "C5",
                "match": "prefix",
                "display": "x",
                "source": "x",
                "verified": "V",
            }
        ),
        "covered by the prefix",
    ),
    ("symptoms.json", "missing-concept", lambda d: d["concepts"].pop("headache"), "missing"),
    (
        "breast-cancer.json",
        "unknown-also",
        lambda d: d["concepts"]["breast-cancer-in-remission"].update(also=["nope"]),
        "unknown concept",
    ),
    (
        "order-text-patterns.json",
        "bad-regex",
        lambda d: d["studies"][0]["include"].append("(unclosed"),
        "regular expression",
    ),
    (
        "order-text-patterns.json",
        "broken-example",
        lambda d: d["studies"][0]["must_match"].append("XYZZY"),
        "XYZZY",
    ),
    (
        "order-text-patterns.json",
        "metastatic-example-not-read",
        lambda d: d["staging"]["metastatic"]["must_match"].append("XYZZY"),
        "staging.metastatic.must_match",
    ),
    (
        "order-text-patterns.json",
        "metastatic-negation-read",
        lambda d: d["staging"]["metastatic"]["must_not_match"].append("Metastatic to bone"),
        "staging.metastatic.must_not_match",
    ),
    (
        "acr-variant-10.json",
        "unknown-study",
        lambda d: d["studies"].update({"nope": d["studies"]["pet-ct"]}),
        "nope",
    ),
]


@pytest.mark.parametrize(
    ("name", "case", "change", "message"), BAD_EDITS, ids=[b[1] for b in BAD_EDITS]
)
def test_bad_file_is_refused_with_its_name(
    mappings_copy: Path, name: str, case: str, change: Callable[[Any], None], message: str
) -> None:
    _edit(mappings_copy, name, change)
    with pytest.raises(MappingError) as info:
        load_dir(mappings_copy, REQUIRED_CONCEPTS, WARNING_ENABLERS)
    assert message in str(info.value)
    if case != "missing-concept":
        assert name in str(info.value)
    with pytest.raises(MappingError):
        create_app({"mappings_dir": str(mappings_copy)})


def test_unreadable_json_is_refused(mappings_copy: Path) -> None:
    (mappings_copy / "labs.json").write_text("{ not json")
    with pytest.raises(MappingError, match="labs.json"):
        load_dir(mappings_copy, REQUIRED_CONCEPTS, WARNING_ENABLERS)


def test_knowledge_is_loaded_once_per_app() -> None:
    app = create_app({"today": "2026-11-25"})
    assert isinstance(app.extensions["cds_service"].knowledge, Knowledge)
