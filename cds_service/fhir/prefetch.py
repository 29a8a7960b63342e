"""Prefetch values and FHIR search pages: their resources (Bundles flattened), whether they
report an error or only a search notice, their next page, and whose patient they belong to.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from .elements import as_dict, as_list, as_str


def bundle_resources(value: Any) -> Iterator[Mapping[str, Any]]:
    """Resources of a Bundle (any type) or a bare resource; OperationOutcomes are left out."""
    node = as_dict(value)
    if node.get("resourceType") == "Bundle":
        for entry in as_list(node.get("entry")):
            resource = as_dict(as_dict(entry).get("resource"))
            if resource.get("resourceType") == "Bundle":
                yield from bundle_resources(resource)
            elif resource.get("resourceType") not in (None, "OperationOutcome"):
                yield resource  # a resource without a type is nothing the rules can read
    elif node and node.get("resourceType") not in (None, "OperationOutcome"):
        yield node


def is_error_value(value: Any) -> bool:
    """An OperationOutcome, or a Bundle holding only OperationOutcomes: the client hit an error.

    Except FHIR's "no results" shape: a search Bundle whose every entry is an OperationOutcome
    with ``search.mode = outcome`` and only ``information``/``warning`` issues (FHIR R4's
    ``bundle-search-warning`` example; Epic's 4101 "Resource request returns no results") is
    an empty result. An ``error``/``fatal`` issue, an issue without a severity, or an outcome
    not marked ``search.mode = outcome`` still means "fetch it again"."""
    node = as_dict(value)
    if node.get("resourceType") == "OperationOutcome":
        return True
    if node.get("resourceType") != "Bundle":
        return False
    entries = as_list(node.get("entry"))
    for entry in entries:  # stops at the first resource that is not an OperationOutcome
        if as_dict(as_dict(entry).get("resource")).get("resourceType") != "OperationOutcome":
            return False
    return bool(entries) and not all(_is_search_notice(entry) for entry in entries)


_NOTICE_SEVERITIES = frozenset({"information", "warning"})


def _is_search_notice(entry: Any) -> bool:
    """A search Bundle entry that only informs or warns about the search (no error)."""
    node = as_dict(entry)
    if as_dict(node.get("search")).get("mode") != "outcome":
        return False
    issues = as_list(as_dict(node.get("resource")).get("issue"))
    return bool(issues) and all(
        as_dict(issue).get("severity") in _NOTICE_SEVERITIES for issue in issues
    )


def next_link(bundle: Any) -> str | None:
    for link in as_list(as_dict(bundle).get("link")):
        entry = as_dict(link)
        if entry.get("relation") == "next":
            return as_str(entry.get("url"))
    return None


# --------------------------------------------------------------------------------------------
# Prefetch values


@dataclass(frozen=True)
class PrefetchValue:
    """One prefetch value (or FHIR search page) as the pipeline reads it: its resource type, its
    resources (nested Bundles flattened, OperationOutcomes left out), whether it reports an
    error, and its next page."""

    resource_type: Any
    resources: tuple[Mapping[str, Any], ...]
    error: bool
    next: str | None


def read_prefetch(value: Any) -> PrefetchValue:
    node = as_dict(value)
    return PrefetchValue(
        node.get("resourceType"),
        tuple(bundle_resources(node)),
        is_error_value(node),
        next_link(node),
    )


def patient_of(resource: Mapping[str, Any]) -> str | None:
    """The id of the patient a resource belongs to, when it says so plainly: a Patient's own
    id, else its ``subject`` or ``patient`` reference as ``Patient/id`` or ``[base]/Patient/id``
    (``_history`` ignored). ``None`` when it cannot tell (no reference, ``urn:uuid:``, a
    contained or logical reference, a Group): nothing is concluded from those."""
    if resource.get("resourceType") == "Patient":
        return as_str(resource.get("id"))
    for key in ("subject", "patient"):
        reference = as_str(as_dict(resource.get(key)).get("reference"))
        if reference is None:
            continue
        parts = reference.split("/_history/", 1)[0].rstrip("/").split("/")
        if len(parts) >= 2 and parts[-2] == "Patient" and parts[-1]:
            return parts[-1]
        return None
    return None


def other_patient(resources: Iterable[Mapping[str, Any]], patient_id: str) -> str | None:
    """The resource type of the first resource that belongs to another patient, if any."""
    for resource in resources:
        owner = patient_of(resource)
        if owner is not None and owner != patient_id:
            return str(resource.get("resourceType"))
    return None
