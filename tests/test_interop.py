"""Issue 17: what real EHR clients send, the right patient, and no repeated alert.

Each test names the public source of the shape it sends. Shapes under ../shared/external/requests
are the files themselves (see that folder's README for their repositories and commits); the
others are rebuilt here from the public text cited beside them.
"""

from __future__ import annotations

import copy
import logging
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jwt
import pytest
from flask import Flask
from flask.testing import FlaskClient

from cds_service import create_app
from cds_service.fhir.gather import insecure_for_token
from cds_service.store import Store

from .conformance import ratings
from .conftest import FIXTURES, TODAY, load_json
from .test_auth import BASE, ISS, RSA_KEY, public_jwk, write_issuers

SELECT = "/cds-services/breast-surveillance-order-select"
SIGN = "/cds-services/breast-surveillance-order-sign"
NS = "org.example.breast-surveillance-cds"
PAMA = "http://fhir.org/argonaut/Extension/"


def seed(name: str = "seed-pet-ct") -> dict[str, Any]:
    body: dict[str, Any] = load_json(FIXTURES / "requests" / f"{name}.json")
    body["hookInstance"] = str(uuid.uuid4())
    return body


def as_sign(body: dict[str, Any]) -> dict[str, Any]:
    sign = copy.deepcopy(body)
    sign["hook"] = "order-sign"
    sign["hookInstance"] = str(uuid.uuid4())
    sign["context"].pop("selections", None)
    return sign


# --- 5. repeat suppression (SQLite and PostgreSQL) ---------------------------------------


@pytest.fixture()
def store_app(db_url: str, tmp_path: Path) -> Iterator[Any]:
    apps: list[Flask] = []

    def make(site: str = "") -> Flask:
        config = tmp_path / f"site-{len(apps)}.toml"
        config.write_text(site)
        app = create_app(
            {
                "today": TODAY,
                "database_url": db_url,
                "instance_dir": str(tmp_path),
                "config_file": str(config),
            }
        )
        apps.append(app)
        return app

    yield make
    for app in apps:
        store: Store = app.extensions["cds_service"].store
        store.close()


def audit_rules(app: Flask) -> list[tuple[str, str, str]]:
    from sqlalchemy import select

    from cds_service.store import AuditedVerdict, Call

    store: Store = app.extensions["cds_service"].store
    with store.session() as s:
        rows = s.execute(
            select(Call.hook, AuditedVerdict.verdict, AuditedVerdict.rule)
            .join(Call, AuditedVerdict.call_id == Call.id)
            .order_by(AuditedVerdict.id)
        ).all()
    return [(r.hook, r.verdict, r.rule) for r in rows]


def test_warning_shown_at_select_is_not_repeated_at_sign(store_app: Any) -> None:
    app = store_app()
    client = app.test_client()
    select = seed()
    first = client.post(SELECT, json=select).get_json()
    assert [c["indicator"] for c in first["cards"]] == ["warning"]
    again = client.post(SIGN, json=as_sign(select)).get_json()
    assert again["cards"] == []
    assert ratings(again) == {"ServiceRequest/seed-pet-ct-order-1": "not-appropriate"}
    assert audit_rules(app) == [
        ("order-select", "warn", "variant-10"),
        ("order-sign", "silent", "repeat-suppressed"),
    ]
    # Another order of the same patient, and the same order of another patient, still warn.
    other_order = as_sign(select)
    other_order["context"]["draftOrders"]["entry"][0]["resource"]["id"] = "another-order"
    assert len(client.post(SIGN, json=other_order).get_json()["cards"]) == 1
    other_patient = as_sign(select)
    other_patient["context"]["patientId"] = "seed-patient-2"
    other_patient["prefetch"]["patient"]["id"] = "seed-patient-2"
    for key in ("conditions", "observations", "procedures", "medications"):
        for entry in other_patient["prefetch"][key].get("entry", []):
            entry["resource"]["subject"] = {"reference": "Patient/seed-patient-2"}
    other_patient["context"]["draftOrders"]["entry"][0]["resource"]["subject"] = {
        "reference": "Patient/seed-patient-2"
    }
    assert len(client.post(SIGN, json=other_patient).get_json()["cards"]) == 1


def test_repeat_suppression_is_a_site_setting(store_app: Any) -> None:
    app = store_app("repeat_window_minutes = 0\n")
    client = app.test_client()
    select = seed()
    assert len(client.post(SIGN, json=as_sign(select)).get_json()["cards"]) == 1
    assert len(client.post(SELECT, json=select).get_json()["cards"]) == 1  # sign, then select
    assert len(client.post(SIGN, json=as_sign(select)).get_json()["cards"]) == 1  # off


def test_repeat_outside_the_window_is_shown_again(store_app: Any) -> None:
    from sqlalchemy import update

    from cds_service.store import Call

    app = store_app("repeat_window_minutes = 30\n")
    client = app.test_client()
    select = seed()
    client.post(SELECT, json=select)
    store: Store = app.extensions["cds_service"].store
    with store.session() as s:  # the order-select call, moved back beyond the window
        s.execute(update(Call).values(received_at=Call.received_at - _minutes(31)))
    assert len(client.post(SIGN, json=as_sign(select)).get_json()["cards"]) == 1


def test_silent_mode_never_suppresses(store_app: Any) -> None:
    app = store_app("silent = true\n")
    client = app.test_client()
    select = seed()
    client.post(SELECT, json=select)
    client.post(SIGN, json=as_sign(select))
    assert [rule for _, _, rule in audit_rules(app)] == ["variant-10", "variant-10"]


def _minutes(n: int) -> Any:
    from datetime import timedelta

    return timedelta(minutes=n)


# --- 6. no token over plain http --------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "insecure"),
    [
        ("http://ehr.example.org/fhir", True),
        ("http://10.1.2.3/fhir", True),
        ("https://ehr.example.org/fhir", False),
        ("http://localhost:8080/fhir", False),
        ("http://127.0.0.1:8080/fhir", False),
        ("http://[::1]:8080/fhir", False),
    ],
)
def test_plain_http_is_insecure_except_loopback(url: str, insecure: bool) -> None:
    assert insecure_for_token(url) is insecure


def plain_http_request() -> dict[str, Any]:
    """Davinci CRD's order-sign request (HL7-DaVinci/CRD @4fe0471) shape: a fhirServer and a
    token; here an imaging draft so that the record is needed, and no prefetch."""
    body = seed()
    body["prefetch"] = {}
    body["fhirServer"] = "http://ehr.example.org/fhir"
    body["fhirAuthorization"] = {
        "access_token": "sentinel-access-token-7f3a",
        "token_type": "Bearer",
        "expires_in": 300,
        "scope": "patient/*.read",
        "subject": "cds-service",
    }
    return body


def test_token_is_not_sent_over_plain_http(client: FlaskClient) -> None:
    response = client.post(SELECT, json=plain_http_request())
    assert response.status_code == 412
    assert "plain http" in response.get_json()["issue"][0]["diagnostics"]


def test_insecure_fhir_opt_in_is_logged_loudly(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="cds_service"):
        app = create_app(
            {
                "today": TODAY,
                "instance_dir": str(tmp_path),
                "allow_insecure_fhir": "true",
                "fhir_server_allowlist": "https://only.example.org/fhir",
            }
        )
    assert any("CDS_ALLOW_INSECURE_FHIR" in r.getMessage() for r in caplog.records)
    assert app.extensions["cds_service"].settings.allow_insecure_fhir is True
    app.extensions["cds_service"].store.close()


# --- 7. namespaced extension keys --------------------------------------------------------


def test_extension_keys_are_namespaced(client: FlaskClient) -> None:
    body = client.post(SELECT, json=seed()).get_json()
    assert set(body["cards"][0]["extension"]) == {NS}
    assert set(body["extension"]) == {"systemActions"}  # where the sandbox reads it
    discovery = client.get("/cds-services").get_json()
    for service in discovery["services"]:
        assert set(service["extension"]) == {NS + ".configuration-options"}


def test_namespaced_and_legacy_option_keys_are_honoured(client: FlaskClient) -> None:
    for key in (NS + ".configuration", "breast-surveillance-cds.configuration"):
        body = seed()
        body["extension"] = {key: {"warnings": False}}
        assert client.post(SELECT, json=body).get_json()["cards"] == []


# --- also: userId, draft orders without id, Bundle without type, Epic's JWT --------------


def test_user_as_practitioner_role(client: FlaskClient) -> None:
    """cds-hooks/docs order-select "Example (R4)": userId PractitionerRole/123."""
    body = seed()
    body["context"]["userId"] = "PractitionerRole/123"
    response = client.post(SELECT, json=body)
    assert response.status_code == 200 and len(response.get_json()["cards"]) == 1


def test_draft_orders_bundle_without_type(client: FlaskClient) -> None:
    """cds-hooks/sandbox pama.jsx and HL7/cds-hooks-library v1.0.1 send no Bundle.type."""
    body = seed()
    del body["context"]["draftOrders"]["type"]
    response = client.post(SELECT, json=body)
    assert response.status_code == 200 and len(response.get_json()["cards"]) == 1


def test_epic_jwt_shape_is_accepted(tmp_path: Path) -> None:
    """Epic's CDS Hooks JWT as its documentation shows it (copy cited in
    shared/spec/cds-hooks.md §7): RS384, a jku, a base64 kid, nbf and sub = the client id."""
    kid = "cGFjaWZpYy1jcmVzdC9rZXkrMjAyNi0xMg=="  # base64, with '=' padding and '/'
    issuers = write_issuers(
        tmp_path / "issuers.json",
        [{"iss": ISS, "jwks": {"keys": [public_jwk(RSA_KEY, kid, "RS384")]}}],
    )
    app = create_app(
        {
            "today": TODAY,
            "jwt_issuers_file": str(issuers),
            "public_base_url": BASE,
            "instance_dir": str(tmp_path),
        }
    )
    now = int(time.time())
    bearer = jwt.encode(
        {
            "iss": ISS,
            "sub": "d45049c3-3441-40ef-ab4d-b9cd86a17225",
            "aud": BASE + SELECT,
            "jti": str(uuid.uuid4()),
            "iat": now,
            "nbf": now,
            "exp": now + 300,
        },
        RSA_KEY,
        algorithm="RS384",
        headers={"typ": "JWT", "kid": kid, "jku": ISS + "/interconnect-fhir/api/epic/2019/jwks"},
    )
    response = app.test_client().post(
        SELECT, json=seed(), headers={"Authorization": f"Bearer {bearer}"}, base_url=BASE
    )
    assert response.status_code == 200, response.get_data(as_text=True)
    app.extensions["cds_service"].store.close()
