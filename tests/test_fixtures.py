"""The committed fixtures are what fixtures/generate.py writes, and every resource is valid R4."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest
from fhir.resources.R4B import get_fhir_model_class

from .conftest import CASES_DOC, FIXTURES, load_json


def test_fixtures_are_up_to_date(tmp_path: Path) -> None:
    spec = importlib.util.spec_from_file_location("fixture_generator", FIXTURES / "generate.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    module.main(tmp_path)
    fresh = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*.json"))
    committed = sorted(
        p.relative_to(FIXTURES)
        for p in FIXTURES.rglob("*.json")
        if p.parts[len(FIXTURES.parts)] in ("patients", "requests") or p.name == "cases.json"
    )
    assert fresh == committed
    for relative in fresh:
        assert (tmp_path / relative).read_bytes() == (FIXTURES / relative).read_bytes(), (
            f"{relative} is stale: run python fixtures/generate.py"
        )


@pytest.mark.parametrize("case", CASES_DOC["cases"], ids=[c["name"] for c in CASES_DOC["cases"]])
def test_patient_bundle_resources_are_valid_r4(case: dict[str, str]) -> None:
    bundle = load_json(FIXTURES / case["patient"])
    for entry in bundle["entry"]:
        resource = entry["resource"]
        get_fhir_model_class(resource["resourceType"]).model_validate(resource)
