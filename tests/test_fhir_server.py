"""The local FHIR R4 test server itself (tests/fhir_server): reads, searches, paging, loading and
the /_control endpoints that the service's failure tests rely on."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from .fhir_server import FhirTestServer, node_available

NOT_RUNNABLE = node_available()
pytestmark = pytest.mark.skipif(NOT_RUNNABLE is not None, reason=NOT_RUNNABLE or "")

ROOT = Path(__file__).resolve().parents[1]
EXTERNAL = Path(__file__).resolve().parents[2] / "shared" / "external"
SEED = ROOT / "fixtures" / "patients" / "seed-pet-ct.json"
SYNTHEA = EXTERNAL / "synthea" / "Joie_Morissette_c47db034-eb1c-4100-9448-4d4b3cb6535c.json"
SYNTHEA_PATIENT = "fdc61ab3-9be9-412c-b470-dfa65cb5e6e6"
STAGE_GROUP = "http://loinc.org|21908-9"
FHIR_JSON = "application/fhir+json"


def read_bundle(path: Path) -> dict[str, Any]:
    bundle: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return bundle


def resources(bundle: dict[str, Any], resource_type: str) -> list[dict[str, Any]]:
    return [
        e["resource"]
        for e in bundle.get("entry", [])
        if e.get("resource", {}).get("resourceType") == resource_type
    ]


def ids(searchset: dict[str, Any]) -> list[str]:
    return [e["resource"]["id"] for e in searchset.get("entry", [])]


@pytest.fixture(scope="module")
def server() -> Iterator[FhirTestServer]:
    with FhirTestServer() as srv:
        yield srv


@pytest.fixture(scope="module")
def seed(server: FhirTestServer) -> dict[str, Any]:
    """The seed patient's collection Bundle, loaded once into the module's server."""
    bundle = read_bundle(SEED)
    server.load(bundle)
    return bundle


@pytest.fixture(scope="module")
def seed_patient(seed: dict[str, Any]) -> str:
    patient_id: str = resources(seed, "Patient")[0]["id"]
    return patient_id


def get(server: FhirTestServer, path: str, **kwargs: Any) -> requests.Response:
    return server.session.get(f"{server.base}/{path}", timeout=30, **kwargs)


def test_metadata_is_an_r4_capability_statement_with_cors(server: FhirTestServer) -> None:
    response = get(server, "metadata")
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith(FHIR_JSON)
    assert response.headers["Access-Control-Allow-Origin"] == "*"
    body = response.json()
    assert body["resourceType"] == "CapabilityStatement"
    assert body["fhirVersion"] == "4.0.1"


def test_preflight_is_answered_without_a_body(server: FhirTestServer) -> None:
    response = server.session.options(f"{server.base}/Patient", timeout=30)
    assert response.status_code == 204
    assert "Authorization" in response.headers["Access-Control-Allow-Headers"]


def test_read_loaded_patient_and_404_for_unknown_id(
    server: FhirTestServer, seed: dict[str, Any], seed_patient: str
) -> None:
    response = get(server, f"Patient/{seed_patient}")
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith(FHIR_JSON)
    assert response.json()["id"] == seed_patient

    missing = get(server, "Patient/no-such-patient")
    assert missing.status_code == 404
    assert missing.headers["Content-Type"].startswith(FHIR_JSON)
    assert missing.json()["resourceType"] == "OperationOutcome"


@pytest.mark.parametrize("form", ["bare", "typed"])
def test_condition_search_by_patient(
    server: FhirTestServer, seed: dict[str, Any], seed_patient: str, form: str
) -> None:
    patient = seed_patient if form == "bare" else f"Patient/{seed_patient}"
    response = get(server, "Condition", params={"patient": patient})
    assert response.status_code == 200
    bundle = response.json()
    assert bundle["type"] == "searchset"
    assert sorted(ids(bundle)) == sorted(c["id"] for c in resources(seed, "Condition"))
    for entry in bundle["entry"]:
        resource = entry["resource"]
        assert entry["fullUrl"] == f"{server.base}/Condition/{resource['id']}"


def test_observation_search_by_patient_and_code(
    server: FhirTestServer, seed: dict[str, Any], seed_patient: str
) -> None:
    expected = [
        o["id"]
        for o in resources(seed, "Observation")
        if any(c.get("code") == "21908-9" for c in o["code"].get("coding", []))
    ]
    assert expected, "the seed fixture has a stage group Observation"
    response = get(server, "Observation", params={"patient": seed_patient, "code": STAGE_GROUP})
    assert response.status_code == 200
    assert ids(response.json()) == expected
    other = get(
        server, "Observation", params={"patient": seed_patient, "code": "http://loinc.org|0"}
    )
    assert ids(other.json()) == []


def test_form_post_search_matches_get(server: FhirTestServer, seed_patient: str) -> None:
    posted = server.session.post(
        f"{server.base}/Condition/_search", data={"patient": seed_patient}, timeout=30
    )
    assert posted.status_code == 200
    assert posted.headers["Content-Type"].startswith(FHIR_JSON)
    fetched = get(server, "Condition", params={"patient": seed_patient})
    assert ids(posted.json()) and ids(posted.json()) == ids(fetched.json())


def follow_pages(server: FhirTestServer, response: requests.Response) -> list[list[str]]:
    pages = []
    while True:
        assert response.status_code == 200
        bundle = response.json()
        pages.append(ids(bundle))
        next_url = next((x["url"] for x in bundle.get("link", []) if x["relation"] == "next"), None)
        if next_url is None:
            return pages
        assert next_url.startswith(f"{server.base}/")
        assert len(pages) < 20, "paging does not end"
        response = server.session.get(next_url, timeout=30)


@pytest.mark.parametrize("method", ["GET", "POST"])
def test_paging_returns_every_match_exactly_once(
    server: FhirTestServer, seed: dict[str, Any], seed_patient: str, method: str
) -> None:
    expected = sorted(p["id"] for p in resources(seed, "Procedure"))
    assert len(expected) > 4, "the seed fixture has enough Procedures for three pages"
    params = {"patient": seed_patient, "_count": "2"}
    if method == "GET":
        first = get(server, "Procedure", params=params)
    else:
        first = server.session.post(f"{server.base}/Procedure/_search", data=params, timeout=30)
    links = {x["relation"] for x in first.json()["link"]}
    assert links == {"self", "next"}
    assert first.json()["total"] == len(expected)

    pages = follow_pages(server, first)
    assert len(pages) == (len(expected) + 1) // 2
    assert all(len(page) == 2 for page in pages[:-1]) and 1 <= len(pages[-1]) <= 2
    seen = [i for page in pages for i in page]
    assert sorted(seen) == expected


def test_reloading_a_collection_keeps_its_ids(
    server: FhirTestServer, seed: dict[str, Any], seed_patient: str
) -> None:
    result = server.load(seed)
    assert result["type"] == "batch-response"
    response = get(server, "Condition", params={"patient": seed_patient})
    assert response.json()["total"] == len(resources(seed, "Condition"))


def test_required_token(server: FhirTestServer, seed_patient: str) -> None:
    server.require_token("abc")
    try:
        missing = get(server, f"Patient/{seed_patient}")
        assert missing.status_code == 401
        assert missing.headers["Content-Type"].startswith(FHIR_JSON)
        assert missing.json()["resourceType"] == "OperationOutcome"
        wrong = get(server, f"Patient/{seed_patient}", headers={"Authorization": "Bearer xyz"})
        assert wrong.status_code == 401
        right = get(server, f"Patient/{seed_patient}", headers={"Authorization": "Bearer abc"})
        assert right.status_code == 200
    finally:
        server.require_token(None)
    assert get(server, f"Patient/{seed_patient}").status_code == 200


def test_latency_delays_every_fhir_answer_and_changes_nothing_else(
    server: FhirTestServer, seed_patient: str
) -> None:
    """The bench's remote-server switch: with a latency set, an answer comes no sooner than
    that (a lower bound only: the suite asserts no speed) and is the same answer."""
    before = get(server, "Condition", params={"patient": seed_patient}).json()
    server.set_latency(300)
    try:
        started = time.monotonic()
        delayed = get(server, "Condition", params={"patient": seed_patient})
        waited = time.monotonic() - started
    finally:
        server.set_latency(0)
    assert delayed.status_code == 200
    assert ids(delayed.json()) == ids(before)
    assert waited >= 0.29
    for bad in (-1, "100", 2**31, None):
        answer = server.session.post(
            f"{server.root}/_control/latency", json={"ms": bad}, timeout=30
        )
        assert answer.status_code == 400, bad


def test_request_log_shows_the_authorization_header(
    server: FhirTestServer, seed_patient: str
) -> None:
    server.reset_log()
    get(
        server,
        "Condition",
        params={"patient": seed_patient},
        headers={"Authorization": "Bearer t1"},
    )
    get(server, f"Patient/{seed_patient}")
    log = server.requests()
    assert [(r["method"], r["authorization"]) for r in log] == [("GET", "Bearer t1"), ("GET", None)]
    assert log[0]["url"] == f"/fhir/Condition?patient={seed_patient}"
    assert log[1]["url"] == f"/fhir/Patient/{seed_patient}"
    server.reset_log()
    assert server.requests() == []


def test_synthea_transaction_bundle_loads_with_its_ids(server: FhirTestServer) -> None:
    if not SYNTHEA.exists():
        pytest.skip(f"{SYNTHEA} is absent: the shared Synthea data is not on this machine")
    bundle = read_bundle(SYNTHEA)
    assert bundle["type"] == "transaction"
    server.load(bundle)

    patient = get(server, f"Patient/{SYNTHEA_PATIENT}")
    assert patient.status_code == 200
    assert patient.json()["id"] == SYNTHEA_PATIENT
    observations = get(server, "Observation", params={"patient": SYNTHEA_PATIENT})
    found = observations.json()
    assert found["total"] == len(resources(bundle, "Observation"))
    # urn:uuid references were rewritten to the stable Type/id form
    subjects = {e["resource"]["subject"]["reference"] for e in found["entry"]}
    assert subjects == {f"Patient/{SYNTHEA_PATIENT}"}
