"""Prefetch values as real EHR clients send them (fhir/prefetch.py, fhir/gather.py): a search
that found nothing is not an error, an error is fetched again, another patient's data is refused.

Each test names the public source of the shape it sends (moved from test_interop.py, issue 17).
"""

from __future__ import annotations

import copy
import json
import logging
from typing import Any

import pytest
from flask.testing import FlaskClient

from cds_service.fhir import is_error_value, read_prefetch

from .conformance import assert_conformant, assert_no_card
from .conftest import external, load_json
from .test_interop import SELECT, SIGN, seed

# --- an empty search is not an error -----------------------------------------------------

# FHIR R4 example "bundle-search-warning" (http://hl7.org/fhir/R4/bundle-search-warning.json):
# an empty searchset whose only entry is an OperationOutcome with search.mode = outcome.
FHIR_SEARCH_WARNING: dict[str, Any] = {
    "resourceType": "Bundle",
    "id": "bundle-search-warning",
    "meta": {"lastUpdated": "2017-03-14T08:23:30+11:00"},
    "type": "searchset",
    "total": 0,
    "link": [{"relation": "self", "url": "https://example.org/fhir/Observation?patient=x"}],
    "entry": [
        {
            "fullUrl": "urn:uuid:2866af9c-137d-4458-a8a9-eeeec0ce5583",
            "resource": {
                "resourceType": "OperationOutcome",
                "id": "warning",
                "issue": [
                    {
                        "severity": "warning",
                        "code": "not-found",
                        "details": {"text": "There is no matching record"},
                    }
                ],
            },
            "search": {"mode": "outcome"},
        }
    ],
}


def epic_no_results() -> dict[str, Any]:
    """Epic's "4101 Resource request returns no results" (severity warning), as Epic's FHIR
    error-code table publishes it (https://fhir.epic.com/Documentation?docId=errorcodes),
    inside a searchset with search.mode = outcome."""
    return {
        "resourceType": "Bundle",
        "type": "searchset",
        "total": 0,
        "entry": [
            {
                "resource": {
                    "resourceType": "OperationOutcome",
                    "issue": [
                        {
                            "severity": "warning",
                            "code": "processing",
                            "details": {
                                "coding": [
                                    {
                                        "system": "urn:oid:1.2.840.114350.1.13.0.1.7.2.657369",
                                        "code": "4101",
                                        "display": "Resource request returns no results.",
                                    }
                                ],
                                "text": "Resource request returns no results.",
                            },
                        }
                    ],
                },
                "search": {"mode": "outcome"},
            }
        ],
    }


def with_severity(bundle: dict[str, Any], severity: str) -> dict[str, Any]:
    changed = copy.deepcopy(bundle)
    changed["entry"][0]["resource"]["issue"][0]["severity"] = severity
    return changed


@pytest.mark.parametrize("value", [FHIR_SEARCH_WARNING, epic_no_results()])
def test_search_notice_bundle_is_an_empty_result(client: FlaskClient, value: Any) -> None:
    assert not is_error_value(value)
    assert read_prefetch(value).resources == ()
    body = seed()  # no fhirServer: an error here would be a 412
    body["prefetch"]["observations"] = value
    response = client.post(SELECT, json=body)
    assert response.status_code == 200, response.get_data(as_text=True)
    assert_conformant(response.get_json())
    information = with_severity(value, "information")
    assert not is_error_value(information)


@pytest.mark.parametrize("severity", ["error", "fatal"])
def test_error_outcome_bundle_is_fetched_again(client: FlaskClient, severity: str) -> None:
    value = with_severity(FHIR_SEARCH_WARNING, severity)
    assert is_error_value(value)
    body = seed()
    body["prefetch"]["observations"] = value
    response = client.post(SELECT, json=body)
    assert response.status_code == 412  # no fhirServer to fetch it again from
    assert response.get_json()["issue"][0]["expression"] == ["prefetch.observations"]


def test_outcome_without_search_mode_or_severity_is_still_an_error() -> None:
    unmarked = copy.deepcopy(FHIR_SEARCH_WARNING)
    del unmarked["entry"][0]["search"]
    assert is_error_value(unmarked)
    no_severity = copy.deepcopy(FHIR_SEARCH_WARNING)
    del no_severity["entry"][0]["resource"]["issue"][0]["severity"]
    assert is_error_value(no_severity)
    assert is_error_value(FHIR_SEARCH_WARNING["entry"][0]["resource"])  # a bare outcome


# --- another patient's data --------------------------------------------------------------


def test_prefetch_patient_of_another_patient_is_refused(
    client: FlaskClient, caplog: pytest.LogCaptureFixture
) -> None:
    body = seed()
    body["prefetch"]["patient"]["id"] = "someone-else-4711"
    with caplog.at_level(logging.WARNING, logger="cds_service"):
        response = client.post(SELECT, json=body)
    assert response.status_code == 400
    outcome = response.get_json()
    assert outcome["resourceType"] == "OperationOutcome"
    assert outcome["issue"][0]["expression"] == ["prefetch.patient"]
    assert "someone-else-4711" not in outcome["issue"][0]["diagnostics"]
    logged = " ".join(json.dumps(getattr(r, "fields", {})) + r.getMessage() for r in caplog.records)
    assert "wrong-patient" in logged
    assert "someone-else-4711" not in logged and "seed-patient" not in logged


@pytest.mark.parametrize(
    "reference",
    ["Patient/someone-else", "https://ehr.example.org/fhir/Patient/someone-else/_history/2"],
)
def test_prefetch_condition_of_another_patient_is_refused(
    client: FlaskClient, reference: str
) -> None:
    body = seed()
    body["prefetch"]["conditions"]["entry"][0]["resource"]["subject"] = {"reference": reference}
    response = client.post(SELECT, json=body)
    assert response.status_code == 400
    assert response.get_json()["issue"][0]["expression"] == ["prefetch.conditions"]


def test_same_patient_by_absolute_reference_is_accepted(client: FlaskClient) -> None:
    body = seed()
    entry = body["prefetch"]["conditions"]["entry"][0]["resource"]
    entry["subject"] = {"reference": "https://ehr.example.org/fhir/Patient/seed-patient"}
    response = client.post(SELECT, json=body)
    assert response.status_code == 200
    assert len(response.get_json()["cards"]) == 1


def test_imaging_draft_for_another_patient_is_refused(client: FlaskClient) -> None:
    body = seed()
    order = body["context"]["draftOrders"]["entry"][0]["resource"]
    order["subject"] = {"reference": "Patient/someone-else"}
    response = client.post(SELECT, json=body)
    assert response.status_code == 400
    assert response.get_json()["issue"][0]["expression"] == [
        "context.draftOrders.entry[0].resource.subject"
    ]


@pytest.mark.parametrize(
    "name",
    ["inferno-crd-order-select-hook-request.json", "inferno-crd-order-sign-hook-request.json"],
)
def test_inferno_drafts_of_another_subject_are_not_refused(client: FlaskClient, name: str) -> None:
    """inferno-framework/davinci-crd-test-kit spec/fixtures: NutritionOrder + MedicationRequest
    drafts whose subject (Patient/1288992) is not context.patientId ("example"), a draftOrders
    Bundle without `type`, fhirServer and fhirAuthorization given. The service never reads
    those drafts (no imaging), so it does not judge whose they are: 200, no card, no query."""
    body = load_json(external(f"requests/{name}"))
    response = client.post(SELECT if body["hook"] == "order-select" else SIGN, json=body)
    assert response.status_code == 200, response.get_data(as_text=True)
    assert_no_card(response.get_json())
