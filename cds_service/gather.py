"""The patient record for one call: prefetch first, then the EHR's FHIR server for the rest.

Spec rules (CDS Hooks 2.0 §Prefetch): an absent key was not provided (fetch it); ``null`` means
"no data"; an OperationOutcome (or a Bundle of them) means the client hit an error (fetch it).
When a required key can be neither prefetched nor fetched the call ends in 412.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import requests

from .errors import InvalidRequest, PrefetchUnavailable
from .fhir import bundle_resources, is_error_value, next_link
from .fhir_client import FhirClient, FhirUnavailable
from .hooks import CdsRequest
from .services import Service, resolve_template


def gather(
    req: CdsRequest, service: Service, session: requests.Session, timeout: float
) -> tuple[dict[str, list[Mapping[str, Any]]], dict[str, str]]:
    """Resources per prefetch key, and where each key's data came from (for the audit)."""
    tokens = {
        "context.patientId": req.patient_id,
        "context.userId": req.user_id,
        "context.encounterId": req.encounter_id,
    }
    client = (
        FhirClient(session, req.fhir_server, req.access_token, timeout) if req.fhir_server else None
    )
    resources: dict[str, list[Mapping[str, Any]]] = {}
    origin: dict[str, str] = {}
    missing: list[str] = []
    for key, template in service.prefetch.items():
        if key in req.prefetch:
            value = req.prefetch[key]
            if value is None:
                resources[key], origin[key] = [], "prefetch"
                continue
            if not isinstance(value, dict) or not isinstance(value.get("resourceType"), str):
                raise InvalidRequest(
                    f"prefetch.{key} must be a FHIR resource, a Bundle or null", [f"prefetch.{key}"]
                )
            if not is_error_value(value):
                items = list(bundle_resources(value))
                link = next_link(value)
                if link and client is not None:
                    # A paginated prefetch: follow the rest of the pages from the FHIR server.
                    for page in client.fetch(link, key):
                        items.extend(bundle_resources(page))
                resources[key], origin[key] = items, "prefetch"
                continue
        url = resolve_template(template, tokens)
        if client is None or url is None:
            if key in service.required:
                missing.append(key)
            continue
        try:
            pages = client.fetch(url, key)
        except FhirUnavailable:
            if key in service.required:
                raise
            continue
        resources[key] = [r for page in pages for r in bundle_resources(page)]
        origin[key] = "fhir"
    if missing:
        why = "no fhirServer was given" if client is None else "a template could not be filled"
        raise PrefetchUnavailable(
            f"required data missing: prefetch {', '.join(missing)} not provided and {why}",
            [f"prefetch.{key}" for key in missing],
        )
    return resources, origin
