"""Settings (``CDS_*`` environment variables, then explicit overrides) and the site file."""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from datetime import date
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from .errors import first_problem
from .rules import Windows

PACKAGE_DIR = Path(__file__).resolve().parent


def default_mappings_dir() -> Path:
    """The repository's ``mappings/`` in a source checkout, else the copy packaged in the wheel."""
    source_tree = PACKAGE_DIR.parent / "mappings"
    if source_tree.is_dir():
        return source_tree
    return PACKAGE_DIR / "_mappings"


class SettingsError(ValueError):
    """A configuration value cannot be used; raised at start-up only."""


def _text(raw: Any) -> Any:
    """An environment value (or a string override) without its surrounding blanks."""
    return raw.strip() if isinstance(raw, str) else raw


def _flag(raw: Any) -> Any:
    if isinstance(raw, bool):
        return raw
    text = str(raw).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise ValueError("must be true or false")


def _items(raw: Any) -> Any:
    """A comma-separated list (or a list): its non-blank items, stripped."""
    items = raw if isinstance(raw, list | tuple) else str(raw).split(",")
    return tuple(str(item).strip() for item in items if str(item).strip())


def _day(raw: Any) -> Any:
    return (raw.strip() or None) if isinstance(raw, str) else raw


Flag = Annotated[bool, BeforeValidator(_flag)]
Positive = Annotated[int, BeforeValidator(_text), Field(gt=0)]
Seconds = Annotated[float, BeforeValidator(_text), Field(gt=0)]
Folder = Annotated[Path, BeforeValidator(_text)]
Items = Annotated[tuple[str, ...], NoDecode, BeforeValidator(_items)]


class WindowDays(BaseModel):
    """The look-back windows in days, declared once for the environment (``CDS_*_DAYS``) and
    the site file; a window not set keeps the rules' default (``rules.Windows``)."""

    # Variant 11: a symptom is "new" when recorded within symptom_new_days, "persistent" when
    # still active with onset within symptom_persistent_days.
    symptom_new_days: Positive | None = None
    symptom_persistent_days: Positive | None = None
    lab_window_days: Positive | None = None
    # Initial work-up: diagnosis within this many days and no completed definitive surgery.
    new_diagnosis_days: Positive | None = None
    # Active systemic treatment: chemotherapy given or prescribed within this many days.
    active_treatment_days: Positive | None = None

    def over(self, windows: Windows) -> Windows:
        """``windows`` with the windows set here in its place."""
        return Windows(
            symptom_new=self.symptom_new_days or windows.symptom_new,
            symptom_persistent=self.symptom_persistent_days or windows.symptom_persistent,
            lab=self.lab_window_days or windows.lab,
            new_diagnosis=self.new_diagnosis_days or windows.new_diagnosis,
            active_treatment=self.active_treatment_days or windows.active_treatment,
        )


class Settings(WindowDays, BaseSettings):
    """Everything the service reads from its environment (``CDS_<NAME>``), read once at
    start-up; explicit overrides win over the environment."""

    model_config = SettingsConfigDict(env_prefix="CDS_", frozen=True, extra="forbid")

    mappings_dir: Folder = Field(default_factory=default_mappings_dir)
    # A fixed "today" for replaying recorded requests and for tests; None means the real date.
    today: Annotated[date | None, BeforeValidator(_day)] = None
    # The service's external base URL (https://cds.example.org); else taken from each request.
    public_base_url: str | None = None
    # The store: SQLite in the instance folder unless a URL is given (postgresql+psycopg://...).
    database_url: str | None = None
    instance_dir: Folder | None = None
    audit_key: str | None = None  # HMAC key for patient hashes in the audit
    auto_migrate: Flag = True
    # False: hook calls are answered but not audited (``cds-service evaluate`` trying a request
    # file must not count as a call in the pilot's report).
    audit_calls: Flag = True
    # Site configuration (TOML): silent mode, studies that warn, max cards, snooze periods.
    config_file: Folder | None = None
    # Client authentication (CDS Hooks JWT): trusted issuers; none means unauthenticated,
    # which `cds-service serve` allows on loopback addresses only.
    jwt_issuers_file: Folder | None = None
    jwt_skew: Positive = 60
    trust_proxy: Flag = False  # honour X-Forwarded-* (behind a reverse proxy you control)
    cors_origins: Items | None = None  # None: "*" when unauthenticated, else none
    max_body_bytes: Positive = 5 * 1024 * 1024
    # Overall budget for FHIR queries of one hook call, in seconds.
    fhir_timeout: Seconds = 2.5
    # FHIR bases the service may query (prefixes); empty: any http(s) fhirServer.
    fhir_server_allowlist: Items = ()
    # Send the EHR's access token to a plain-http (non-loopback) fhirServer: off, as CDS Hooks
    # requires TLS for production data; a test site may opt in (logged loudly at start-up).
    allow_insecure_fhir: Flag = False
    # Bearer token GET /metrics requires; None: /metrics is open (bind or firewall it).
    metrics_token: str | None = None


def load_settings(overrides: Mapping[str, Any] | None = None) -> Settings:
    """Build Settings from ``CDS_<NAME>`` environment variables and ``overrides`` (which win)."""
    for name in overrides or {}:
        if name not in Settings.model_fields:
            raise SettingsError(f"unknown setting {name!r}")
    try:
        return Settings(**(overrides or {}))
    except ValidationError as exc:
        first = exc.errors()[0]
        name = str(first["loc"][0])
        message = str(first["msg"]).removeprefix("Value error, ")
        raise SettingsError(f"CDS_{name.upper()}: {first['input']!r}: {message}") from exc


class SiteConfig(WindowDays):
    """The site configuration file (``CDS_CONFIG_FILE``, TOML), validated at start-up; its
    look-back windows win over the environment's."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    silent: bool = False  # shadow mode: evaluate and audit, return no cards and no actions
    max_cards: int = Field(default=10, ge=1, le=100)
    warn_studies: tuple[str, ...] | None = None  # None: every study the guideline rates
    snooze_months: tuple[int, ...] = (3, 6, 12)
    # Repeat suppression (Da Vinci CRD): at order-sign, a warning already shown at order-select
    # for the same draft order and patient within this many minutes is not shown again (its
    # rating still is). 0 turns it off; silent mode never suppresses.
    repeat_window_minutes: int = Field(default=60, ge=0, le=7 * 24 * 60)


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
