"""Issue 5: trusted CDS clients only (JWT matrix), CORS, secure default, safe headers."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import jwt
import pytest
import requests
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from flask import Flask

from cds_service import create_app
from cds_service.auth import IssuersError, Verifier, load_issuers
from cds_service.config import SettingsError
from cds_service.errors import Unauthorized

from .conftest import FIXTURES, TODAY, load_json

BASE = "https://cds.example.org"
ISS = "https://ehr.example.org"
SELECT = "/cds-services/breast-surveillance-order-select"

EC_KEY = ec.generate_private_key(ec.SECP384R1())
RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
OTHER_EC = ec.generate_private_key(ec.SECP384R1())


def public_jwk(key: Any, kid: str, alg: str) -> dict[str, Any]:
    algorithm = jwt.algorithms.ECAlgorithm if alg.startswith("ES") else jwt.algorithms.RSAAlgorithm
    jwk: dict[str, Any] = json.loads(algorithm.to_jwk(key.public_key()))
    return {**jwk, "kid": kid, "alg": alg, "use": "sig"}


def write_issuers(path: Path, entries: list[dict[str, Any]]) -> Path:
    path.write_text(json.dumps({"issuers": entries}))
    return path


@pytest.fixture()
def issuers_file(tmp_path: Path) -> Path:
    return write_issuers(
        tmp_path / "issuers.json",
        [
            {
                "iss": ISS,
                "jwks": {
                    "keys": [
                        public_jwk(EC_KEY, "ec-1", "ES384"),
                        public_jwk(RSA_KEY, "rsa-1", "RS384"),
                    ]
                },
                "fhir_servers": ["https://ehr.example.org/fhir"],
            }
        ],
    )


@pytest.fixture()
def secure_app(issuers_file: Path, tmp_path: Path) -> Flask:
    return create_app(
        {
            "today": TODAY,
            "jwt_issuers_file": str(issuers_file),
            "public_base_url": BASE,
            "instance_dir": str(tmp_path),
            "cors_origins": "https://ehr.example.org",
        }
    )


def token(
    path: str = SELECT,
    key: Any = EC_KEY,
    alg: str = "ES384",
    kid: str | None = "ec-1",
    drop: tuple[str, ...] = (),
    headers: dict[str, Any] | None = None,
    **claims: Any,
) -> str:
    now = int(time.time())
    payload: dict[str, Any] = {
        "iss": ISS,
        "aud": BASE + path,
        "exp": now + 300,
        "iat": now,
        "jti": str(uuid.uuid4()),
        **claims,
    }
    for name in drop:
        payload.pop(name)
    header = {"typ": "JWT", **({"kid": kid} if kid else {}), **(headers or {})}
    return jwt.encode(payload, key, algorithm=alg, headers=header)


def seed() -> dict[str, Any]:
    body: dict[str, Any] = load_json(FIXTURES / "requests" / "seed-pet-ct.json")
    return body


def call(app: Flask, bearer: str | None, path: str = SELECT) -> Any:
    headers = {"Authorization": f"Bearer {bearer}"} if bearer is not None else {}
    return app.test_client().post(path, json=seed(), headers=headers, base_url=BASE)


def hs256_with_public_key() -> str:
    """The algorithm-confusion attack: HMAC keyed with the issuer's public key bytes."""
    pem = EC_KEY.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    now = int(time.time())
    payload = {"iss": ISS, "aud": BASE + SELECT, "exp": now + 300, "iat": now, "jti": "x"}
    import base64
    import hashlib
    import hmac as hmac_

    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    head = b64(json.dumps({"alg": "HS256", "typ": "JWT", "kid": "ec-1"}).encode())
    body = b64(json.dumps(payload).encode())
    sig = hmac_.new(pem, f"{head}.{body}".encode(), hashlib.sha256).digest()
    return f"{head}.{body}.{b64(sig)}"


def alg_none() -> str:
    now = int(time.time())
    payload = {"iss": ISS, "aud": BASE + SELECT, "exp": now + 300, "iat": now, "jti": "y"}
    return jwt.encode(payload, None, algorithm="none", headers={"kid": "ec-1"})


MATRIX: list[tuple[str, Callable[[], str | None], int]] = [
    ("valid-es384", lambda: token(), 200),
    ("valid-rs384", lambda: token(key=RSA_KEY, alg="RS384", kid="rsa-1"), 200),
    ("no-token", lambda: None, 401),
    ("garbage", lambda: "not.a.jwt", 401),
    ("alg-none", alg_none, 401),
    ("hs256-with-public-key", hs256_with_public_key, 401),
    ("expired", lambda: token(exp=int(time.time()) - 600, iat=int(time.time()) - 900), 401),
    ("iat-in-future", lambda: token(iat=int(time.time()) + 600, exp=int(time.time()) + 900), 401),
    ("wrong-aud", lambda: token(aud=BASE + "/cds-services/other"), 401),
    ("aud-http-not-https", lambda: token(aud="http://cds.example.org" + SELECT), 401),
    ("unknown-iss", lambda: token(iss="https://evil.example.org"), 401),
    ("wrong-key-right-kid", lambda: token(key=OTHER_EC), 401),
    ("missing-kid", lambda: token(kid=None), 401),
    ("unknown-kid", lambda: token(kid="nope"), 401),
    ("missing-jti", lambda: token(drop=("jti",)), 401),
    ("missing-exp", lambda: token(drop=("exp",)), 401),
    ("rs-alg-on-ec-key", lambda: token(key=RSA_KEY, alg="RS384", kid="ec-1"), 401),
    ("aud-as-array", lambda: token(aud=[BASE + SELECT]), 200),
    # Issue 15: a list naming a URL we do not serve (a token made for several services).
    ("aud-as-array-with-another", lambda: token(aud=[BASE + SELECT, "https://other"]), 401),
    # A token valid for longer than the jti is remembered (1 h) could be replayed later.
    ("exp-beyond-an-hour", lambda: token(exp=int(time.time()) + 7 * 86400), 401),
    ("exp-within-an-hour", lambda: token(exp=int(time.time()) + 3500), 200),
    # The sandbox and Epic send a jku; a key pinned for the kid is used, nothing is fetched.
    (
        "pinned-kid-with-unlisted-jku",
        lambda: token(headers={"jku": "https://sandbox.cds-hooks.org/.well-known/jwks.json"}),
        200,
    ),
]


@pytest.mark.parametrize(("case", "make", "status"), MATRIX, ids=[m[0] for m in MATRIX])
def test_jwt_matrix(
    secure_app: Flask, case: str, make: Callable[[], str | None], status: int
) -> None:
    response = call(secure_app, make())
    assert response.status_code == status, response.get_data(as_text=True)
    if status == 401:
        assert response.headers["WWW-Authenticate"] == "Bearer"
        assert response.get_json()["issue"][0]["diagnostics"] == "Unauthorized"  # no reason given


def test_the_bearer_scheme_is_case_insensitive(secure_app: Flask) -> None:
    for scheme in ("bearer", "BEARER", "Bearer"):
        headers = {"Authorization": f"{scheme} {token()}"}
        response = secure_app.test_client().post(
            SELECT, json=seed(), headers=headers, base_url=BASE
        )
        assert response.status_code == 200, scheme
    for value in ("Basic abc", "Bearer", "Bearer   ", "Bearertoken"):
        response = secure_app.test_client().post(
            SELECT, json=seed(), headers={"Authorization": value}, base_url=BASE
        )
        assert response.status_code == 401, value


def test_replayed_jti_is_refused(secure_app: Flask) -> None:
    bearer = token()
    assert call(secure_app, bearer).status_code == 200
    assert call(secure_app, bearer).status_code == 401


def test_every_endpoint_needs_the_token(secure_app: Flask) -> None:
    client = secure_app.test_client()
    assert client.get("/cds-services", base_url=BASE).status_code == 401
    good = {"Authorization": f"Bearer {token('/cds-services')}"}
    assert client.get("/cds-services", headers=good, base_url=BASE).status_code == 200
    feedback = SELECT + "/feedback"
    item = {
        "feedback": [
            {"card": "c", "outcome": "overridden", "outcomeTimestamp": "2026-11-25T10:00:00Z"}
        ]
    }
    assert client.post(feedback, json=item, base_url=BASE).status_code == 401
    wrong_aud = {"Authorization": f"Bearer {token(SELECT)}"}  # the service URL, not /feedback
    assert client.post(feedback, json=item, headers=wrong_aud, base_url=BASE).status_code == 401
    good = {"Authorization": f"Bearer {token(feedback)}"}
    assert client.post(feedback, json=item, headers=good, base_url=BASE).status_code == 200
    # The patient handout and the override CodeSystem stay public.
    assert client.get("/handouts/breast-surveillance", base_url=BASE).status_code == 200


def test_issuer_fhir_servers_are_enforced(secure_app: Flask) -> None:
    body = seed()
    body.pop("prefetch")
    body["fhirServer"] = "https://attacker.example.org/fhir"
    response = secure_app.test_client().post(
        SELECT, json=body, headers={"Authorization": f"Bearer {token()}"}, base_url=BASE
    )
    assert response.status_code == 412
    assert "allow-list" in response.get_json()["issue"][0]["diagnostics"]


def test_tenant_is_checked(tmp_path: Path) -> None:
    path = write_issuers(
        tmp_path / "issuers.json",
        [{"iss": ISS, "jwks": {"keys": [public_jwk(EC_KEY, "ec-1", "ES384")]}, "tenants": ["t1"]}],
    )
    app = create_app(
        {
            "today": TODAY,
            "jwt_issuers_file": str(path),
            "public_base_url": BASE,
            "instance_dir": str(tmp_path),
        }
    )
    assert call(app, token(tenant="t1")).status_code == 200
    assert call(app, token(tenant="t2")).status_code == 401
    assert call(app, token()).status_code == 401


class _Jwks(BaseHTTPRequestHandler):
    keys: dict[str, Any] = {"keys": []}
    hits: list[str] = []

    def do_GET(self) -> None:  # noqa: N802
        type(self).hits.append(self.path)
        data = json.dumps(type(self).keys).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture()
def jwks_server() -> Iterator[str]:
    _Jwks.hits = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Jwks)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/jwks.json"
    server.shutdown()
    server.server_close()


def test_unlisted_jku_is_never_fetched(secure_app: Flask, jwks_server: str) -> None:
    _Jwks.keys = {"keys": [public_jwk(OTHER_EC, "evil", "ES384")]}
    bearer = token(key=OTHER_EC, kid="evil", headers={"jku": jwks_server})
    assert call(secure_app, bearer).status_code == 401
    assert _Jwks.hits == []  # no outbound request: no SSRF


def test_jwks_rotation_through_the_listed_jku(tmp_path: Path, jwks_server: str) -> None:
    issuers = load_issuers(write_issuers(tmp_path / "i.json", [{"iss": ISS, "jku": jwks_server}]))
    seen: set[str] = set()
    clock = [1000.0]

    def remember(iss: str, jti: str, _exp: Any) -> bool:
        fresh = jti not in seen
        seen.add(jti)
        return fresh

    verifier = Verifier(issuers, remember, requests.Session(), monotonic=lambda: clock[0])
    _Jwks.keys = {"keys": [public_jwk(EC_KEY, "k1", "ES384")]}
    verifier.verify(f"Bearer {token(kid='k1', headers={'jku': jwks_server})}", BASE + SELECT)
    assert len(_Jwks.hits) == 1
    verifier.verify(f"Bearer {token(kid='k1')}", BASE + SELECT)  # cached
    assert len(_Jwks.hits) == 1
    _Jwks.keys = {"keys": [public_jwk(OTHER_EC, "k2", "ES384")]}  # the issuer rotates
    clock[0] += 10
    with pytest.raises(Unauthorized):  # unknown kid, but refreshed less than a minute ago
        verifier.verify(f"Bearer {token(key=OTHER_EC, kid='k2')}", BASE + SELECT)
    assert len(_Jwks.hits) == 1
    clock[0] += 60
    verifier.verify(f"Bearer {token(key=OTHER_EC, kid='k2')}", BASE + SELECT)
    assert len(_Jwks.hits) == 2


def test_bad_issuers_file_stops_the_service(tmp_path: Path) -> None:
    for content in (
        "{",
        '{"issuers": []}',
        '{"issuers": [{"iss": "x"}]}',
        '{"issuers": [{"iss": "x", "jku": "ftp://k"}]}',
    ):
        path = tmp_path / "issuers.json"
        path.write_text(content)
        with pytest.raises(IssuersError):
            load_issuers(path)


def test_cors_star_with_authentication_is_refused(issuers_file: Path, tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="CORS"):
        create_app(
            {
                "jwt_issuers_file": str(issuers_file),
                "public_base_url": BASE,
                "cors_origins": "*",
                "instance_dir": str(tmp_path),
            }
        )


@pytest.mark.parametrize(
    "path",
    ["/cds-services", SELECT, SELECT + "/feedback", "/cds-services/breast-surveillance-order-sign"],
)
def test_cors_preflight_on_every_endpoint(secure_app: Flask, path: str) -> None:
    response = secure_app.test_client().options(
        path,
        base_url=BASE,
        headers={
            "Origin": "https://ehr.example.org",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "Authorization, Content-Type",
        },
    )
    assert response.status_code in (200, 204)
    assert response.headers["Access-Control-Allow-Origin"] == "https://ehr.example.org"
    allowed = response.headers["Access-Control-Allow-Headers"].lower()
    assert "authorization" in allowed and "content-type" in allowed
    assert "POST" in response.headers["Access-Control-Allow-Methods"]
    other = secure_app.test_client().options(
        path,
        base_url=BASE,
        headers={"Origin": "https://evil.example.org", "Access-Control-Request-Method": "POST"},
    )
    assert "Access-Control-Allow-Origin" not in other.headers


def test_cors_on_actual_requests(secure_app: Flask) -> None:
    """The answer to an allowed origin names it (and varies by Origin); others get no CORS
    header, and neither do pages outside the CDS endpoints."""
    client = secure_app.test_client()
    allowed = client.get(
        "/cds-services", base_url=BASE, headers={"Origin": "https://ehr.example.org"}
    )
    assert allowed.headers["Access-Control-Allow-Origin"] == "https://ehr.example.org"
    assert "Origin" in allowed.headers["Vary"]
    assert "Access-Control-Allow-Methods" not in allowed.headers  # only on a preflight
    for headers in ({"Origin": "https://evil.example.org"}, {}):
        answer = client.get("/cds-services", base_url=BASE, headers=headers)
        assert "Access-Control-Allow-Origin" not in answer.headers
    page = client.get("/openapi.json", base_url=BASE, headers={"Origin": "https://ehr.example.org"})
    assert "Access-Control-Allow-Origin" not in page.headers


def test_unauthenticated_loopback_mode_allows_any_origin(client: Any) -> None:
    response = client.options(
        "/cds-services",
        headers={"Origin": "http://localhost:3000", "Access-Control-Request-Method": "GET"},
    )
    assert response.headers["Access-Control-Allow-Origin"] in ("*", "http://localhost:3000")


def test_safe_headers(client: Any) -> None:
    response = client.get("/cds-services")
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert "Server" not in response.headers


def test_serve_refuses_a_public_address_without_issuers(tmp_path: Path) -> None:
    env = {**os.environ, "CDS_INSTANCE_DIR": str(tmp_path)}
    env.pop("CDS_JWT_ISSUERS_FILE", None)
    result = subprocess.run(
        [sys.executable, "-m", "cds_service.cli", "serve", "--host", "0.0.0.0", "--port", "1"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "refusing" in result.stderr


def test_allow_unauthenticated_warns_loudly(tmp_path: Path) -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "CDS_INSTANCE_DIR": str(tmp_path)}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "cds_service.cli",
            "serve",
            "--host",
            "0.0.0.0",
            "--port",
            str(port),
            "--workers",
            "1",
            "--allow-unauthenticated",
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                response = requests.get(f"http://127.0.0.1:{port}/cds-services", timeout=1)
                break
            except requests.ConnectionError:
                time.sleep(0.2)
        assert response.status_code == 200
        assert response.headers.get("Server", "") == ""  # no banner
    finally:
        proc.terminate()
        out = proc.communicate(timeout=15)[0]
    assert "UNAUTHENTICATED" in out


def test_replay_is_refused_across_worker_processes(issuers_file: Path, tmp_path: Path) -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    base = f"http://127.0.0.1:{port}"
    env = {
        **os.environ,
        "CDS_INSTANCE_DIR": str(tmp_path),
        "CDS_JWT_ISSUERS_FILE": str(issuers_file),
        "CDS_PUBLIC_BASE_URL": BASE,
        "CDS_CORS_ORIGINS": "https://ehr.example.org",
        "CDS_TODAY": TODAY,
    }
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "cds_service.cli",
            "serve",
            "--port",
            str(port),
            "--workers",
            "2",
            "--threads",
            "1",
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                requests.get(base + "/handouts/breast-surveillance", timeout=1)
                break
            except requests.ConnectionError:
                time.sleep(0.2)
        bearer = token()
        statuses = []
        for _ in range(8):  # fresh connections: both workers get a turn
            with requests.Session() as session:
                response = session.post(
                    base + SELECT, json=seed(), headers={"Authorization": f"Bearer {bearer}"}
                )
                statuses.append(response.status_code)
        assert sorted(statuses) == [200] + [401] * 7
    finally:
        proc.terminate()
        proc.wait(timeout=15)


def test_jwt_mode_needs_a_public_base_url_even_behind_a_proxy(
    issuers_file: Path, tmp_path: Path
) -> None:
    """Issue 15: aud is never read from the request's Host (or X-Forwarded-Host) header."""
    for trust in (False, True):
        with pytest.raises(SettingsError, match="CDS_PUBLIC_BASE_URL"):
            create_app(
                {
                    "today": TODAY,
                    "jwt_issuers_file": str(issuers_file),
                    "instance_dir": str(tmp_path),
                    "cors_origins": "https://ehr.example.org",
                    "trust_proxy": trust,
                }
            )


def test_a_spoofed_host_does_not_change_the_audience(secure_app: Flask) -> None:
    spoofed = "http://evil.example"
    headers = {"Authorization": f"Bearer {token(aud=spoofed + SELECT)}"}
    response = secure_app.test_client().post(SELECT, json=seed(), headers=headers, base_url=spoofed)
    assert response.status_code == 401
    headers = {"Authorization": f"Bearer {token()}"}
    response = secure_app.test_client().post(SELECT, json=seed(), headers=headers, base_url=spoofed)
    assert response.status_code == 200  # aud is our configured URL whatever the Host says


@pytest.mark.parametrize(
    ("aud", "status"),
    [
        ([BASE + SELECT], 200),
        ([BASE + SELECT, BASE + "/cds-services"], 200),
        ([BASE + SELECT, "https://other-service.example.org/cds-services/x"], 401),
        ([BASE + SELECT, BASE + ".evil.example/cds-services/x"], 401),
    ],
)
def test_an_aud_list_may_name_only_urls_we_serve(
    secure_app: Flask, aud: list[str], status: int
) -> None:
    assert call(secure_app, token(aud=aud)).status_code == status


def test_serve_refuses_to_start_in_jwt_mode_without_a_public_base_url(
    issuers_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    from cds_service.cli import main

    monkeypatch.setenv("CDS_JWT_ISSUERS_FILE", str(issuers_file))
    monkeypatch.setenv("CDS_INSTANCE_DIR", str(tmp_path))
    monkeypatch.delenv("CDS_PUBLIC_BASE_URL", raising=False)
    assert main(["serve", "--host", "127.0.0.1", "--port", "1"]) == 2
    assert "CDS_PUBLIC_BASE_URL" in capsys.readouterr().err
