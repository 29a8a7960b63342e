"""Clinical recall on held-out charts written the way real charts are (issue 14).

Each fixtures/charts/*.json is one patient: a complete CDS Hooks 2.0 request (full prefetch, no
fhirServer) with the expected verdict, the day it is judged on and a one-line rationale. The
charts record their exclusions (or the lack of them) in local codes with text, ICD-9-CM carried
over, SNOMED-only problem lists, drugs by brand or in words, lab variants, compact stage strings
and the order's own words. ``expect`` is "warn" (a card with indicator "warning" must be
returned) or "silent" (no warning card; an info card is allowed, e.g. the targeted-study hint
on a symptom). Classes 1-7 are the classes of issue 14; "warn" marks plain survivors.

The service is expected to miss many of these today: they are the acceptance set for the fix.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Iterator
from datetime import date
from typing import Any

import pytest
from fhir.resources.R4B import get_fhir_model_class
from flask import Flask

from cds_service import create_app

from .conformance import assert_conformant
from .conftest import FIXTURES, SERVICE_FOR_HOOK, load_json

CHART_DIR = FIXTURES / "charts"
CHART_FILES = sorted(CHART_DIR.glob("*.json"))
CHARTS: list[dict[str, Any]] = [load_json(p) for p in CHART_FILES]
CLASSES = ("1", "2", "3", "4", "5", "6", "7", "warn")
PREFETCH_KEYS = ("patient", "conditions", "observations", "procedures", "medications")
ID_PATTERN = re.compile(r"^[a-z0-9][a-z0-9-]*$")


def warning_orders(body: dict[str, Any]) -> list[str]:
    """The orders named by the warning cards of a response (one entry per warning card)."""
    return [
        card.get("extension", {}).get("org.example.breast-surveillance-cds", {}).get("order", "")
        for card in body.get("cards", [])
        if card.get("indicator") == "warning"
    ]


def draft_order_refs(request: dict[str, Any]) -> set[str]:
    return {
        f"ServiceRequest/{entry['resource']['id']}"
        for entry in request["context"]["draftOrders"]["entry"]
    }


@pytest.fixture(scope="module")
def apps(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Flask]]:
    """One app per reference day of the charts, each with its own temporary store."""
    built: dict[str, Flask] = {}
    for today in sorted({chart["today"] for chart in CHARTS}):
        built[today] = create_app(
            {"today": today, "instance_dir": str(tmp_path_factory.mktemp(f"charts-{today}"))}
        )
    yield built
    for app in built.values():
        app.extensions["cds_service"].store.close()


@pytest.fixture(scope="module")
def answers(apps: dict[str, Flask]) -> dict[str, tuple[int, Any]]:
    """Every chart posted once to its service: id -> (HTTP status, JSON body or None)."""
    out: dict[str, tuple[int, Any]] = {}
    for chart in CHARTS:
        request = chart["request"]
        with apps[chart["today"]].test_client() as client:
            response = client.post(
                f"/cds-services/{SERVICE_FOR_HOOK[request['hook']]}", json=request
            )
            out[chart["id"]] = (response.status_code, response.get_json(silent=True))
    return out


# --- the charts themselves are sound ----------------------------------------------------


def test_charts_are_well_formed() -> None:
    assert len(CHARTS) >= 60
    ids = [chart["id"] for chart in CHARTS]
    assert len(ids) == len(set(ids))
    for path, chart in zip(CHART_FILES, CHARTS, strict=True):
        assert set(chart) >= {"id", "class", "expect", "today", "rationale", "request"}, path
        assert path.stem == chart["id"] and ID_PATTERN.match(chart["id"]), path
        assert chart["class"] in CLASSES, path
        assert chart["expect"] in ("warn", "silent"), path
        assert chart["expect"] == "warn" or chart["class"] not in ("7", "warn"), path
        date.fromisoformat(chart["today"])
        assert len(chart["rationale"]) > 40, path
        request = chart["request"]
        assert request["hook"] in SERVICE_FOR_HOOK, path
        assert "fhirServer" not in request and "fhirAuthorization" not in request, path
        prefetch = request["prefetch"]
        assert all(key in prefetch for key in PREFETCH_KEYS), path
        patient_id = request["context"]["patientId"]
        assert prefetch["patient"]["id"] == patient_id, path
        orders = request["context"]["draftOrders"]["entry"]
        assert orders, path
        for entry in orders:
            order = entry["resource"]
            assert order["resourceType"] == "ServiceRequest" and order["status"] == "draft", path
            assert order["subject"]["reference"] == f"Patient/{patient_id}", path
        if request["hook"] == "order-select":
            assert set(request["context"]["selections"]) <= draft_order_refs(request), path
        for key in PREFETCH_KEYS[1:]:
            for entry in prefetch[key]["entry"]:
                resource = entry["resource"]
                subject = resource.get("subject", {}).get("reference")
                assert subject in (None, f"Patient/{patient_id}"), (path, resource["id"])
                # Nothing is dated after the day the chart is judged on.
                for value in _dates(resource):
                    assert value[:10] <= chart["today"], (path, resource["id"], value)


def _dates(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if isinstance(value, str) and (
                key.endswith("DateTime") or key in ("authoredOn", "recordedDate", "start", "end")
            ):
                yield value
            else:
                yield from _dates(value)
    elif isinstance(node, list):
        for item in node:
            yield from _dates(item)


def test_every_class_has_several_variants_and_enough_survivors_should_warn() -> None:
    by_class = Counter(chart["class"] for chart in CHARTS)
    for klass in ("1", "2", "3", "4", "5", "6", "7"):
        assert by_class[klass] >= 3, (klass, by_class)
    assert sum(chart["expect"] == "warn" for chart in CHARTS) >= 15
    for klass in ("1", "2", "3", "4", "5", "6"):
        assert any(c["class"] == klass and c["expect"] == "silent" for c in CHARTS), klass


# --- the service on each chart ----------------------------------------------------------


@pytest.mark.parametrize("chart", CHARTS, ids=[chart["id"] for chart in CHARTS])
def test_chart(chart: dict[str, Any], answers: dict[str, tuple[int, Any]]) -> None:
    status, body = answers[chart["id"]]
    assert status < 500, f"{chart['id']}: HTTP {status}"
    assert status == 200, f"{chart['id']}: HTTP {status} {body}"
    warned = warning_orders(body)
    why = f"[class {chart['class']}] {chart['rationale']}"
    if chart["expect"] == "warn":
        assert warned, f"missed warning: {why}"
        assert set(warned) <= draft_order_refs(chart["request"]), warned
    else:
        assert not warned, f"false warning on {warned}: {why}"


def test_summary_table(
    answers: dict[str, tuple[int, Any]], capsys: pytest.CaptureFixture[str]
) -> None:
    """class x expected x got, written to the terminal whatever the capture mode.

    Asserts what must hold for every chart today: an answer without a server error, a
    conformant CDS Hooks response, and a table that accounts for every chart once."""
    table: Counter[tuple[str, str, str]] = Counter()
    for chart in CHARTS:
        status, body = answers[chart["id"]]
        assert status == 200, f"{chart['id']}: HTTP {status}"
        assert_conformant(body)
        got = "warn" if warning_orders(body) else "silent"
        table[(chart["class"], chart["expect"], got)] += 1
    assert sum(table.values()) == len(CHARTS)
    lines = [
        "",
        "chart recall: class x expected x got (fixtures/charts)",
        f"{'class':<6} {'expect':<7} {'got warn':>9} {'got silent':>11} {'right':>6}",
    ]
    right_total = 0
    for klass in CLASSES:
        for expect in ("warn", "silent"):
            warn = table[(klass, expect, "warn")]
            silent = table[(klass, expect, "silent")]
            if warn + silent == 0:
                continue
            right = warn if expect == "warn" else silent
            right_total += right
            lines.append(f"{klass:<6} {expect:<7} {warn:>9} {silent:>11} {right:>6}")
    false_warnings = sum(n for (_, e, g), n in table.items() if e == "silent" and g == "warn")
    missed = sum(n for (_, e, g), n in table.items() if e == "warn" and g == "silent")
    lines.append(
        f"right {right_total}/{len(CHARTS)}; false warnings {false_warnings}; "
        f"missed warnings {missed}"
    )
    assert right_total + false_warnings + missed == len(CHARTS)
    with capsys.disabled():
        print("\n".join(lines))


@pytest.mark.parametrize("chart", CHARTS, ids=[chart["id"] for chart in CHARTS])
def test_chart_resources_are_valid_r4(chart: dict[str, Any]) -> None:
    request = chart["request"]
    resources = [entry["resource"] for entry in request["context"]["draftOrders"]["entry"]]
    for value in request["prefetch"].values():
        if value.get("resourceType") == "Bundle":
            get_fhir_model_class("Bundle").model_validate(value)
            resources += [entry["resource"] for entry in value["entry"]]
        else:
            resources.append(value)
    for resource in resources:
        get_fhir_model_class(resource["resourceType"]).model_validate(resource)


def test_chart_files_are_canonical_json() -> None:
    """Two-space indented UTF-8 JSON with a final newline (stable diffs for reviewers)."""
    for path in CHART_FILES:
        text = path.read_text(encoding="utf-8")
        assert text == json.dumps(json.loads(text), indent=2, ensure_ascii=False) + "\n", path
