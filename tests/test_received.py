"""Large request bodies are read for shape first (resources kept raw until their codes matter).

That fast path must never decide differently from parsing everything: these tests run every
fixture, the real Synthea records and a catalogue of odd shapes through both readings and
compare the facts, the verdicts and the HTTP answers.
"""

from __future__ import annotations

import copy
import gc
import json
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any

import orjson
import pytest
from flask import Flask
from hypothesis import given
from hypothesis import strategies as st

from cds_service import fhir, hooks
from cds_service.fhir import Record, build_facts, parse_orders, receive
from cds_service.gather import gather
from cds_service.hooks import decode_request, parse_request
from cds_service.rules import evaluate
from cds_service.state import get_state

from .conftest import CASES_DOC, EXTERNAL, FIXTURES, SERVICE_FOR_HOOK, TODAY, load_json
from .test_fuzz import REQUEST_SCHEMA, SERVICES, from_schema, fuzz, mutated_requests

SYNTHEA = sorted((EXTERNAL / "synthea").glob("*.json")) if (EXTERNAL / "synthea").is_dir() else []


def _decide(app: Flask, body: bytes, decode: Any) -> tuple[Any, list[tuple[str, str | None, str]]]:
    """Facts and (order, study, verdict, rule) for a body read with ``decode``."""
    with app.app_context():
        state = get_state()
        parsed = decode(body)
        service = state.services[SERVICE_FOR_HOOK[parsed["hook"]]]
        req = parse_request(parsed, service.hook)
        resources, _ = gather(req, service, state.http, state.executor, 2.5, [])
        knowledge = state.knowledge
        facts = build_facts(resources, knowledge.codes, {}, knowledge.text)
        drafts = parse_orders(req.draft_orders, None, knowledge.codes)
        selected = set(req.selections) if req.selections is not None else None
        orders = [o for o in drafts if selected is None or o.reference in selected]
        findings = evaluate(facts, orders, knowledge, date.fromisoformat(TODAY), state.windows)
        return facts, [(f.order.reference, f.study, f"{f.verdict}:{f.reason}") for f in findings]


@pytest.fixture()
def raw_always(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Take the shape-first path whatever the body's size (fixtures are small)."""
    monkeypatch.setattr(hooks, "RAW_READ_FROM", 0)
    yield


def _bytes(path: Path) -> bytes:
    return path.read_bytes()


@pytest.mark.parametrize("case", CASES_DOC["cases"], ids=[c["name"] for c in CASES_DOC["cases"]])
def test_every_fixture_reads_the_same_both_ways(
    app: Flask, raw_always: None, case: dict[str, Any]
) -> None:
    body = _bytes(FIXTURES / case["request"])
    assert _decide(app, body, decode_request) == _decide(app, body, orjson.loads)


def _synthea_body(path: Path) -> bytes:
    """A Synthea bundle as an order-select call prefetching the whole record (no filtering)."""
    bundle = load_json(path)
    resources = [e["resource"] for e in bundle["entry"]]
    patient = next(r for r in resources if r["resourceType"] == "Patient")

    def of(*types: str) -> dict[str, Any]:
        entries = [{"resource": r} for r in resources if r["resourceType"] in types]
        return {"resourceType": "Bundle", "type": "searchset", "entry": entries}

    order = {
        "resourceType": "ServiceRequest",
        "id": "pet",
        "status": "draft",
        "intent": "order",
        "code": {"coding": [{"system": "http://www.ama-assn.org/go/cpt", "code": "78815"}]},
        "subject": {"reference": f"Patient/{patient['id']}"},
    }
    return orjson.dumps(
        {
            "hook": "order-select",
            "hookInstance": "d1577c69-dfbe-44ad-ba6d-3e05e953b2ea",
            "context": {
                "userId": "Practitioner/1",
                "patientId": patient["id"],
                "selections": ["ServiceRequest/pet"],
                "draftOrders": {"resourceType": "Bundle", "entry": [{"resource": order}]},
            },
            "prefetch": {
                "patient": patient,
                "conditions": of("Condition"),
                "observations": of("Observation"),
                "procedures": of("Procedure", "DiagnosticReport"),
                "medications": of("MedicationRequest"),
            },
        }
    )


@pytest.mark.skipif(not SYNTHEA, reason=f"{EXTERNAL / 'synthea'} is absent (shared data)")
@pytest.mark.parametrize("path", SYNTHEA, ids=[p.stem for p in SYNTHEA])
def test_real_synthea_records_read_the_same_both_ways(app: Flask, path: Path) -> None:
    body = _synthea_body(path)
    assert len(body) >= hooks.RAW_READ_FROM  # the default threshold: these take the fast path
    fast, slow = _decide(app, body, decode_request), _decide(app, body, orjson.loads)
    assert fast == slow


# --------------------------------------------------------------------------------------------
# Odd shapes: each is read in full and leniently, exactly as the plain path reads it


def _seed() -> dict[str, Any]:
    body: dict[str, Any] = load_json(FIXTURES / "requests" / "seed-pet-ct.json")
    return body


def _with(mutate: Any) -> bytes:
    body = copy.deepcopy(_seed())
    mutate(body)
    return json.dumps(body).encode()


def _entries(body: dict[str, Any], key: str) -> list[dict[str, Any]]:
    entries: list[dict[str, Any]] = body["prefetch"][key]["entry"]
    return entries


ODD_SHAPES: dict[str, Any] = {
    "coding-a-string": lambda b: _entries(b, "conditions")[0]["resource"]["code"].update(
        coding="C50.911"
    ),
    "coding-item-a-string": lambda b: _entries(b, "conditions")[0]["resource"]["code"].update(
        coding=["C50.911"]
    ),
    "code-a-list": lambda b: _entries(b, "observations")[0]["resource"].update(code=[1]),
    "resource-a-number": lambda b: _entries(b, "conditions").append({"resource": 5}),
    "resource-null": lambda b: _entries(b, "conditions").append({"resource": None}),
    "resource-missing": lambda b: _entries(b, "conditions").append({"fullUrl": "urn:x"}),
    "resource-empty": lambda b: _entries(b, "conditions").append({"resource": {}}),
    "resource-type-a-list": lambda b: _entries(b, "conditions").append(
        {"resource": {"resourceType": ["Condition"], "code": {"coding": []}}}
    ),
    "entry-an-object": lambda b: b["prefetch"]["procedures"].update(entry={"resource": {}}),
    "entry-item-a-string": lambda b: b["prefetch"]["procedures"]["entry"].append("x"),
    "meta-profile-a-string": lambda b: _entries(b, "conditions")[0]["resource"].update(
        meta={
            "profile": "http://hl7.org/fhir/us/mcode/StructureDefinition/"
            "mcode-secondary-cancer-condition"
        }
    ),
    "mcode-secondary-profile": lambda b: _entries(b, "conditions").append(
        {
            "resource": {
                "resourceType": "Condition",
                "id": "sec",
                "meta": {
                    "profile": [
                        "http://hl7.org/fhir/us/mcode/StructureDefinition/"
                        "mcode-secondary-cancer-condition|4.0.0"
                    ]
                },
                "code": {"coding": [{"system": "http://example.org/local", "code": "x"}]},
                "subject": {"reference": "Patient/x"},
            }
        }
    ),
    "stage-an-object": lambda b: _entries(b, "conditions")[0]["resource"].update(
        stage={"summary": {"text": "Stage IV"}}
    ),
    "stage-text-iv": lambda b: _entries(b, "conditions")[0]["resource"].update(
        stage=[{"summary": {"text": "Stage IV"}}]
    ),
    "nested-bundle": lambda b: _entries(b, "observations").append(
        {"resource": copy.deepcopy(b["prefetch"]["conditions"])}
    ),
    "operation-outcome-entry": lambda b: _entries(b, "procedures").append(
        {"resource": {"resourceType": "OperationOutcome", "issue": []}}
    ),
    "prefetch-value-null": lambda b: b["prefetch"].update(medications=None),
    "prefetch-value-resource": lambda b: b["prefetch"].update(
        medications=copy.deepcopy(_entries(b, "conditions")[0]["resource"])
    ),
    "value-codeable-concept-only": lambda b: _entries(b, "observations").append(
        {
            "resource": {
                "resourceType": "Observation",
                "id": "v",
                "status": "final",
                "code": {"coding": [{"system": "http://example.org/local", "code": "q"}]},
                "valueCodeableConcept": _entries(b, "conditions")[0]["resource"]["code"],
            }
        }
    ),
    "system-an-object": lambda b: _entries(b, "conditions")[0]["resource"]["code"]["coding"][
        0
    ].update(system={"x": 1}),
}


@pytest.mark.parametrize("name", sorted(ODD_SHAPES))
def test_odd_shapes_read_the_same_both_ways(app: Flask, raw_always: None, name: str) -> None:
    body = _with(ODD_SHAPES[name])
    assert _decide(app, body, decode_request) == _decide(app, body, orjson.loads)


@pytest.mark.parametrize(
    "name", ["prefetch-a-list", "prefetch-value-a-string", "prefetch-value-untyped", "error-only"]
)
def test_refusals_are_the_same_both_ways(
    app: Flask, monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    def mutate(body: dict[str, Any]) -> None:
        if name == "prefetch-a-list":
            body["prefetch"] = []
        elif name == "prefetch-value-a-string":
            body["prefetch"]["conditions"] = "none"
        elif name == "prefetch-value-untyped":
            body["prefetch"]["conditions"] = {"entry": []}
        else:  # an OperationOutcome-only Bundle for a required key, and no fhirServer: 412
            body["prefetch"]["conditions"] = {
                "resourceType": "Bundle",
                "entry": [{"resource": {"resourceType": "OperationOutcome", "issue": []}}],
            }

    data = _with(mutate)
    answers = []
    for threshold in (0, 10**9):
        monkeypatch.setattr(hooks, "RAW_READ_FROM", threshold)
        with app.test_client() as client:
            answer = client.post(
                "/cds-services/breast-surveillance-order-select",
                data=data,
                content_type="application/json",
            )
        answers.append((answer.status_code, answer.get_json()))
    assert answers[0] == answers[1]
    assert answers[0][0] in (400, 412)
    assert answers[0][1]["resourceType"] == "OperationOutcome"


def _post(app: Flask, data: bytes) -> Any:
    with app.test_client() as client:
        return client.post(
            "/cds-services/breast-surveillance-order-select",
            data=data,
            content_type="application/json",
        )


def test_large_invalid_json_is_the_same_400(app: Flask) -> None:
    data = _with(lambda b: None)[:-1] + b" " * hooks.RAW_READ_FROM
    answer = _post(app, data)
    assert answer.status_code == 400
    assert "not valid JSON" in answer.get_json()["issue"][0]["diagnostics"]


@pytest.mark.parametrize("where", ["context", "read-record", "unread-record"])
def test_json_the_parser_refuses(app: Flask, raw_always: None, where: str) -> None:
    """A lone surrogate escape: the plain parser refuses the body, and so does the fast path,
    wherever it is (msgspec checks escapes even in what it skips; a record the fast path
    parses later refuses it too): a 400, never a 500."""
    body = _seed()
    odd = "\ud800"
    if where == "context":
        body["context"]["draftOrders"]["entry"][0]["resource"]["note"] = [{"text": odd}]
    elif where == "read-record":
        _entries(body, "conditions")[0]["resource"]["note"] = [{"text": odd}]
    else:
        _entries(body, "conditions").append(
            {"resource": {"resourceType": "Encounter", "id": "e", "status": odd}}
        )
    data = json.dumps(body).encode()
    assert b"\\ud800" in data
    answer = _post(app, data)
    assert answer.status_code == 400
    assert "not valid JSON" in answer.get_json()["issue"][0]["diagnostics"]


def test_irrelevant_resources_are_never_parsed(app: Flask) -> None:
    """The point of the fast path: a resource whose codes map to nothing stays raw."""
    filler = {
        "resourceType": "Observation",
        "id": "f",
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},  # heart rate
        "valueQuantity": {"value": 70},
    }
    bundle = {"resourceType": "Bundle", "entry": [{"resource": filler}] * 3}
    received = receive(orjson.dumps(bundle))
    assert received is not None and len(received.items) == 3
    with app.app_context():
        codes = get_state().knowledge.codes
        assert all(isinstance(r, Record) and not r.worth_reading(codes) for r in received.items)
        assert build_facts({"observations": list(received.items)}, codes).observations == ()


def test_paging_link_and_error_flags() -> None:
    page = {
        "resourceType": "Bundle",
        "link": [{"relation": "self", "url": "a"}, {"relation": "next", "url": "b?page=2"}],
        "entry": [{"resource": {"resourceType": "OperationOutcome", "issue": []}}],
    }
    received = receive(orjson.dumps(page))
    assert received is not None
    assert (received.resource_type, received.next, received.error, received.items) == (
        "Bundle",
        "b?page=2",
        True,
        (),
    )
    assert receive(b"null") is None


# --------------------------------------------------------------------------------------------
# Property: mutated fixture requests get the same answer whichever way they are read


def _answer(app: Flask, service: str, data: bytes, threshold: int) -> tuple[int, Any]:
    original = hooks.RAW_READ_FROM
    hooks.RAW_READ_FROM = threshold
    try:
        with app.test_client() as client:
            response = client.post(
                f"/cds-services/{service}", data=data, content_type="application/json"
            )
    finally:
        hooks.RAW_READ_FROM = original
    body = response.get_json()
    if response.status_code != 200:
        return response.status_code, body
    cards = [
        (c["indicator"], c["summary"], c.get("extension")) for c in body["cards"]
    ]  # uuids and consult ids differ per call
    for _, _, extension in cards:
        if extension:
            extension.get("breast-surveillance-cds", {}).pop("consultId", None)
    return 200, cards


@fuzz(300)
@given(body=mutated_requests(), service=st.sampled_from(SERVICES))
def test_mutated_requests_get_the_same_answer_both_ways(
    fuzz_app: Flask, body: Any, service: str
) -> None:
    data = json.dumps(body).encode()
    fast, plain = _answer(fuzz_app, service, data, 0), _answer(fuzz_app, service, data, 10**9)
    assert fast == plain


@pytest.mark.parametrize("read", [True, False])
def test_a_number_the_parser_refuses(app: Flask, raw_always: None, read: bool) -> None:
    """1e999 (infinite as a double): the plain parser refuses the body. The fast path refuses
    it in a record it parses (a 400, never a 500) and, the one intended difference, does not
    see it in a record the rules never read (that record is never parsed)."""
    body = _seed()
    if read:
        _entries(body, "conditions")[0]["resource"]["onsetAge"] = {"value": 0}
    else:
        _entries(body, "conditions").append(
            {"resource": {"resourceType": "Encounter", "id": "e", "length": {"value": 0}}}
        )
    data = json.dumps(body).encode().replace(b'{"value": 0}', b'{"value": 1e999}')
    answer = _post(app, data)
    if read:
        assert answer.status_code == 400
        assert "not valid JSON" in answer.get_json()["issue"][0]["diagnostics"]
    else:
        assert answer.status_code == 200 and answer.get_json()["cards"]


@pytest.mark.parametrize("depth", [900, 1000, 1100, 20_000])
@pytest.mark.parametrize("where", ["context", "record", "prefetch"])
def test_deep_nesting_answers_the_same_both_ways(app: Flask, where: str, depth: int) -> None:
    """msgspec recurses less deep than orjson parses (1,024 levels): never a 500, and the same
    answer as the plain reading (the body is padded past the fast-path threshold)."""
    text = json.dumps(_seed())
    nested = "[" * depth + "]" * depth
    if where == "context":
        text = text.replace('"context": {', '"context": {"deep": ' + nested + ", ", 1)
    elif where == "record":
        text = text.replace(
            '"resourceType": "Condition",',
            '"resourceType": "Condition", "deep": ' + nested + ",",
            1,
        )
    else:
        text = text.replace('"prefetch": {', '"prefetch": {"zz": ' + nested + ", ", 1)
    data = (text + " " * hooks.RAW_READ_FROM).encode()
    fast = _answer(app, "breast-surveillance-order-select", data, 0)
    plain = _answer(app, "breast-surveillance-order-select", data, 10**9)
    assert fast[0] < 500
    assert fast == plain


@fuzz(300)
@given(
    data=st.binary(max_size=300)
    | st.text(max_size=300).map(str.encode)
    | from_schema(REQUEST_SCHEMA).map(lambda body: json.dumps(body).encode())
)
def test_generated_bodies_get_the_same_answer_both_ways(fuzz_app: Flask, data: bytes) -> None:
    service = "breast-surveillance-order-select"
    fast, plain = _answer(fuzz_app, service, data, 0), _answer(fuzz_app, service, data, 10**9)
    assert fast[0] < 500
    assert fast == plain


UNREACHABLE = "http://127.0.0.1:9/none"  # on fuzz_app's allow-list; nothing listens there


@pytest.mark.parametrize(
    "links",
    [
        [{"relation": "next", "url": ""}, {"relation": "next", "url": UNREACHABLE + "/p2"}],
        [{"relation": "next", "url": 5}, {"relation": "next", "url": UNREACHABLE + "/p2"}],
        [{"relation": "self", "url": "x"}, {"relation": "next", "url": UNREACHABLE + "/p2"}],
        "single-resource",
    ],
)
def test_next_links_are_followed_the_same_both_ways(fuzz_app: Flask, links: Any) -> None:
    """The first link whose relation is "next" decides, as in next_link (found in review: the
    fast path used to skip one without a usable url, and ignored links on a bare resource)."""
    body = _seed()
    body["fhirServer"] = UNREACHABLE
    if links == "single-resource":
        resource = _entries(body, "conditions")[0]["resource"]
        body["prefetch"]["conditions"] = {
            **resource,
            "link": [{"relation": "next", "url": UNREACHABLE + "/p2"}],
        }
    else:
        body["prefetch"]["conditions"]["link"] = links
    data = (json.dumps(body) + " " * hooks.RAW_READ_FROM).encode()
    service = "breast-surveillance-order-select"
    assert _answer(fuzz_app, service, data, 0) == _answer(fuzz_app, service, data, 10**9)


@pytest.mark.parametrize("where", ["unread-record", "link", "prefetch-key", "read-record"])
def test_invalid_utf8_is_the_same_400(app: Flask, where: str) -> None:
    """A Latin-1 byte in a large body: 400 from both readings, never a 500 (found in review:
    msgspec raised UnicodeDecodeError where it decoded the string, and skipped it elsewhere)."""
    body = _seed()
    marker = "MARKER-E9"
    if where == "unread-record":
        _entries(body, "conditions").append(
            {"resource": {"resourceType": "Encounter", "id": "e", "status": marker}}
        )
    elif where == "link":
        body["prefetch"]["conditions"]["link"] = [{"relation": marker, "url": "x"}]
    elif where == "prefetch-key":
        body["prefetch"][marker] = None
    else:
        _entries(body, "conditions")[0]["resource"]["code"]["coding"][0]["system"] += marker
    text = json.dumps(body) + " " * hooks.RAW_READ_FROM
    data = text.encode().replace(marker.encode(), b"caf\xe9")
    service = "breast-surveillance-order-select"
    fast, plain = _answer(app, service, data, 0), _answer(app, service, data, 10**9)
    assert fast == plain
    assert fast[0] == 400


def test_sources_name_the_same_places_both_ways(app: Flask, raw_always: None) -> None:
    """Where a cited record came from (the invalid-resource log names it) is the same on both
    paths, also after an entry without a type (found in review: one path counted it)."""
    body = _seed()
    _entries(body, "conditions").insert(0, {"resource": {"id": "no-type"}})
    _entries(body, "conditions").insert(0, {"resource": {"resourceType": None, "id": "null"}})
    data = json.dumps(body).encode()
    places = []
    for decode in (decode_request, orjson.loads):
        with app.app_context():
            state = get_state()
            service = state.services["breast-surveillance-order-select"]
            req = parse_request(decode(data), service.hook)
            resources, _ = gather(req, service, state.http, state.executor, 2.5, [])
            sources: dict[Any, Any] = {}
            build_facts(resources, state.knowledge.codes, sources)
            places.append({key: where for key, (where, _) in sources.items()})
            assert len(resources["conditions"]) == len(_entries(body, "conditions")) - 2
    assert places[0] == places[1]
    assert any(where.startswith("prefetch.conditions[0]") for where in places[0].values())


def test_probes_stay_out_of_the_garbage_collector() -> None:
    """The probe structs of a received Bundle (tens of thousands on a large record) are not
    tracked by the collector; JSON-decoded values cannot form a cycle."""
    bundle = {
        "resourceType": "Bundle",
        "entry": [
            {
                "resource": {
                    "resourceType": "Condition",
                    "code": {"coding": [{"system": "http://snomed.info/sct", "code": "1"}]},
                    "stage": [{"summary": {"coding": [{"system": "x", "code": "y"}]}}],
                    "meta": {"profile": ["http://example.org"]},
                }
            }
        ],
        "link": [{"relation": "next", "url": "http://example.org/next"}],
    }
    received = receive(orjson.dumps(bundle))
    assert received is not None and received.next == "http://example.org/next"
    [record] = received.items
    assert isinstance(record, Record)
    probe = record.probe
    assert probe.code is not None and probe.code.coding and probe.stage and probe.meta
    structs = [probe, probe.code, probe.code.coding[0], probe.stage[0], probe.meta]
    shape = fhir._SHAPE.decode(orjson.dumps(bundle))
    probed = fhir._PROBED_BUNDLE.decode(orjson.dumps(bundle))
    assert shape.entry and shape.link and probed.entry
    structs += [shape, shape.entry[0], shape.link[0], probed, probed.entry[0]]
    assert not any(gc.is_tracked(s) for s in structs)
