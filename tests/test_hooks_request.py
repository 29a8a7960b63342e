"""The hook request as hooks.parse_request reads it: each 400 names the element at fault, and
what real clients send (nulls for optional elements, Bundles without type, empty codings) is
tolerated."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from flask.testing import FlaskClient

from .conformance import assert_no_card
from .test_api_errors import MINIMAL, SELECT, outcome, with_change


@pytest.mark.parametrize(
    ("path", "value", "expression"),
    [
        (["hook"], KeyError, "hook"),
        (["hook"], "order-sign", "hook"),
        (["hook"], 7, "hook"),
        (["hookInstance"], KeyError, "hookInstance"),
        (["hookInstance"], "", "hookInstance"),
        (["context"], KeyError, "context"),
        (["context"], [], "context"),
        (["context", "patientId"], KeyError, "context.patientId"),
        (["context", "patientId"], {"id": 1}, "context.patientId"),
        (["context", "draftOrders"], KeyError, "context.draftOrders"),
        (["context", "draftOrders"], "Bundle", "context.draftOrders"),
        (["context", "draftOrders", "resourceType"], "Patient", "context.draftOrders.resourceType"),
        (["context", "draftOrders", "entry"], {}, "context.draftOrders.entry"),
        (["context", "draftOrders", "entry", 0], "x", "context.draftOrders.entry[0]"),
        (
            ["context", "draftOrders", "entry", 0, "resource"],
            KeyError,
            "context.draftOrders.entry[0].resource",
        ),
        (
            ["context", "draftOrders", "entry", 0, "resource", "code"],
            "PET",
            "context.draftOrders.entry[0].resource.code",
        ),
        (["context", "selections"], KeyError, "context.selections"),
        (["context", "selections"], [], "context.selections"),
        (["context", "selections", 0], 5, "context.selections[0]"),
        (["fhirServer"], "ftp://ehr.example.org/fhir", "fhirServer"),
        (["fhirAuthorization"], {"access_token": "x", "token_type": "Bearer"}, "fhirServer"),
        (["fhirAuthorization"], "token", "fhirAuthorization"),
        (["prefetch"], [1, 2], "prefetch"),
        (["prefetch", "conditions"], "none", "prefetch.conditions"),
    ],
)
def test_invalid_request_names_the_path(
    client: FlaskClient, path: list[Any], value: Any, expression: str
) -> None:
    body = outcome(client.post(SELECT, json=with_change(path, value)), 400)
    assert body["issue"][0]["expression"] == [expression]


def test_body_that_is_not_an_object(client: FlaskClient) -> None:
    outcome(client.post(SELECT, json=[MINIMAL]), 400)


def test_null_fhir_authorization_is_tolerated(client: FlaskClient) -> None:
    body = {**copy.deepcopy(MINIMAL), "fhirAuthorization": None}
    assert client.post(SELECT, json=body).status_code == 200


def test_sandbox_empty_coding_is_tolerated(client: FlaskClient) -> None:
    body = copy.deepcopy(MINIMAL)
    body["context"]["draftOrders"]["entry"][0]["resource"]["code"] = {"coding": [{}]}
    body["context"]["draftOrders"]["entry"][0]["resource"]["reasonCode"] = []
    del body["context"]["draftOrders"]["type"]
    response = client.post(SELECT, json=body)
    assert response.status_code == 200
    assert_no_card(response.get_json())
