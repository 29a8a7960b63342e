"""Issue 4 against a real FHIR R4 server (Medplum's router, tests/fhir_server): prefetch done
right, the rest fetched from fhirServer, the same verdict either way, 412 only when it must."""

from __future__ import annotations

import copy
import json
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import requests
from flask import Flask
from flask.testing import FlaskClient

from cds_service import create_app
from cds_service.fhir.client import FhirClient, FhirUnavailable, fhir_pool

from .conformance import assert_conformant, ratings
from .conftest import CASES_DOC, FIXTURES, SERVICE_FOR_HOOK, TODAY, load_json
from .fhir_server import FhirTestServer, node_available

CASES = CASES_DOC["cases"]
TOKEN = "sentinel-access-token-7f3a"


@pytest.fixture(scope="module")
def server() -> Iterator[FhirTestServer]:
    reason = node_available()
    if reason is not None:
        pytest.skip(f"the test FHIR server cannot run: {reason}")
    patients = sorted({c["patient"] for c in CASES if c["patient"]})
    seen: set[str] = set()
    with FhirTestServer() as srv:
        for name in patients:
            bundle = load_json(FIXTURES / name)
            patient_id = next(
                e["resource"]["id"]
                for e in bundle["entry"]
                if e["resource"]["resourceType"] == "Patient"
            )
            if patient_id not in seen:
                seen.add(patient_id)
                srv.load(bundle)
        yield srv


def outcome_of(client: FlaskClient, body: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
    response = client.post(f"/cds-services/{SERVICE_FOR_HOOK[body['hook']]}", json=body)
    return response, response.get_json(force=True)


def verdict(body: dict[str, Any]) -> tuple[list[tuple[str, str, str]], dict[str, str]]:
    cards = sorted(
        (
            c["indicator"],
            c["extension"]["org.example.breast-surveillance-cds"]["study"],
            c["extension"]["org.example.breast-surveillance-cds"]["order"],
        )
        for c in body["cards"]
    )
    return cards, ratings(body)


def without_prefetch(
    request: dict[str, Any], base: str, keep: tuple[str, ...] = ()
) -> dict[str, Any]:
    body = copy.deepcopy(request)
    body["prefetch"] = {k: v for k, v in body.get("prefetch", {}).items() if k in keep}
    if not body["prefetch"]:
        del body["prefetch"]
    body["fhirServer"] = base
    return body


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_same_verdict_by_fetch_as_by_prefetch(
    client: FlaskClient, server: FhirTestServer, case: dict[str, Any]
) -> None:
    request = load_json(FIXTURES / case["request"])
    request.pop("fhirServer", None)
    response, by_prefetch = outcome_of(client, request)
    assert response.status_code == 200
    response, by_fetch = outcome_of(client, without_prefetch(request, server.base))
    assert response.status_code == 200, by_fetch
    assert_conformant(by_fetch)
    assert verdict(by_fetch) == verdict(by_prefetch)
    half = without_prefetch(request, server.base, keep=("patient", "conditions", "medications"))
    response, by_half = outcome_of(client, half)
    assert response.status_code == 200
    assert verdict(by_half) == verdict(by_prefetch)


def seed() -> dict[str, Any]:
    body: dict[str, Any] = load_json(FIXTURES / "requests" / "seed-pet-ct.json")
    return body


def test_bearer_token_reaches_the_server_and_only_it(
    client: FlaskClient, server: FhirTestServer
) -> None:
    server.require_token(TOKEN)
    server.reset_log()
    try:
        body = without_prefetch(seed(), server.base)
        response, _ = outcome_of(client, body)
        assert response.status_code == 412  # the server says 401 without the token
        body["fhirAuthorization"] = {
            "access_token": TOKEN,
            "token_type": "Bearer",
            "expires_in": 300,
            "scope": "patient/*.read",
            "subject": "breast-surveillance-cds",
        }
        response, result = outcome_of(client, body)
        assert response.status_code == 200, result
        assert [c["indicator"] for c in result["cards"]] == ["warning"]
        log = server.requests()
        authorised = [r for r in log if r["authorization"] == f"Bearer {TOKEN}"]
        assert {r["url"].split("?")[0].rsplit("/", 1)[-1] for r in authorised} >= {
            "Condition",
            "Observation",
            "Procedure",
            "MedicationRequest",
        }
    finally:
        server.require_token(None)


def test_401_from_the_server_is_412_naming_what_is_missing(
    client: FlaskClient, server: FhirTestServer
) -> None:
    server.require_token("another-token")
    try:
        response, body = outcome_of(client, without_prefetch(seed(), server.base))
    finally:
        server.require_token(None)
    assert response.status_code == 412
    issue = body["issue"][0]
    assert "401" not in issue["diagnostics"]  # the reason is logged, not told (issue 15)
    assert set(issue["expression"]) <= {
        f"prefetch.{k}" for k in ("conditions", "observations", "procedures", "medications")
    }
    assert issue["expression"]


def test_operation_outcome_in_prefetch_is_fetched_again(
    client: FlaskClient, server: FhirTestServer
) -> None:
    body = seed()
    body["fhirServer"] = server.base
    body["prefetch"]["observations"] = {
        "resourceType": "OperationOutcome",
        "issue": [{"severity": "error", "code": "timeout"}],
    }
    server.reset_log()
    response, result = outcome_of(client, body)
    assert response.status_code == 200
    assert [c["indicator"] for c in result["cards"]] == ["warning"]
    assert any("/Observation" in r["url"] for r in server.requests())


def test_paginated_prefetch_is_followed(client: FlaskClient, server: FhirTestServer) -> None:
    """A prefetch Bundle with a next link: the rest comes from the server (here, the symptom)."""
    body = load_json(FIXTURES / "requests" / "new-bone-pain.json")
    patient = body["context"]["patientId"]
    entries = body["prefetch"]["conditions"]["entry"]
    first_page = {
        "resourceType": "Bundle",
        "type": "searchset",
        "entry": entries[:1],
        "link": [
            {
                "relation": "next",
                "url": f"{server.base}/Condition?patient={patient}&_count=1&_offset=1",
            }
        ],
    }
    body["prefetch"]["conditions"] = first_page
    body["fhirServer"] = server.base
    response, result = outcome_of(client, body)
    assert response.status_code == 200
    # Only page 1 would be a survivor with no symptom (a false warning); page 2+ has the pain.
    assert not [c for c in result["cards"] if c["indicator"] == "warning"]


def test_client_follows_next_links_exactly_once(server: FhirTestServer) -> None:
    body = seed()
    patient = body["context"]["patientId"]
    client = FhirClient(fhir_pool(), server.base, None, time.monotonic() + 10)
    pages, complete = client.fetch(f"Condition?patient={patient}&_count=1", "conditions")
    ids = [e["resource"]["id"] for page in pages for e in page.get("entry", [])]
    assert complete and len(pages) > 1 and len(ids) == len(set(ids))
    (everything,), complete = client.fetch(f"Condition?patient={patient}", "conditions")
    assert complete
    assert sorted(ids) == sorted(e["resource"]["id"] for e in everything["entry"])


def test_pages_beyond_the_limit_make_the_result_partial(server: FhirTestServer) -> None:
    """The client reads at most ``max_pages``; with one more page left it says so, and the call
    gives no warning from a record it could not read to the end."""
    patient = seed()["context"]["patientId"]
    client = FhirClient(fhir_pool(), server.base, None, time.monotonic() + 10, max_pages=1)
    pages, complete = client.fetch(f"Condition?patient={patient}&_count=1", "conditions")
    assert len(pages) == 1 and not complete  # the seed has two Conditions: page 2 unread
    pages, complete = client.fetch(f"Patient/{patient}", "patient")
    assert len(pages) == 1 and complete


def _first_page_only(body: dict[str, Any], key: str, keep: int, next_url: str) -> None:
    bundle = body["prefetch"][key]
    bundle["entry"] = bundle["entry"][:keep]
    bundle["link"] = [{"relation": "next", "url": next_url}]


def test_a_first_page_without_fhir_server_gives_no_warning(client: FlaskClient) -> None:
    """A prefetch Bundle with a next link and no fhirServer to read it from is part of the
    record. The rib pain of new-bone-pain-pet-ct may be on the unread page: no warning (an
    independent review found a false warning here). What the first page shows still counts:
    the seed with its whole record on page 1 still gets no warning (the rest is unknown), and a
    symptom on page 1 still gives its info card."""
    body = load_json(FIXTURES / "requests" / "new-bone-pain-pet-ct.json")
    assert [c["indicator"] for c in outcome_of(client, body)[1]["cards"]] == ["info"]
    pain = next(
        i
        for i, e in enumerate(body["prefetch"]["conditions"]["entry"])
        if "pain" in str(e["resource"].get("code", {})).lower()
    )
    partial = copy.deepcopy(body)
    _first_page_only(partial, "conditions", pain, "https://ehr.example.org/fhir/Condition?page=2")
    response, result = outcome_of(client, partial)
    assert response.status_code == 200
    assert not [c for c in result["cards"] if c["indicator"] == "warning"]
    # A partial record is too little information to rate (Argonaut PAMA: SHALL NOT rate).
    assert ratings(result) == {}

    whole = seed()
    n = len(whole["prefetch"]["conditions"]["entry"])
    _first_page_only(whole, "conditions", n, "https://ehr.example.org/fhir/Condition?page=2")
    assert outcome_of(client, whole)[1]["cards"] == []

    on_page_one = copy.deepcopy(body)
    _first_page_only(on_page_one, "conditions", pain + 1, "https://ehr.example.org/fhir/x?p=2")
    assert [c["indicator"] for c in outcome_of(client, on_page_one)[1]["cards"]] == ["info"]


class _HapiPaging(BaseHTTPRequestHandler):
    """Two pages of Conditions the way HAPI links them: page 2 is ``{base}?_getpages=...``,
    the base itself with a query, not a path under it."""

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        base = f"http://127.0.0.1:{self.server.server_address[1]}/fhir"
        entry = [{"resource": {"resourceType": "Condition", "id": self.path[-1]}}]
        if self.path.startswith("/fhir/Condition"):
            link = [{"relation": "next", "url": f"{base}?_getpages=abc&_getpagesoffset=1"}]
            body = {"resourceType": "Bundle", "type": "searchset", "entry": entry, "link": link}
        elif self.path == "/fhir?_getpages=abc&_getpagesoffset=1":
            body = {"resourceType": "Bundle", "type": "searchset", "entry": entry}
        else:
            self.send_error(404)
            return
        data = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/fhir+json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: Any) -> None:
        pass


def test_hapi_paging_links_to_the_base_itself_are_followed() -> None:
    """HAPI's next links are ``{base}?_getpages=...``: inside the base, so followed (an
    independent review found them refused, a 412 against the README's own HAPI setup). Other
    hosts, ports, schemes and look-alike paths stay refused: the token goes nowhere else."""
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _HapiPaging)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        port = httpd.server_address[1]
        base = f"http://127.0.0.1:{port}/fhir"
        client = FhirClient(fhir_pool(), base, TOKEN, time.monotonic() + 10)
        pages, complete = client.fetch("Condition?patient=p1", "conditions")
        assert complete and len(pages) == 2
        for outside in (
            f"http://127.0.0.1:{port}/fhirx?_getpages=abc",
            f"http://127.0.0.1:{port}/other/Condition",
            f"http://127.0.0.1:{port + 1}/fhir?_getpages=abc",
            f"https://127.0.0.1:{port}/fhir?_getpages=abc",
            f"http://localhost:{port}/fhir?_getpages=abc",
        ):
            with pytest.raises(FhirUnavailable, match="outside its base"):
                client.get(outside, "conditions")
        assert client.inside_base(f"HTTP://127.0.0.1:{port}/fhir/Condition")
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_next_link_outside_the_base_is_refused(server: FhirTestServer) -> None:
    client = FhirClient(fhir_pool(), server.base, TOKEN, time.monotonic() + 5)
    with pytest.raises(FhirUnavailable, match="outside its base"):
        client.get("http://127.0.0.1:9/elsewhere/Condition", "conditions")


# --- failure conditions made real: a silent server, a refused port, a flaky server ---------


@pytest.fixture()
def silent_server() -> Iterator[str]:
    """Accepts connections and never answers."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
                held.append(conn)
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{listener.getsockname()[1]}/fhir"
    stop.set()
    thread.join(timeout=2)
    for conn in held:
        conn.close()
    listener.close()


@pytest.fixture()
def short_budget_app() -> Flask:
    return create_app({"today": TODAY, "fhir_timeout": "0.6"})


def test_silent_server_gives_412_inside_the_budget(
    short_budget_app: Flask, silent_server: str
) -> None:
    started = time.monotonic()
    response = short_budget_app.test_client().post(
        "/cds-services/breast-surveillance-order-select",
        json=without_prefetch(seed(), silent_server),
    )
    elapsed = time.monotonic() - started
    assert response.status_code == 412
    assert "prefetch." in response.get_json()["issue"][0]["expression"][0]
    assert elapsed < 5, "must not hang (functional bound, not a performance target)"


def test_refused_connection_gives_412(short_budget_app: Flask) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    response = short_budget_app.test_client().post(
        "/cds-services/breast-surveillance-order-select",
        json=without_prefetch(seed(), f"http://127.0.0.1:{port}/fhir"),
    )
    assert response.status_code == 412
    diagnostics = response.get_json()["issue"][0]["diagnostics"]
    assert "could not be read" in diagnostics
    assert "reachable" not in diagnostics and "Refused" not in diagnostics


class _Flaky(BaseHTTPRequestHandler):
    """Answers 503 to the first request for each path, then proxies to the real FHIR server."""

    seen: set[str] = set()
    upstream = ""

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        if self.path not in self.seen:
            self.seen.add(self.path)
            self.send_response(503)
            self.send_header("Retry-After", "0")
            self.end_headers()
            return
        upstream = requests.get(self.upstream + self.path.split("/fhir", 1)[1], timeout=5)
        self.send_response(upstream.status_code)
        self.send_header("Content-Type", "application/fhir+json")
        self.end_headers()
        self.wfile.write(upstream.content)

    def log_message(self, *args: Any) -> None:
        pass


class _Server(ThreadingHTTPServer):
    request_queue_size = 64  # the service opens several connections at once


def test_one_retry_on_503(client: FlaskClient, server: FhirTestServer) -> None:
    _Flaky.seen = set()
    _Flaky.upstream = server.base
    httpd = _Server(("127.0.0.1", 0), _Flaky)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        base = f"http://127.0.0.1:{httpd.server_address[1]}/fhir"
        response, body = outcome_of(client, without_prefetch(seed(), base))
    finally:
        httpd.shutdown()
        httpd.server_close()
    assert response.status_code == 200, body
    assert [c["indicator"] for c in body["cards"]] == ["warning"]


def test_allowlist_refuses_other_servers(server: FhirTestServer) -> None:
    app = create_app({"today": TODAY, "fhir_server_allowlist": "https://ehr.example.org/fhir"})
    server.reset_log()
    response = app.test_client().post(
        "/cds-services/breast-surveillance-order-select", json=without_prefetch(seed(), server.base)
    )
    assert response.status_code == 412
    assert "allow-list" in response.get_json()["issue"][0]["diagnostics"]
    assert server.requests() == []
    allowed = create_app({"today": TODAY, "fhir_server_allowlist": server.base})
    response = allowed.test_client().post(
        "/cds-services/breast-surveillance-order-select", json=without_prefetch(seed(), server.base)
    )
    assert response.status_code == 200


def test_load_fixtures_command_puts_patients_with_stable_ids(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from cds_service.cli import main

    reason = node_available()
    if reason is not None:
        pytest.skip(f"the test FHIR server cannot run: {reason}")
    with FhirTestServer() as fresh:
        assert main(["load-fixtures", "--fhir", fresh.base]) == 0
        assert "loaded" in capsys.readouterr().out
        patient = fresh.session.get(f"{fresh.base}/Patient/seed-patient").json()
        assert patient["id"] == "seed-patient"
        assert main(["load-fixtures", "--fhir", fresh.base]) == 0  # idempotent
        conditions = fresh.session.get(f"{fresh.base}/Condition?patient=seed-patient").json()
        ids = [e["resource"]["id"] for e in conditions["entry"]]
        assert len(ids) == len(set(ids)) > 0


def _self_signed(tmp_dir: Any) -> tuple[str, str]:
    """A certificate for 127.0.0.1 signed by itself (no CA anyone trusts), and its key."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = f"{tmp_dir}/cert.pem", f"{tmp_dir}/key.pem"
    with open(cert_path, "wb") as f:
        f.write(cert.public_bytes(serialization.Encoding.PEM))
    with open(key_path, "wb") as f:
        f.write(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
    return cert_path, key_path


def test_fhir_queries_verify_the_servers_certificate(tmp_path: Any) -> None:
    """The FHIR pool checks TLS certificates (certifi's CAs): a server whose certificate no
    trusted CA signed is not read from, even though it would answer, and the token never
    reaches it in a request."""
    import ssl

    answered: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's name)
            answered.append(self.path)
            self.send_response(200)
            self.send_header("Content-Type", "application/fhir+json")
            self.end_headers()
            self.wfile.write(b'{"resourceType": "Patient", "id": "x"}')

        def log_message(self, *args: Any) -> None:
            pass

    cert, key = _self_signed(tmp_path)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.socket = context.wrap_socket(httpd.socket, server_side=True)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        base = f"https://127.0.0.1:{httpd.server_address[1]}/fhir"
        client = FhirClient(fhir_pool(), base, TOKEN, time.monotonic() + 5)
        with pytest.raises(FhirUnavailable, match="not reachable"):
            client.get("Patient/x", "patient")
    finally:
        httpd.shutdown()
        httpd.server_close()
    assert answered == [], "no request got past the TLS handshake"
