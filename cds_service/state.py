"""What the app builds once at start-up, stored in ``app.extensions`` and read per request."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import urllib3
from flask import current_app

from .auth import Verifier
from .config import Settings, SiteConfig
from .mappings import Knowledge
from .rules import Windows
from .services import Service
from .store import Store

EXTENSION_KEY = "cds_service"


@dataclass(frozen=True)
class State:
    settings: Settings
    knowledge: Knowledge
    services: dict[str, Service]
    discovery: dict[str, Any]
    site: SiteConfig
    store: Store
    windows: Windows
    http: urllib3.PoolManager  # the FHIR queries' connections (fhir_client.fhir_pool)
    executor: ThreadPoolExecutor  # runs one call's FHIR queries concurrently
    verifier: Verifier | None  # None: unauthenticated (loopback only, see cli.serve)


def get_state() -> State:
    state: State = current_app.extensions[EXTENSION_KEY]
    return state
