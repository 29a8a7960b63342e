"""Draft orders: which ones a call judges (``selections``), each read into an ``OrderFact``
(its codes, reasons and words), refused with a 400 when the rules could not read it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from ..errors import InvalidRequest
from ..facts import OrderFact, ReasonFact
from ..mappings import CodeMap
from .elements import as_dict, as_list, as_str, coding_pairs, concept_label
from .texts import concept_texts, note_texts, reference_displays
from .validation import validate

# Elements of a draft ServiceRequest the rules read: an invalid one is a 400, not a skip.
ORDER_FIELDS_READ = frozenset(
    {"resourceType", "id", "code", "reasonCode", "reasonReference", "bodySite"}
)


# Order types of earlier FHIR versions (the hook's STU3 and DSTU2 examples): an R4 service
# reading them would silently judge nothing, so they are refused by name.
_OLDER_FHIR_ORDERS = {
    "ProcedureRequest": "FHIR STU3/DSTU2",
    "DiagnosticOrder": "FHIR DSTU2",
    "MedicationOrder": "FHIR DSTU2",
    "ReferralRequest": "FHIR STU3",
}


def parse_orders(
    draft_orders: Any, selections: Sequence[str] | None, code_map: CodeMap
) -> list[OrderFact]:
    """The orders to judge: the selected ones (order-select) or all of them (order-sign)."""
    wanted = set(selections) if selections is not None else None
    orders = []
    for index, entry in enumerate(as_list(as_dict(draft_orders).get("entry"))):
        resource = as_dict(as_dict(entry).get("resource"))
        rtype = as_str(resource.get("resourceType")) or ""
        rid = as_str(resource.get("id"))
        reference = f"{rtype}/{rid}" if rid else rtype
        if wanted is not None and reference not in wanted:
            continue
        if rtype in _OLDER_FHIR_ORDERS:
            raise InvalidRequest(
                f"draft order {reference} is a {rtype} ({_OLDER_FHIR_ORDERS[rtype]}): this "
                "service reads FHIR R4 draft orders (an imaging order is a ServiceRequest)",
                [f"context.draftOrders.entry[{index}].resource.resourceType"],
            )
        if rtype != "ServiceRequest":
            orders.append(OrderFact(reference, rtype, frozenset(), ""))
            continue
        location = f"context.draftOrders.entry[{index}].resource"
        problems = validate(resource, location)
        read = [p for p in problems if p.split(".")[0] in ORDER_FIELDS_READ]
        if read:
            # What real clients send and the rules read without harm (an id with "_", which
            # the CDS Hooks order invariant allows; "" or padded strings) is no reason to
            # refuse the call: only what is still wrong once that is tolerated is.
            lenient = validate(_tolerated(resource), location)
            read = [p for p in lenient if p.split(".")[0] in ORDER_FIELDS_READ]
        if read:
            raise InvalidRequest(
                f"draft order {reference} is not a valid FHIR R4 ServiceRequest "
                f"({', '.join(read[:3])})",
                [f"{location}.{read[0]}"],
            )
        code = resource.get("code")
        codings = coding_pairs(code)
        orders.append(
            OrderFact(
                reference=reference,
                resource_type=rtype,
                concepts=code_map.lookup_all(codings),
                text=concept_label(code),
                codings=tuple(codings),
                body_site_text=" ".join(
                    concept_label(site) for site in as_list(resource.get("bodySite"))
                ),
                reasons=tuple(
                    ReasonFact(code_map.lookup_all(coding_pairs(reason)), concept_label(reason))
                    for reason in as_list(resource.get("reasonCode"))
                ),
                priority=as_str(resource.get("priority")),
                words=_order_words(resource),
                reason_references=tuple(
                    ref
                    for ref in (
                        as_str(as_dict(r).get("reference"))
                        for r in as_list(resource.get("reasonReference"))
                    )
                    if ref
                ),
            )
        )
    return orders


def _order_words(resource: Mapping[str, Any]) -> tuple[str, ...]:
    """An order's free text beyond its name and reasons: notes, ``orderDetail`` (Epic's
    "reason for exam" questions), the patient instruction, the displays of its supporting
    information and of its reason references."""
    words = note_texts(resource)
    for detail in as_list(resource.get("orderDetail")):
        words += concept_texts(detail)
    words += [t] if (t := as_str(resource.get("patientInstruction"))) else []
    words += reference_displays(resource.get("supportingInfo")) + reference_displays(
        resource.get("reasonReference")
    )
    return tuple(words)


# The id pattern of the CDS Hooks draft-order invariant (ord-1: ``[\w-.]+`` after the type).
_ORDER_ID = re.compile(r"[\w\-.]{1,64}")


def _tolerated(resource: Mapping[str, Any]) -> dict[str, Any]:
    """The order as validation should see it: strings trimmed, empty strings, lists and
    objects left out, and an id the CDS Hooks invariant allows taken as valid."""
    out: dict[str, Any] = _trimmed(dict(resource))
    rid = resource.get("id")
    if isinstance(rid, str) and _ORDER_ID.fullmatch(rid.strip()):
        out["id"] = "order"
    return out


def _trimmed(value: Any) -> Any:
    if isinstance(value, str):
        return value.strip()
    if isinstance(value, dict):
        kept = {k: _trimmed(v) for k, v in value.items()}
        return {k: v for k, v in kept.items() if v not in ("", [], {})}
    if isinstance(value, list):
        items = [_trimmed(v) for v in value]
        return [v for v in items if v not in ("", [], {})]
    return value


def match_selections(draft_orders: Any, selections: Sequence[str]) -> set[str]:
    """The draft orders (as ``Type/id``, or ``Type`` for one without id) the selections name.

    Clients send a selection as ``Type/id`` (the hook's definition), as the entry's
    ``fullUrl`` (``urn:uuid:...``) or as an absolute ``[base]/Type/id``; ``_history`` is
    ignored. A selection that names no draft order is a client error (400 naming it): a call
    that silently judged nothing would look like "no advice"."""
    by_key: dict[str, str] = {}
    for entry in as_list(as_dict(draft_orders).get("entry")):
        resource = as_dict(as_dict(entry).get("resource"))
        rtype = as_str(resource.get("resourceType")) or ""
        rid = as_str(resource.get("id"))
        reference = f"{rtype}/{rid}" if rid else rtype
        if rid:
            by_key[reference] = reference
        full_url = as_str(as_dict(entry).get("fullUrl"))
        if full_url:
            by_key[full_url] = reference
    chosen = set()
    for index, selection in enumerate(selections):
        plain = selection.split("/_history/", 1)[0].rstrip("/")
        found = by_key.get(selection) or by_key.get(plain)
        if found is None and "://" in plain:
            found = by_key.get("/".join(plain.split("/")[-2:]))
        if found is None:
            raise InvalidRequest(
                f"context.selections[{index}] names no draft order in context.draftOrders "
                "(expected Type/id, the entry's fullUrl or [base]/Type/id)",
                [f"context.selections[{index}]"],
            )
        chosen.add(found)
    return chosen


def find_draft(draft_orders: Any, reference: str) -> Mapping[str, Any] | None:
    for entry in as_list(as_dict(draft_orders).get("entry")):
        resource = as_dict(as_dict(entry).get("resource"))
        if f"{resource.get('resourceType')}/{resource.get('id')}" == reference:
            return resource
    return None
