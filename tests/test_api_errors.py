"""Every bad input gets a 4xx with a FHIR OperationOutcome body, never a 5xx."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
from fhir.resources.R4B.operationoutcome import OperationOutcome
from flask.testing import FlaskClient

from .conformance import assert_no_card

SELECT = "/cds-services/breast-surveillance-order-select"
SIGN = "/cds-services/breast-surveillance-order-sign"

PET_CT = {
    "resourceType": "ServiceRequest",
    "id": "sr-1",
    "status": "draft",
    "intent": "order",
    "subject": {"reference": "Patient/p1"},
    "code": {
        "coding": [{"system": "http://www.ama-assn.org/go/cpt", "code": "78815"}],
        "text": "PET/CT skull base to mid-thigh",
    },
}
MINIMAL: dict[str, Any] = {
    "hook": "order-select",
    "hookInstance": "d1577c69-dfbe-44ad-ba6d-3e05e953b2ea",
    "context": {
        "userId": "Practitioner/1",
        "patientId": "p1",
        "selections": ["ServiceRequest/sr-1"],
        "draftOrders": {
            "resourceType": "Bundle",
            "type": "collection",
            "entry": [{"resource": PET_CT}],
        },
    },
    "prefetch": {
        "patient": None,
        "conditions": None,
        "observations": None,
        "procedures": None,
        "medications": None,
    },
}


def outcome(response: Any, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.get_data(as_text=True)
    body = response.get_json(force=True)
    OperationOutcome.model_validate(body)  # a real FHIR OperationOutcome
    assert body["issue"][0]["severity"] == "error"
    assert "Traceback" not in response.get_data(as_text=True)
    return body


def with_change(path: list[Any], value: Any) -> dict[str, Any]:
    body = copy.deepcopy(MINIMAL)
    node: Any = body
    for key in path[:-1]:
        node = node[key]
    if value is KeyError:
        del node[path[-1]]
    else:
        node[path[-1]] = value
    return body


def test_minimal_request_is_accepted(client: FlaskClient) -> None:
    response = client.post(SELECT, json=MINIMAL)
    assert response.status_code == 200
    assert_no_card(response.get_json())  # no breast cancer on record


@pytest.mark.parametrize(
    "data",
    [b"{", b"not json", b"", b"   ", b"\xff\xfe", b'{"a": NaN}', b"[" * 5000 + b"]" * 5000],
    ids=["truncated", "text", "empty", "blank", "bad-utf8", "nan", "deep-nesting"],
)
def test_malformed_json_is_400(client: FlaskClient, data: bytes) -> None:
    outcome(client.post(SELECT, data=data, content_type="application/json"), 400)


def test_unknown_service_is_404(client: FlaskClient) -> None:
    outcome(client.post("/cds-services/no-such-service", json=MINIMAL), 404)


def test_unknown_path_is_404(client: FlaskClient) -> None:
    outcome(client.get("/nothing-here"), 404)


def test_wrong_method_is_405(client: FlaskClient) -> None:
    response = client.get(SELECT)
    outcome(response, 405)
    assert "POST" in response.headers["Allow"]
    outcome(client.delete("/cds-services"), 405)


def test_too_large_is_413(client: FlaskClient) -> None:
    big = json.dumps({**MINIMAL, "padding": "x" * (6 * 1024 * 1024)})
    outcome(client.post(SELECT, data=big, content_type="application/json"), 413)


def test_missing_prefetch_without_fhir_server_is_412(client: FlaskClient) -> None:
    body = with_change(["prefetch"], KeyError)
    result = outcome(client.post(SELECT, json=body), 412)
    assert "prefetch.conditions" in result["issue"][0]["expression"]
    assert "fhirServer" in result["issue"][0]["diagnostics"]


def test_no_data_needed_for_orders_that_cannot_get_a_card(client: FlaskClient) -> None:
    """A mammogram can never get a card, so a request without prefetch is still answered."""
    body = with_change(["prefetch"], KeyError)
    body["context"]["draftOrders"]["entry"][0]["resource"]["code"] = {
        "coding": [{"system": "http://www.ama-assn.org/go/cpt", "code": "77067"}]
    }
    response = client.post(SELECT, json=body)
    assert response.status_code == 200
    assert_no_card(response.get_json())


def test_operation_outcome_in_prefetch_without_server_is_412(client: FlaskClient) -> None:
    body = copy.deepcopy(MINIMAL)
    body["prefetch"]["conditions"] = {
        "resourceType": "OperationOutcome",
        "issue": [{"severity": "error", "code": "timeout"}],
    }
    result = outcome(client.post(SELECT, json=body), 412)
    assert result["issue"][0]["expression"] == ["prefetch.conditions"]


def test_invalid_prefetch_resource_is_read_leniently(client: FlaskClient) -> None:
    """A breast cancer Condition with a broken date still counts, and nothing is a 500."""
    body = copy.deepcopy(MINIMAL)
    body["prefetch"]["conditions"] = {
        "resourceType": "Bundle",
        "type": "searchset",
        "entry": [
            {
                "resource": {
                    "resourceType": "Condition",
                    "id": "c1",
                    "subject": {"reference": "Patient/p1"},
                    "code": {"coding": [{"system": "http://snomed.info/sct", "code": "254837009"}]},
                    "onsetDateTime": "last spring",
                    "clinicalStatus": {"coding": [{"code": "active"}]},
                }
            }
        ],
    }
    response = client.post(SELECT, json=body)
    assert response.status_code == 200
    # An invasive cancer of unknown date with no sign of completed treatment: no warning.
    assert_no_card(response.get_json())


def test_unexpected_error_is_a_generic_500_and_logged(caplog: pytest.LogCaptureFixture) -> None:
    from cds_service import create_app

    app = create_app({"today": "2026-11-25"})

    @app.get("/boom")
    def boom() -> str:
        raise RuntimeError("secret detail")

    with caplog.at_level("ERROR"):
        response = app.test_client().get("/boom")
    body = outcome(response, 500)
    assert "secret detail" not in response.get_data(as_text=True)
    assert body["issue"][0]["code"] == "exception"
    assert any("secret detail" in (r.exc_text or "") or r.exc_info for r in caplog.records)


def test_logs_carry_no_patient_data_or_token(
    client: FlaskClient, caplog: pytest.LogCaptureFixture
) -> None:
    """One log line per call: ids of rules and studies, never names, codes' labels or tokens."""
    from .conftest import CASES_DOC, FIXTURES, load_json

    case = next(c for c in CASES_DOC["cases"] if c["name"] == "seed-pet-ct")
    body = load_json(FIXTURES / case["request"])
    body["fhirServer"] = "http://127.0.0.1:9/fhir"
    body["fhirAuthorization"] = {
        "access_token": "SECRET-TOKEN-123",
        "token_type": "Bearer",
        "expires_in": 300,
        "scope": "patient/*.read",
        "subject": "cds-service",
    }
    # A broken resource makes the validator log too.
    body["prefetch"]["conditions"]["entry"][0]["resource"]["onsetDateTime"] = "not a date"
    with caplog.at_level("DEBUG"):
        response = client.post(SELECT, json=body)
    assert response.status_code == 200
    from cds_service.logs import JsonFormatter

    text = "\n".join(JsonFormatter().format(r) for r in caplog.records)
    assert '"hookInstance"' in text and "pet-ct" in text
    patient = body["prefetch"]["patient"]
    for secret in (
        "SECRET-TOKEN-123",
        body["context"]["patientId"],
        patient["name"][0]["family"],
        patient["birthDate"],
        "Invasive ductal carcinoma",
        "not a date",
    ):
        assert secret not in text


def test_mcode_secondary_profile_counts_as_metastatic_whatever_its_code(
    client: FlaskClient,
) -> None:
    from .conftest import CASES_DOC, FIXTURES, load_json

    case = next(c for c in CASES_DOC["cases"] if c["name"] == "seed-pet-ct")
    body = load_json(FIXTURES / case["request"])
    assert client.post(SELECT, json=body).get_json()["cards"]
    body["prefetch"]["conditions"]["entry"].append(
        {
            "resource": {
                "resourceType": "Condition",
                "id": "secondary-1",
                "meta": {
                    "profile": [
                        "http://hl7.org/fhir/us/mcode/StructureDefinition/mcode-secondary-cancer-condition"
                    ]
                },
                "subject": {"reference": f"Patient/{body['context']['patientId']}"},
                "code": {"text": "Metastasis to an unusual site (local code)"},
                "recordedDate": "2025-02-01",
            }
        }
    )
    assert_no_card(client.post(SELECT, json=body).get_json())


def test_a_log_record_stays_one_line_whatever_the_client_sent() -> None:
    """Keys a client sent can reach the log (the elements of an invalid resource): characters
    JSON leaves raw but readers take for line breaks are escaped, and the values survive."""
    import logging

    from cds_service.logs import JsonFormatter

    sent = "code.coding.1.a\x85b\u2028c\u2029d\x1ce\u00e9"
    record = logging.LogRecord("cds_service.fhir", logging.WARNING, __file__, 1, "m", None, None)
    record.fields = {"elements": [sent]}
    line = JsonFormatter().format(record)
    assert line.splitlines() == [line]
    assert json.loads(line)["elements"] == [sent]


def _sign_seed() -> dict[str, Any]:
    from .conftest import FIXTURES, load_json

    body: dict[str, Any] = load_json(FIXTURES / "requests" / "seed-pet-ct-order-sign.json")
    return body


def _with_lab_order(body: dict[str, Any]) -> None:
    body["context"]["draftOrders"]["entry"].append(
        {
            "resource": {
                "resourceType": "ServiceRequest",
                "id": "lab_order_1",  # "_": not a FHIR id, allowed by CDS Hooks' ord-1
                "status": "draft",
                "intent": "order",
                "code": {"coding": [{"system": "http://loinc.org", "code": "24323-8"}]},
                "subject": {"reference": f"Patient/{body['context']['patientId']}"},
            }
        }
    )


def _pet(body: dict[str, Any]) -> dict[str, Any]:
    resource: dict[str, Any] = body["context"]["draftOrders"]["entry"][0]["resource"]
    return resource


@pytest.mark.parametrize(
    "change",
    [
        _with_lab_order,
        lambda b: _pet(b)["code"]["coding"][0].update(display=""),
        lambda b: _pet(b)["code"].update(text="PET/CT SKULL BASE TO MID-THIGH (FDG)  "),
        lambda b: _pet(b).update(note=[]),
    ],
    ids=["underscore-id-on-another-order", "empty-display", "padded-text", "empty-list"],
)
def test_tolerable_order_deviations_do_not_refuse_the_call(
    client: FlaskClient, change: Any
) -> None:
    """What real clients send and the rules read without harm is tolerated (an independent
    review found one lab order with an id like "lab_order_1" refusing a whole order-sign, the
    PET/CT never judged); the PET/CT still gets its warning."""
    body = _sign_seed()
    change(body)
    response = client.post(SIGN, json=body)
    assert response.status_code == 200, response.get_json()
    assert [c["indicator"] for c in response.get_json()["cards"]] == ["warning"]


@pytest.mark.parametrize(
    ("change", "element"),
    [
        (lambda b: _pet(b).update(id="bad id with spaces"), "id"),
        (lambda b: _pet(b).update(code="PET"), "code"),
        (lambda b: _pet(b)["code"].update(coding=[{"system": 5, "code": "78815"}]), "code"),
    ],
    ids=["id-with-spaces", "code-not-an-object", "system-not-a-string"],
)
def test_orders_still_wrong_once_tolerated_are_refused(
    client: FlaskClient, change: Any, element: str
) -> None:
    body = _sign_seed()
    change(body)
    outcome_body = outcome(client.post(SIGN, json=body), 400)
    assert outcome_body["issue"][0]["expression"][0].startswith(
        f"context.draftOrders.entry[0].resource.{element}"
    )
