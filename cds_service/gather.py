"""The patient record for one call: prefetch first, then the EHR's FHIR server for the rest.

Spec rules (CDS Hooks 2.0 §Prefetch): an absent key was not provided (fetch it); ``null`` means
"no data"; an OperationOutcome (or a Bundle of them) means the client hit an error (fetch it);
a paginated prefetch Bundle has its further pages fetched. The queries run concurrently inside
one time budget; when a required key can be neither prefetched nor fetched the call ends in 412.
A key whose further pages cannot be read (no fhirServer, or more pages than the client follows)
is kept and marked partial in its origin (``PARTIAL``): the caller must not conclude from what
is absent there.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import Executor, Future, wait
from typing import Any

import urllib3

from .errors import InvalidRequest, PrefetchUnavailable
from .fhir import Received, Record, bundle_resources, received_value
from .fhir_client import FhirClient, FhirUnavailable
from .hooks import CdsRequest
from .services import Service, resolve_template

Resources = list[Record | Mapping[str, Any]]
logger = logging.getLogger("cds_service.gather")
PARTIAL = "-partial"  # origin suffix: more pages exist than were read


def is_partial(origin: str) -> bool:
    return origin.endswith(PARTIAL)


def server_allowed(fhir_server: str, allowlist: Sequence[str]) -> bool:
    """An empty allow-list allows any http(s) base; else the base must start with an entry."""
    if not allowlist:
        return True
    base = fhir_server.rstrip("/") + "/"
    return any(base.startswith(entry.rstrip("/") + "/") for entry in allowlist)


def gather(
    req: CdsRequest,
    service: Service,
    http: urllib3.PoolManager,
    executor: Executor,
    budget: float,
    allowlists: Sequence[Sequence[str]] = (),
) -> tuple[dict[str, Resources], dict[str, str]]:
    """Resources per prefetch key, and where each key's data came from (for the audit)."""
    deadline = time.monotonic() + budget
    tokens = {
        "context.patientId": req.patient_id,
        "context.userId": req.user_id,
        "context.encounterId": req.encounter_id,
    }
    refused = ""
    client = None
    if req.fhir_server:
        if all(server_allowed(req.fhir_server, allowlist) for allowlist in allowlists):
            client = FhirClient(http, req.fhir_server, req.access_token, deadline)
        else:
            refused = "the fhirServer is not on this service's allow-list"
    resources: dict[str, Resources] = {}
    origin: dict[str, str] = {}
    pending: dict[str, tuple[Future[tuple[list[Any], bool]], Resources]] = {}
    missing: list[str] = []
    for key, template in service.prefetch.items():
        value = req.prefetch.get(key)
        if key in req.prefetch and value is None:
            resources[key], origin[key] = [], "prefetch"  # null: the client says "no data"
            continue
        if key in req.prefetch:
            received = value if isinstance(value, Received) else received_value(value)
            if not isinstance(received.resource_type, str):
                raise InvalidRequest(
                    f"prefetch.{key} must be a FHIR resource, a Bundle or null",
                    [f"prefetch.{key}"],
                )
            if not received.error:
                items: Resources = list(received.items)
                link = received.next
                if link and client is not None:
                    pending[key] = (executor.submit(client.fetch, link, key), items)
                else:
                    resources[key] = items
                    origin[key] = "prefetch" + (PARTIAL if link else "")
                continue
        url = resolve_template(template, tokens)
        if client is None or url is None:
            if key in service.required:
                missing.append(key)
            continue
        pending[key] = (executor.submit(client.fetch, url, key), [])
    if missing:
        why = refused or (
            "no fhirServer was given" if not req.fhir_server else "a template could not be filled"
        )
        raise PrefetchUnavailable(
            f"required data missing: prefetch {', '.join(missing)} not provided and {why}",
            [f"prefetch.{key}" for key in missing],
        )
    if pending:
        wait(
            [future for future, _ in pending.values()],
            timeout=max(0.0, deadline - time.monotonic()),
        )
    failed: dict[str, str] = {}  # key -> what went wrong: for the log, never the client
    for key, (future, items) in pending.items():
        if not future.done():
            future.cancel()
            failed[key] = f"{key}: timed out"
            continue
        try:
            pages, complete = future.result()
        except FhirUnavailable as exc:
            failed[key] = exc.diagnostics
            continue
        resources[key] = items + [r for page in pages for r in bundle_resources(page)]
        origin[key] = ("prefetch+fhir" if items else "fhir") + ("" if complete else PARTIAL)
    if failed:
        logger.warning(
            "FHIR reads failed",
            extra={"fields": {"event": "fhir-unavailable", "failed": sorted(failed.values())}},
        )
    keys = [key for key in failed if key in service.required]
    if keys:
        # The client learns which data is missing, not why: refused, timed out, 404 or a
        # protocol error would map the network behind an arbitrary fhirServer.
        raise FhirUnavailable(
            "required data could not be read from the FHIR server: " + ", ".join(keys),
            [f"prefetch.{key}" for key in keys],
        )
    return resources, origin
