"""breast-surveillance-cds: a CDS Hooks 2.0 service for ACR Variant 10 (breast cancer surveillance).

The WSGI entry point is ``create_app()``: ``gunicorn 'cds_service:create_app()'``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import requests
from flask import Flask
from requests.adapters import HTTPAdapter

from . import api, errors
from .config import load_settings
from .mappings import load_dir
from .rules import REQUIRED_CONCEPTS, Windows
from .services import load_services
from .state import EXTENSION_KEY, State

__all__ = ["create_app"]
__version__ = "0.1.0"


def _session() -> requests.Session:
    """One pooled session for all FHIR queries; no proxies or netrc from the environment."""
    session = requests.Session()
    session.trust_env = False
    adapter = HTTPAdapter(pool_connections=8, pool_maxsize=32, max_retries=0)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session


def create_app(config: Mapping[str, Any] | None = None) -> Flask:
    """Create the app; fails fast (MappingError, SettingsError) when data or settings are bad."""
    settings = load_settings(config)
    knowledge = load_dir(settings.mappings_dir, REQUIRED_CONCEPTS)
    services = load_services()
    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = settings.max_body_bytes
    app.json.sort_keys = False  # type: ignore[attr-defined]
    app.extensions[EXTENSION_KEY] = State(
        settings=settings,
        knowledge=knowledge,
        services=services,
        discovery={"services": [s.discovery_entry() for s in services.values()]},
        windows=Windows(
            symptom_new=settings.symptom_new_days,
            symptom_persistent=settings.symptom_persistent_days,
            lab=settings.lab_window_days,
            new_diagnosis=settings.new_diagnosis_days,
            active_treatment=settings.active_treatment_days,
        ),
        http=_session(),
        executor=ThreadPoolExecutor(max_workers=16, thread_name_prefix="fhir"),
    )
    errors.register_error_handlers(app)
    app.register_blueprint(api.bp)
    if not logging.getLogger("cds_service").handlers and not logging.getLogger().handlers:
        logging.basicConfig(
            level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s"
        )
    return app
