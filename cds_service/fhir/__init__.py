"""FHIR R4 input: the patient record (prefetch and the EHR's FHIR server) and the draft orders,
read into the facts the rules use; the records a card cites validated with ``fhir.resources``.

Speed matters here (records run to thousands of resources): a resource becomes a fact only when
its codes or its words name a concept the rules use, and only the records a card cites are
validated. A resource that fails validation is kept, read leniently (a date that cannot be read
becomes unknown, which the rules treat conservatively) and counted.

Modules: ``elements`` (lenient readers of JSON elements), ``dates``, ``prefetch`` (Bundles,
search notices, next links, whose patient), ``orders`` (draft orders), ``reader`` (one resource
→ its fact, the relevance check), ``lab_values`` and ``resource_facts`` (the facts themselves),
``record`` (one record → ``PatientFacts``), ``validation`` (the only one importing
``fhir.resources``), ``client`` (HTTP to the FHIR server) and ``gather`` (one call's record:
prefetch first, then the FHIR server).
"""

from .dates import parse_date
from .orders import find_draft, match_selections, parse_orders
from .prefetch import (
    PrefetchValue,
    bundle_resources,
    is_error_value,
    next_link,
    other_patient,
    patient_of,
    read_prefetch,
)
from .record import Sources, build_facts
from .validation import count_invalid, validate_cited, warm_up

__all__ = [
    "PrefetchValue",
    "Sources",
    "build_facts",
    "bundle_resources",
    "count_invalid",
    "find_draft",
    "is_error_value",
    "match_selections",
    "next_link",
    "other_patient",
    "parse_date",
    "parse_orders",
    "patient_of",
    "read_prefetch",
    "validate_cited",
    "warm_up",
]
