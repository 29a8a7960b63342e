"""What the app builds once at start-up, stored in ``app.extensions`` and read per request."""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import date
from typing import Any

import urllib3
from flask import current_app

from . import pipeline
from .auth import Verifier
from .config import Settings, SiteConfig
from .hooks import CdsRequest
from .mappings import Knowledge
from .pipeline import Decision, FhirAccess, Lap
from .policy import parse_client_options
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

    def decide(
        self,
        req: CdsRequest,
        service: Service,
        base_url: str,
        issuer_fhir_servers: Sequence[str] = (),
        lap: Lap | None = None,
    ) -> Decision:
        """One call through the pipeline with this app's knowledge, store, FHIR access, date,
        windows and site (``pipeline.decide`` looked up at call time, so a measuring tool can
        stand in for it)."""
        return pipeline.decide(
            req,
            service,
            parse_client_options(req.extension),
            knowledge=self.knowledge,
            store=self.store,
            fhir=self.fhir_access(issuer_fhir_servers),
            base_url=base_url,
            today=self.today(),
            windows=self.windows,
            site=self.site,
            lap=lap,
        )


def get_state() -> State:
    state: State = current_app.extensions[APP_STATE_KEY]
    return state
