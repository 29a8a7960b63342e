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

import ipaddress
import logging
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import Executor, Future, wait
from typing import Any
from urllib.parse import urlsplit

import urllib3

from ..errors import InvalidRequest, PrefetchUnavailable
from ..hooks import CdsRequest
from ..services import Service, resolve_template
from .client import FhirClient, FhirUnavailable, QueryFailed
from .prefetch import PrefetchValue, bundle_resources, other_patient, read_prefetch

logger = logging.getLogger("cds_service.gather")
Resources = list[Mapping[str, Any]]
PARTIAL = "-partial"  # origin suffix: more pages exist than were read


def is_partial(origin: str) -> bool:
    return origin.endswith(PARTIAL)


def server_allowed(fhir_server: str, allowlist: Sequence[str]) -> bool:
    """An empty allow-list allows any http(s) base; else the base must start with an entry."""
    if not allowlist:
        return True
    base = fhir_server.rstrip("/") + "/"
    return any(base.startswith(entry.rstrip("/") + "/") for entry in allowlist)


def refuse_other_patient(key: str, resources: Sequence[Mapping[str, Any]], patient_id: str) -> None:
    """A prefetch holding another patient's record is a client error: refused (400 naming the
    key), never read (a warning must not come from someone else's chart). Logged with the key
    and the resource type only, never an id."""
    rtype = other_patient(resources, patient_id)
    if rtype is None:
        return
    logger.warning(
        "prefetch of another patient refused",
        extra={"fields": {"event": "wrong-patient", "key": f"prefetch.{key}", "type": rtype}},
    )
    raise InvalidRequest(
        f"prefetch.{key} holds a {rtype} of another patient than context.patientId",
        [f"prefetch.{key}"],
    )


def refuse_other_patient_orders(
    draft_orders: Mapping[str, Any], references: set[str], patient_id: str
) -> None:
    """A draft order the service judges (an imaging or tumour-marker order, read together
    with this patient's record) whose subject is another patient: refused like a prefetch of
    another patient. Draft orders it never reads (medications, nutrition: the Da Vinci CRD
    test kit sends such drafts with another subject) are not its business."""
    for index, entry in enumerate(_entries(draft_orders)):
        resource = entry.get("resource")
        if not isinstance(resource, dict):
            continue
        rid = resource.get("id")
        reference = f"{resource.get('resourceType')}/{rid}" if rid else resource.get("resourceType")
        if reference in references and other_patient([resource], patient_id):
            logger.warning(
                "draft order of another patient refused",
                extra={"fields": {"event": "wrong-patient", "key": "context.draftOrders"}},
            )
            raise InvalidRequest(
                f"context.draftOrders.entry[{index}] is an order for another patient than "
                "context.patientId",
                [f"context.draftOrders.entry[{index}].resource.subject"],
            )


def _entries(bundle: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    entries = bundle.get("entry")
    return [e for e in entries if isinstance(e, dict)] if isinstance(entries, list) else []


_LOOPBACK_NAMES = frozenset({"localhost", "localhost.localdomain"})


def insecure_for_token(fhir_server: str) -> bool:
    """A plain-http fhirServer that is not on this machine (loopback): the EHR's token would
    cross the network in clear text. CDS Hooks 2.0 requires TLS for production data."""
    parts = urlsplit(fhir_server)
    if parts.scheme.lower() != "http":
        return False
    host = (parts.hostname or "").lower()
    if host in _LOOPBACK_NAMES or host.endswith(".localhost"):
        return False
    try:
        return not ipaddress.ip_address(host).is_loopback
    except ValueError:
        return True  # a name that is not localhost: it may resolve anywhere


def gather(
    req: CdsRequest,
    service: Service,
    http: urllib3.PoolManager,
    executor: Executor,
    budget: float,
    allowlists: Sequence[Sequence[str]] = (),
    allow_insecure: bool = False,
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
        if not all(server_allowed(req.fhir_server, allowlist) for allowlist in allowlists):
            refused = "the fhirServer is not on this service's allow-list"
        elif req.access_token and not allow_insecure and insecure_for_token(req.fhir_server):
            refused = (
                "the fhirServer is plain http (not TLS, not loopback) and this service does "
                "not send the EHR's access token over it"
            )
        else:
            client = FhirClient(http, req.fhir_server, req.access_token, deadline)
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
            received = value if isinstance(value, PrefetchValue) else read_prefetch(value)
            if not isinstance(received.resource_type, str):
                raise InvalidRequest(
                    f"prefetch.{key} must be a FHIR resource, a Bundle or null",
                    [f"prefetch.{key}"],
                )
            if not received.error:
                refuse_other_patient(key, received.resources, req.patient_id)
                items: Resources = list(received.resources)
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
    failed: list[QueryFailed] = []  # what went wrong, per key: for the log, never the client
    for key, (future, items) in pending.items():
        if not future.done():
            future.cancel()
            failed.append(QueryFailed(key, "timed out"))
            continue
        try:
            pages, complete = future.result()
        except QueryFailed as exc:
            failed.append(exc)
            continue
        resources[key] = items + [r for page in pages for r in bundle_resources(page)]
        origin[key] = ("prefetch+fhir" if items else "fhir") + ("" if complete else PARTIAL)
    if failed:
        logger.warning(
            "FHIR reads failed",
            extra={
                "fields": {
                    "event": "fhir-unavailable",
                    "failed": sorted(failure.diagnostics for failure in failed),
                }
            },
        )
    keys = [failure.key for failure in failed if failure.key in service.required]
    if keys:
        # The client learns which data is missing, not why: refused, timed out, 404 or a
        # protocol error would map the network behind an arbitrary fhirServer.
        raise FhirUnavailable(
            "required data could not be read from the FHIR server: " + ", ".join(keys),
            [f"prefetch.{key}" for key in keys],
        )
    return resources, origin
