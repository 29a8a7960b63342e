"""The ACR topic and the stage words as data (mappings/acr-topic.json, stage-text.json,
stage-codes.json): only confirmed ratings drive a card, the stage words read their own
examples, and the stage values that can make the service warn are strict."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from cds_service.errors import MappingError
from cds_service.mappings import load_dir
from cds_service.rules import REQUIRED_CONCEPTS, WARNING_ENABLERS
from cds_service.rules.concepts import EARLY_STAGE_ENABLERS

from .conftest import MAPPINGS, load_json
from .test_mappings_loader import _edit, mappings_copy  # noqa: F401  (the fixture)


def _load(directory: Path) -> None:
    load_dir(directory, REQUIRED_CONCEPTS, WARNING_ENABLERS)


def _variant(doc: Any, number: int) -> dict[str, Any]:
    found: dict[str, Any] = next(v for v in doc["variants"] if v["number"] == number)
    return found


def test_variant_2_rates_the_staging_studies_and_only_its_confirmed_rows_are_data() -> None:
    topic = load_dir(MAPPINGS, REQUIRED_CONCEPTS, WARNING_ENABLERS).topic
    assert topic.warn_studies(2) == {
        "pet-ct",
        "ct-chest-abdomen-pelvis",
        "ct-chest",
        "ct-abdomen-pelvis",
        "bone-scan-whole-body",
    }
    pet = topic.rating(2, "pet-ct")
    assert pet is not None and pet.category == "Usually Not Appropriate" and pet.rrl == "☢☢☢☢"
    ct = topic.rating(2, "ct-chest-abdomen-pelvis")
    assert ct is not None and ct.rrl is None  # the CT level is unconfirmed: no radiation line
    assert topic.rating(1, "breast-mri") is None  # its two rows disagree in Variant 1
    assert topic.warn_studies(3) == frozenset() and topic.rating(3, "bone-scan-whole-body") is None


def test_an_unconfirmed_variant_cannot_drive_a_card(mappings_copy: Path) -> None:  # noqa: F811
    _edit(mappings_copy, "acr-topic.json", lambda d: _variant(d, 4).update(drives_cards=True))
    with pytest.raises(MappingError, match="drives a card without confirmed ratings"):
        _load(mappings_copy)


def test_rating_rows_of_an_unconfirmed_variant_are_refused(mappings_copy: Path) -> None:  # noqa: F811
    def unconfirm(doc: Any) -> None:
        _variant(doc, 2)["ratings_confirmed"] = False
        _variant(doc, 2)["drives_cards"] = False

    _edit(mappings_copy, "acr-topic.json", unconfirm)
    with pytest.raises(MappingError, match="only when ratings_confirmed"):
        _load(mappings_copy)


def test_a_rating_must_name_a_known_category(mappings_copy: Path) -> None:  # noqa: F811
    def rename(doc: Any) -> None:
        _variant(doc, 2)["ratings"][0]["category"] = "Appropriate"

    _edit(mappings_copy, "acr-topic.json", rename)
    with pytest.raises(MappingError, match="unknown procedure, category or RRL"):
        _load(mappings_copy)


def test_stage_words_must_read_their_own_examples(mappings_copy: Path) -> None:  # noqa: F811
    _edit(
        mappings_copy,
        "stage-text.json",
        lambda d: d["tnm"]["must_not_match"].append("cT1cN0M0"),
    )
    with pytest.raises(MappingError, match="tnm.must_not_match"):
        _load(mappings_copy)


def test_stage_patterns_must_name_their_groups(mappings_copy: Path) -> None:  # noqa: F811
    _edit(mappings_copy, "stage-text.json", lambda d: d["summary"]["patterns"].append("^IIA$"))
    with pytest.raises(MappingError, match="named groups missing"):
        _load(mappings_copy)


def test_stage_values_that_can_warn_are_strict_and_cite_their_source() -> None:
    concepts = {
        **load_json(MAPPINGS / "stage-codes.json")["concepts"],
        **load_json(MAPPINGS / "staging.json")["concepts"],
    }
    for concept in EARLY_STAGE_ENABLERS:
        assert concepts[concept]["strict"] is True, concept
    for concept in concepts.values():
        for code in concept["codes"]:
            assert code["source"] and code["verified"] in ("V", "V2", "P", "U"), code


def test_p_coded_early_values_are_not_indexed() -> None:
    codes = load_dir(MAPPINGS, REQUIRED_CONCEPTS, WARNING_ENABLERS).codes
    sct = "http://snomed.info/sct"
    assert codes.lookup(sct, "1222724007") == {"stage-group-early-value"}  # IA, V2
    assert not codes.lookup(sct, "1222728005")  # IB, P: not until checked
    assert not codes.lookup("http://cancerstaging.org", "1A")  # P
