"""Loading mappings/: a bad file stops the service naming the file and the entry, and each app
loads the knowledge once."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from cds_service import create_app
from cds_service.errors import MappingError
from cds_service.mappings import Knowledge, load_dir
from cds_service.rules import REQUIRED_CONCEPTS, WARNING_ENABLERS

from .conftest import MAPPINGS


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
