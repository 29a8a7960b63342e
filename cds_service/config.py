"""Settings: defaults, then ``CDS_``-prefixed environment variables, then explicit overrides."""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, fields
from datetime import date
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from .errors import first_problem

PACKAGE_DIR = Path(__file__).resolve().parent


def default_mappings_dir() -> Path:
    """The repository's ``mappings/`` in a source checkout, else the copy packaged in the wheel."""
    source_tree = PACKAGE_DIR.parent / "mappings"
    if source_tree.is_dir():
        return source_tree
    return PACKAGE_DIR / "_mappings"


@dataclass(frozen=True)
class Settings:
    """Everything the service reads from its environment, read once at start-up."""

    mappings_dir: Path
    # A fixed "today" for replaying recorded requests and for tests; None means the real date.
    today: date | None = None
    # Variant 11 windows (days): a symptom is "new" when recorded within symptom_new_days,
    # "persistent" when still active with onset within symptom_persistent_days.
    symptom_new_days: int = 90
    symptom_persistent_days: int = 365
    lab_window_days: int = 90
    # Initial work-up: diagnosis within this many days and no completed definitive surgery.
    new_diagnosis_days: int = 365
    # Active systemic treatment: chemotherapy given or prescribed within this many days.
    active_treatment_days: int = 183
    # The service's external base URL (https://cds.example.org); else taken from each request.
    public_base_url: str | None = None
    # The store: SQLite in the instance folder unless a URL is given (postgresql+psycopg://...).
    database_url: str | None = None
    instance_dir: Path | None = None
    audit_key: str | None = None  # HMAC key for patient hashes in the audit
    auto_migrate: bool = True
    # False: hook calls are answered but not audited (``cds-service evaluate`` trying a request
    # file must not count as a call in the pilot's report).
    audit_calls: bool = True
    # Site configuration (TOML): silent mode, studies that warn, max cards, snooze periods.
    config_file: Path | None = None
    # Client authentication (CDS Hooks JWT): trusted issuers; none means unauthenticated,
    # which `cds-service serve` allows on loopback addresses only.
    jwt_issuers_file: Path | None = None
    jwt_skew: int = 60
    trust_proxy: bool = False  # honour X-Forwarded-* (behind a reverse proxy you control)
    cors_origins: tuple[str, ...] | None = None  # None: "*" when unauthenticated, else none
    max_body_bytes: int = 5 * 1024 * 1024
    # Overall budget for FHIR queries of one hook call, in seconds.
    fhir_timeout: float = 2.5
    # FHIR bases the service may query (prefixes); empty: any http(s) fhirServer.
    fhir_server_allowlist: tuple[str, ...] = ()
    # Send the EHR's access token to a plain-http (non-loopback) fhirServer: off, as CDS Hooks
    # requires TLS for production data; a test site may opt in (logged loudly at start-up).
    allow_insecure_fhir: bool = False
    # Bearer token GET /metrics requires; None: /metrics is open (bind or firewall it).
    metrics_token: str | None = None


_ENV_TYPES: dict[str, type] = {
    "mappings_dir": Path,
    "today": date,
    "symptom_new_days": int,
    "symptom_persistent_days": int,
    "lab_window_days": int,
    "new_diagnosis_days": int,
    "active_treatment_days": int,
    "public_base_url": str,
    "database_url": str,
    "instance_dir": Path,
    "audit_key": str,
    "auto_migrate": bool,
    "audit_calls": bool,
    "config_file": Path,
    "jwt_issuers_file": Path,
    "jwt_skew": int,
    "trust_proxy": bool,
    "cors_origins": tuple,
    "max_body_bytes": int,
    "fhir_timeout": float,
    "fhir_server_allowlist": tuple,
    "allow_insecure_fhir": bool,
    "metrics_token": str,
}


class SettingsError(ValueError):
    """A configuration value cannot be used; raised at start-up only."""


def _convert(name: str, raw: Any) -> Any:
    kind = _ENV_TYPES[name]
    if raw is None or (isinstance(raw, kind) and kind is not tuple):
        return raw
    text = str(raw).strip()
    try:
        if kind is bool:
            if text.lower() in ("1", "true", "yes", "on"):
                return True
            if text.lower() in ("0", "false", "no", "off"):
                return False
            raise ValueError("must be true or false")
        if kind is tuple:
            items = raw if isinstance(raw, list | tuple) else text.split(",")
            return tuple(str(item).strip() for item in items if str(item).strip())
        if kind is date:
            return date.fromisoformat(text) if text else None
        if kind is int or kind is float:
            value = kind(text)
            if value <= 0:
                raise ValueError("must be a positive number")
            return value
        return kind(text)
    except ValueError as exc:
        raise SettingsError(f"CDS_{name.upper()}: {raw!r}: {exc}") from exc


def load_settings(
    overrides: Mapping[str, Any] | None = None, environ: Mapping[str, str] | None = None
) -> Settings:
    """Build Settings from ``CDS_<NAME>`` environment variables and ``overrides`` (which win)."""
    env = os.environ if environ is None else environ
    values: dict[str, Any] = {"mappings_dir": default_mappings_dir()}
    for field in fields(Settings):
        key = f"CDS_{field.name.upper()}"
        if key in env:
            values[field.name] = _convert(field.name, env[key])
    for name, raw in (overrides or {}).items():
        if name not in _ENV_TYPES:
            raise SettingsError(f"unknown setting {name!r}")
        values[name] = _convert(name, raw)
    return Settings(**values)


class SiteConfig(BaseModel):
    """The site configuration file (``CDS_CONFIG_FILE``, TOML), validated at start-up."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    silent: bool = False  # shadow mode: evaluate and audit, return no cards and no actions
    max_cards: int = Field(default=10, ge=1, le=100)
    warn_studies: tuple[str, ...] | None = None  # None: every study the guideline rates
    snooze_months: tuple[int, ...] = (3, 6, 12)
    # Repeat suppression (Da Vinci CRD): at order-sign, a warning already shown at order-select
    # for the same draft order and patient within this many minutes is not shown again (its
    # rating still is). 0 turns it off; silent mode never suppresses.
    repeat_window_minutes: int = Field(default=60, ge=0, le=7 * 24 * 60)
    symptom_new_days: int | None = Field(default=None, gt=0)
    symptom_persistent_days: int | None = Field(default=None, gt=0)
    lab_window_days: int | None = Field(default=None, gt=0)
    new_diagnosis_days: int | None = Field(default=None, gt=0)
    active_treatment_days: int | None = Field(default=None, gt=0)


def load_site_config(path: Path | None) -> SiteConfig:
    if path is None:
        return SiteConfig()
    try:
        with open(path, "rb") as handle:
            data = tomllib.load(handle)
        return SiteConfig.model_validate(data)
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise SettingsError(f"CDS_CONFIG_FILE {path}: {exc}") from exc
    except ValidationError as exc:
        where, message = first_problem(exc)
        raise SettingsError(f"CDS_CONFIG_FILE {path}: {where}: {message}") from exc
