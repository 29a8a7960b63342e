"""What the app builds once at start-up, stored in ``app.extensions`` and read per request."""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import date
from typing import Any

import urllib3
from flask import current_app

from .auth import Verifier
from .config import Settings, SiteConfig
from .mappings import Knowledge
from .pipeline import FhirAccess
from .rules import Windows
from .services import Service
from .store import Store

APP_STATE_KEY = "cds_service"  # app.extensions[APP_STATE_KEY] holds the State


@dataclass(frozen=True)
class State:
    settings: Settings
    knowledge: Knowledge
    services: dict[str, Service]
    discovery: dict[str, Any]
    site: SiteConfig
    store: Store
    windows: Windows
    http: urllib3.PoolManager  # the FHIR queries' connections (fhir.client.fhir_pool)
    executor: ThreadPoolExecutor  # runs one call's FHIR queries concurrently
    verifier: Verifier | None  # None: unauthenticated (loopback only, see cli.serve)

    def fhir_access(self, issuer_fhir_servers: Sequence[str] = ()) -> FhirAccess:
        """The pipeline's FHIR reads for one call: the site's allowlist and, for an
        authenticated client, its issuer's FHIR servers."""
        settings = self.settings
        return FhirAccess(
            self.http,
            self.executor,
            settings.fhir_timeout,
            (settings.fhir_server_allowlist, issuer_fhir_servers),
            settings.allow_insecure_fhir,
        )

    def today(self) -> date:
        """The configured fixed date (replays, tests), else the real one."""
        return self.settings.today or date.today()


def get_state() -> State:
    state: State = current_app.extensions[APP_STATE_KEY]
    return state
