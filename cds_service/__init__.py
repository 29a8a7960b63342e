"""breast-surveillance-cds: a CDS Hooks 2.0 service for ACR Variant 10 (breast cancer surveillance).

The WSGI entry point is ``create_app()``: ``gunicorn 'cds_service:create_app()'``.
"""

from __future__ import annotations

import gc
import logging
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import requests
from flask import Flask
from requests.adapters import HTTPAdapter
from werkzeug.middleware.proxy_fix import ProxyFix

from . import api, errors, fhir, logs, ops
from .auth import Verifier, load_issuers
from .config import Settings, SettingsError, SiteConfig, load_settings, load_site_config
from .fhir.client import fhir_pool
from .mappings import Knowledge, load_dir
from .rules import REQUIRED_CONCEPTS, WARNING_ENABLERS, Windows
from .services import load_services
from .state import APP_STATE_KEY, State
from .store import open_store

__all__ = ["create_app"]
__version__ = "0.1.0"


def _session() -> requests.Session:
    """The session of the JWKS fetches (client authentication); no proxies or netrc from the
    environment. FHIR queries have their own pool (``fhir.client.fhir_pool``)."""
    session = requests.Session()
    session.trust_env = False
    adapter = HTTPAdapter(pool_connections=8, pool_maxsize=32, max_retries=0)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session


def _check_site(site: SiteConfig, knowledge: Knowledge) -> None:
    warn = {k for k, v in knowledge.guideline.studies.items() if v.warn}
    unknown = set(site.warn_studies or ()) - warn
    if unknown:
        raise SettingsError(f"CDS_CONFIG_FILE: warn_studies: unknown studies {sorted(unknown)}")
    offered = {
        knowledge.override_reasons.snooze_days(c.code) for c in knowledge.override_reasons.concept
    }
    months = {round(m * 365 / 12) for m in site.snooze_months}
    if not months <= offered:
        raise SettingsError("CDS_CONFIG_FILE: snooze_months: no override reason for some periods")


def _tune_gc() -> None:
    """A hook call on a large record allocates hundreds of thousands of short-lived objects
    (parsed JSON); with the default thresholds the collector rescans them many times per call.
    Objects alive at start-up are frozen out of its reach; later generations run less often.
    Measured with bench/ (5,000 resources: 186 → 106 ms in-process)."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 20, 100)


def _warn_insecure_fhir(settings: Settings) -> None:
    if settings.allow_insecure_fhir:
        logging.getLogger("cds_service").warning(
            "CDS_ALLOW_INSECURE_FHIR=true: the EHR's access token may be sent to plain-http "
            "FHIR servers; never use this with real patient data",
            extra={"fields": {"event": "insecure-fhir-allowed"}},
        )


def create_app(config: Mapping[str, Any] | None = None) -> Flask:
    """Create the app; fails fast (MappingError, SettingsError) when data or settings are bad."""
    settings = load_settings(config)
    site = load_site_config(settings.config_file)
    knowledge = load_dir(settings.mappings_dir, REQUIRED_CONCEPTS, WARNING_ENABLERS)
    _check_site(site, knowledge)
    services = load_services()
    app = Flask(__name__)
    instance = Path(settings.instance_dir or app.instance_path)
    store = open_store(settings, instance, migrate=settings.auto_migrate)
    session = _session()
    verifier = None
    if settings.jwt_issuers_file is not None:
        if not settings.public_base_url:
            # Else the expected aud would come from the request's Host header, which the
            # client chooses.
            raise SettingsError(
                "CDS_PUBLIC_BASE_URL is required with CDS_JWT_ISSUERS_FILE: the JWT's aud is "
                "checked against it (https://cds.example.org)"
            )
        verifier = Verifier(
            load_issuers(settings.jwt_issuers_file),
            store.remember_token,
            session,
            skew=settings.jwt_skew,
            public_base=settings.public_base_url,
        )
    origins = settings.cors_origins
    if origins is None:
        origins = ("*",) if verifier is None else ()
    if verifier is not None and "*" in origins:
        raise SettingsError("CDS_CORS_ORIGINS: '*' is only allowed without client authentication")
    app.config["CDS_CORS_ORIGINS"] = origins
    app.config["MAX_CONTENT_LENGTH"] = settings.max_body_bytes
    app.json.sort_keys = False  # type: ignore[attr-defined]
    app.extensions[APP_STATE_KEY] = State(
        settings=settings,
        knowledge=knowledge,
        services=services,
        discovery={"services": [s.discovery_entry() for s in services.values()]},
        site=site,
        store=store,
        windows=site.over(settings.over(Windows())),
        http=fhir_pool(),
        verifier=verifier,
        executor=ThreadPoolExecutor(max_workers=16, thread_name_prefix="fhir"),
    )
    errors.register_error_handlers(app)
    app.register_blueprint(ops.bp)  # first: its clock starts before client authentication
    app.register_blueprint(api.bp)
    if settings.trust_proxy:
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=1, x_proto=1, x_host=1, x_port=1)  # type: ignore[method-assign]
    logs.configure()
    _warn_insecure_fhir(settings)
    fhir.warm_up()
    _tune_gc()
    return app
