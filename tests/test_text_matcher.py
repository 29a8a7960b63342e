"""The order-text matcher: every example in order-text-patterns.json is read as its study (or
not), and look-alike orders are not taken for a surveillance study."""

from __future__ import annotations

import pytest

from cds_service.mappings import load_dir
from cds_service.rules import REQUIRED_CONCEPTS, WARNING_ENABLERS

from .conftest import MAPPINGS, load_json

KNOWLEDGE = load_dir(MAPPINGS, REQUIRED_CONCEPTS, WARNING_ENABLERS)


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
def test_look_alike_orders_are_told_apart(text: str, study: str | None) -> None:
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
