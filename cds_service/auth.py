"""CDS Hooks 2.0 client authentication: the JWT an EHR sends on every call.

Checks, in the order of the CDS Hooks best practices: ``iss`` on the allow-list; ``aud`` equal
to the URL of the endpoint called; ``exp`` not passed and ``iat`` not in the future (small
skew); ``tenant`` when configured; the signature with the issuer's key for ``kid``, asymmetric
algorithms only (no ``none``, no HMAC: no algorithm confusion with a public key); ``jku`` only
when it is the issuer's allow-listed URL (an unlisted one is never fetched); ``jti`` never
accepted twice (the replay cache is in the SQL store, shared by every worker). Any failure is a
bare 401; the reason is logged, the token never.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import jwt
import requests
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from . import metrics
from .errors import Unauthorized, first_problem
from .fhir.client import unambiguous_url

logger = logging.getLogger("cds_service.auth")

ASYMMETRIC = frozenset(
    {"ES256", "ES384", "ES512", "RS256", "RS384", "RS512", "PS256", "PS384", "PS512"}
)
KEY_TYPES = {"ES": "EC", "RS": "RSA", "PS": "RSA"}
JWKS_REFRESH_SECONDS = 60.0
MAX_TOKEN_LIFETIME = 3600  # seconds: the spec keeps seen jtis for the maximum token lifetime


class IssuerConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    iss: str = Field(min_length=1)
    jwks: dict[str, Any] | None = None
    jku: str | None = None
    fhir_servers: tuple[str, ...] = ()
    tenants: tuple[str, ...] | None = None

    @field_validator("jku")
    @classmethod
    def _https(cls, value: str | None) -> str | None:
        if value is not None and not jku_allowed(value):
            raise ValueError(
                "jku must be an https URL (plain http only to a loopback address literal)"
            )
        return value


def jku_allowed(url: str) -> bool:
    """https to any host; plain http only to a loopback IP literal (tests). Parsed, not
    compared as a prefix: ``http://127.0.0.1.evil.example`` and ``http://localhost.evil``
    are other hosts."""
    if not unambiguous_url(url):
        return False
    parts = urlsplit(url)
    if parts.scheme.lower() == "https":
        return True
    try:
        return ipaddress.ip_address(parts.hostname or "").is_loopback
    except ValueError:
        return False


class IssuersFile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    issuers: tuple[IssuerConfig, ...] = Field(min_length=1)


class IssuersError(ValueError):
    """The issuers file cannot be used (start-up only)."""


def load_issuers(path: Path) -> dict[str, IssuerConfig]:
    try:
        doc = IssuersFile.model_validate(json.loads(path.read_text(encoding="utf-8")))
    except (OSError, json.JSONDecodeError) as exc:
        raise IssuersError(f"CDS_JWT_ISSUERS_FILE {path}: {exc}") from exc
    except ValidationError as exc:
        where, message = first_problem(exc)
        raise IssuersError(f"CDS_JWT_ISSUERS_FILE {path}: {where}: {message}") from exc
    issuers: dict[str, IssuerConfig] = {}
    for entry in doc.issuers:
        if entry.iss in issuers:
            raise IssuersError(f"CDS_JWT_ISSUERS_FILE {path}: issuer {entry.iss} listed twice")
        if entry.jwks is None and entry.jku is None:
            raise IssuersError(f"CDS_JWT_ISSUERS_FILE {path}: {entry.iss}: give jwks or jku")
        if entry.jwks is not None:
            _key_set(entry.jwks, entry.iss)  # fail at start-up, not at the first call
        issuers[entry.iss] = entry
    return issuers


def _key_set(jwks: Mapping[str, Any], iss: str) -> dict[str, jwt.PyJWK]:
    keys: dict[str, jwt.PyJWK] = {}
    for raw in jwks.get("keys", []):
        if not isinstance(raw, dict) or "kid" not in raw:
            continue
        if raw.get("kty") not in ("EC", "RSA"):
            continue  # symmetric ("oct") keys are never trusted
        try:
            keys[str(raw["kid"])] = jwt.PyJWK(raw)
        except (jwt.PyJWKError, jwt.InvalidKeyError, ValueError, TypeError) as exc:
            raise IssuersError(f"{iss}: key {raw.get('kid')}: {exc}") from exc
    return keys


@dataclass
class _RemoteKeys:
    keys: dict[str, jwt.PyJWK] = field(default_factory=dict)
    fetched_at: float = float("-inf")


class Verifier:
    """Verifies CDS client JWTs for one deployment."""

    def __init__(
        self,
        issuers: Mapping[str, IssuerConfig],
        remember_jti: Callable[[str, str, datetime], bool],
        session: requests.Session,
        skew: int = 60,
        clock: Callable[[], float] = time.time,
        jwks_timeout: float = 2.0,
        monotonic: Callable[[], float] = time.monotonic,
        public_base: str | None = None,
    ) -> None:
        self.issuers = dict(issuers)
        self.public_base = public_base.rstrip("/") if public_base else None
        self.remember_jti = remember_jti
        self.session = session
        self.skew = skew
        self.clock = clock
        self.jwks_timeout = jwks_timeout
        self.monotonic = monotonic
        self._static = {
            iss: _key_set(cfg.jwks, iss) for iss, cfg in self.issuers.items() if cfg.jwks
        }
        self._remote: dict[str, _RemoteKeys] = {}
        self._lock = threading.Lock()

    def verify(self, authorization: str | None, audience: str) -> dict[str, Any]:
        """The verified claims, or Unauthorized (reason logged, token never)."""
        try:
            return self._verify(authorization, audience)
        except Unauthorized as exc:
            logger.warning("client authentication failed: %s", exc.diagnostics)
            metrics.JWT_FAILURES.labels(metrics.jwt_reason(exc.diagnostics)).inc()
            raise

    def _verify(self, authorization: str | None, audience: str) -> dict[str, Any]:
        scheme, _, token = (authorization or "").strip().partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:  # the scheme is case-insensitive (RFC 7235)
            raise Unauthorized("no bearer token")
        try:
            header = jwt.get_unverified_header(token)
            unverified = jwt.decode(token, options={"verify_signature": False})
        except jwt.PyJWTError as exc:
            raise Unauthorized(f"malformed token ({type(exc).__name__})") from exc
        iss = unverified.get("iss")
        issuer = self.issuers.get(iss) if isinstance(iss, str) else None
        if issuer is None:
            raise Unauthorized("issuer not on the allow-list")
        alg = header.get("alg")
        if alg not in ASYMMETRIC:
            raise Unauthorized(f"algorithm {alg!r} not accepted")
        if header.get("typ") not in (None, "JWT"):
            raise Unauthorized("typ is not JWT")
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid:
            raise Unauthorized("no kid")
        jku = header.get("jku")
        pinned = kid in self._static.get(issuer.iss, {})
        if jku is not None and jku != issuer.jku and not pinned:
            # A pinned key for the kid wins over any jku (the sandbox and Epic always send
            # one): nothing is fetched from an unlisted jku either way.
            raise Unauthorized("jku not on the issuer's allow-list (not fetched)")
        key = self._key(issuer, kid)
        if KEY_TYPES[alg[:2]] != key.key_type:
            raise Unauthorized("algorithm does not match the key type")
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key.key,
                algorithms=[alg],
                audience=audience,
                issuer=issuer.iss,
                leeway=self.skew,
                options={"require": ["iss", "aud", "exp", "iat", "jti"]},
            )
        except jwt.ExpiredSignatureError as exc:
            raise Unauthorized("token expired") from exc
        except jwt.InvalidAudienceError as exc:
            raise Unauthorized("aud is not this endpoint") from exc
        except jwt.ImmatureSignatureError as exc:
            raise Unauthorized("iat or nbf in the future") from exc
        except jwt.MissingRequiredClaimError as exc:
            raise Unauthorized(f"missing claim {exc.claim}") from exc
        except jwt.PyJWTError as exc:
            raise Unauthorized(f"invalid token ({type(exc).__name__})") from exc
        aud = claims["aud"]
        if isinstance(aud, list) and not all(self._ours(entry) for entry in aud):
            # PyJWT accepts a list holding our URL among others: a token made for several
            # services could then be replayed here. A list may name only URLs we serve.
            raise Unauthorized("aud lists a URL this service does not serve")
        now = self.clock()
        iat = claims["iat"]
        if not isinstance(iat, int | float) or iat > now + self.skew:
            raise Unauthorized("iat in the future")
        if float(claims["exp"]) > now + MAX_TOKEN_LIFETIME + self.skew:
            # Its jti is remembered for the longest lifetime only: a token valid for longer
            # could be replayed once that memory is gone.
            raise Unauthorized("exp more than an hour away")
        if issuer.tenants is not None and claims.get("tenant") not in issuer.tenants:
            raise Unauthorized("tenant not allowed")
        jti = claims["jti"]
        if not isinstance(jti, str) or not jti:
            raise Unauthorized("jti missing")
        expires = float(claims["exp"]) + self.skew  # at most now + 1 h + 2 x skew
        if not self.remember_jti(issuer.iss, jti, datetime.fromtimestamp(expires, UTC)):
            raise Unauthorized("jti replayed")
        return claims

    def _ours(self, audience: Any) -> bool:
        base = self.public_base
        return (
            isinstance(audience, str)
            and base is not None
            and (audience == base or audience.startswith(base + "/cds-services"))
        )

    def _key(self, issuer: IssuerConfig, kid: str) -> jwt.PyJWK:
        static = self._static.get(issuer.iss, {})
        if kid in static:
            return static[kid]
        if issuer.jku is None:
            raise Unauthorized("unknown kid")
        with self._lock:
            cached = self._remote.setdefault(issuer.iss, _RemoteKeys())
            stale = self.monotonic() - cached.fetched_at >= JWKS_REFRESH_SECONDS
            if kid not in cached.keys and stale:
                cached.fetched_at = self.monotonic()  # one fetch a minute at most, even on failure
                cached.keys = self._fetch(issuer)
            key = cached.keys.get(kid)
        if key is None:
            raise Unauthorized("unknown kid")
        return key

    def _fetch(self, issuer: IssuerConfig) -> dict[str, jwt.PyJWK]:
        assert issuer.jku is not None
        try:
            response = self.session.get(
                issuer.jku, timeout=self.jwks_timeout, allow_redirects=False
            )
            response.raise_for_status()
            return _key_set(response.json(), issuer.iss)
        except (requests.RequestException, ValueError, IssuersError) as exc:
            logger.warning("JWKS of %s could not be fetched: %s", issuer.iss, type(exc).__name__)
            return self._remote.get(issuer.iss, _RemoteKeys()).keys
