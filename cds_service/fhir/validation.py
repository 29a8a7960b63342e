"""Validation with ``fhir.resources`` (R4B), the only module importing it: a cache of outcomes
per resource content, the records a card cites, and the models' warm-up at start-up.

A resource that fails validation is kept and read leniently elsewhere; the log names its type
and the failing element, never a value.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from typing import Any

import orjson
from fhir.resources.R4B import get_fhir_model_class
from pydantic import ValidationError

from .record import MEDICATION_TYPES, PROCEDURE_TYPES, Sources

logger = logging.getLogger("cds_service.fhir")


class _ValidationCache:
    """Outcomes of validating identical resource content: order-select re-fires many times per
    order session with the same record, so each resource is validated once, not on every call.
    Keyed by a digest of the canonical JSON; bounded (least recently used entries go)."""

    def __init__(self, size: int = 20_000) -> None:
        self.size = size
        self.entries: OrderedDict[bytes, tuple[str, ...]] = OrderedDict()
        self.lock = threading.Lock()

    def get(self, key: bytes) -> tuple[str, ...] | None:
        with self.lock:
            found = self.entries.get(key)
            if found is not None:
                self.entries.move_to_end(key)
            return found

    def put(self, key: bytes, value: tuple[str, ...]) -> None:
        with self.lock:
            self.entries[key] = value
            if len(self.entries) > self.size:
                self.entries.popitem(last=False)


_VALIDATED = _ValidationCache()


def validate(resource: Mapping[str, Any], location: str) -> list[str]:
    """Validate with fhir.resources R4B; return the failing element paths (empty when valid).
    ``location`` says where the resource stands in the request (``prefetch.key[3]``,
    ``context.draftOrders.entry[0].resource``): the log names it."""
    try:
        key = hashlib.blake2b(orjson.dumps(resource, option=orjson.OPT_SORT_KEYS), digest_size=16)
    except TypeError:
        return _validate_now(resource, location)
    digest = key.digest()
    cached = _VALIDATED.get(digest)
    if cached is None:
        cached = tuple(_validate_now(resource, location))
        _VALIDATED.put(digest, cached)
    elif cached:
        _log_invalid(resource, location, list(cached))
    return list(cached)


def _log_invalid(resource: Mapping[str, Any], location: str, failing_elements: list[str]) -> None:
    logger.warning(
        "invalid resource read leniently",
        extra={
            "fields": {
                "event": "invalid-resource",
                "resourceType": str(resource.get("resourceType"))[:40],
                "at": location,
                "elements": failing_elements[:5],
            }
        },
    )


def _validate_now(resource: Mapping[str, Any], location: str) -> list[str]:
    try:
        model = get_fhir_model_class(str(resource.get("resourceType")))
    except (KeyError, ValueError):
        return ["resourceType"]
    try:
        model.model_validate(resource)
    except ValidationError as exc:
        failing_elements = sorted({".".join(str(p) for p in err["loc"]) for err in exc.errors()})
        _log_invalid(resource, location, failing_elements)
        return failing_elements
    return []


def validate_cited(cited: Iterable[tuple[str, str]], sources: Sources) -> int:
    """Validate, with fhir.resources R4B, the records a card cites as evidence; an invalid one
    is logged (type and element, never a value). Returns how many were invalid."""
    invalid = 0
    for key in dict.fromkeys(cited):
        found = sources.get(key)
        if found is not None and validate(found[1], found[0]):
            invalid += 1
    return invalid


def count_invalid(resources: Iterable[Mapping[str, Any]]) -> int:
    """How many of these resources fail R4 validation (tools and tests; not the hot path)."""
    return sum(1 for index, r in enumerate(resources) if validate(r, f"resource[{index}]"))


# The elements records commonly carry, of every datatype the validated types nest; values are
# placeholders (validation errors are expected and ignored).
_WARM_UP_ELEMENTS: dict[str, Any] = {
    "id": "warm-up",
    "meta": {"profile": ["http://example.org/StructureDefinition/warm-up"]},
    "extension": [{"url": "http://example.org/warm-up", "valueString": "x"}],
    "identifier": [{"system": "http://example.org", "value": "x"}],
    "status": "unknown",
    "intent": "order",
    "category": [{"coding": [{"system": "http://example.org", "code": "x"}]}],
    "code": {"coding": [{"system": "http://example.org", "code": "x", "display": "x"}]},
    "clinicalStatus": {"coding": [{"system": "http://example.org", "code": "x"}]},
    "subject": {"reference": "Patient/warm-up"},
    "encounter": {"reference": "Encounter/warm-up"},
    "effectiveDateTime": "2020-01-01",
    "onsetDateTime": "2020-01-01",
    "performedPeriod": {"start": "2020-01-01"},
    "authoredOn": "2020-01-01",
    "valueQuantity": {"value": 1, "unit": "x"},
    "referenceRange": [{"high": {"value": 1}}],
    "stage": [{"summary": {"text": "x"}}],
    "reasonCode": [{"text": "x"}],
    "bodySite": [{"text": "x"}],
    "note": [{"text": "x"}],
    "medicationCodeableConcept": {"text": "x"},
}
VALIDATED_TYPES = (
    "Patient",
    "Condition",
    "Observation",
    *PROCEDURE_TYPES,
    *MEDICATION_TYPES,
)


def warm_up() -> None:
    """Load and build the fhir.resources models of the record types this service validates
    (their modules, and those of the datatypes they nest, load on first use): at start-up, not
    inside a worker's first hook call (a first call took ~140 ms more without this)."""
    for rtype in VALIDATED_TYPES:
        try:
            get_fhir_model_class(rtype).model_validate({"resourceType": rtype, **_WARM_UP_ELEMENTS})
        except ValidationError:
            pass
