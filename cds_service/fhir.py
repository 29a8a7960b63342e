"""FHIR R4 JSON → facts. The only module that imports ``fhir.resources`` (its R4B package).

Speed matters here (records run to thousands of resources): a resource is looked at only when one
of its codes maps to a concept the rules use, and only those are validated with
``fhir.resources``. A resource that fails validation is kept, read leniently (a date that cannot
be read becomes unknown, which the rules treat conservatively) and counted; the log names its
type and the failing element, never a value.
"""

from __future__ import annotations

import calendar
import hashlib
import logging
import re
import threading
from collections import OrderedDict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import date
from typing import Any, cast

import msgspec
import orjson
from fhir.resources.R4B import get_fhir_model_class
from pydantic import ValidationError

from .errors import InvalidRequest
from .facts import (
    ConditionFact,
    MedicationFact,
    ObservationFact,
    OrderFact,
    PatientFacts,
    ProcedureFact,
    ReasonFact,
)
from .mappings import CodeMap, TextMatcher
from .memo import Memo

logger = logging.getLogger("cds_service.fhir")

# Elements of a draft ServiceRequest the rules read: an invalid one is a 400, not a skip.
ORDER_FIELDS_READ = frozenset(
    {"resourceType", "id", "code", "reasonCode", "reasonReference", "bodySite"}
)

# mCODE STU4 profiles that say what a Condition is whatever its code (shared/terminology.md §1f):
# a SecondaryCancerCondition is metastatic disease even when its code is one we do not map.
PROFILE_CONCEPTS = {
    "http://hl7.org/fhir/us/mcode/StructureDefinition/mcode-secondary-cancer-condition": (
        "metastatic-disease"
    ),
}

_DATE = re.compile(r"^(\d{4})(?:-(\d{2})(?:-(\d{2}))?)?")


def parse_date(value: Any) -> date | None:
    """A FHIR date/dateTime as a date; partial dates take the LAST day they can mean.

    The last day is the conservative reading for every rule here: a symptom dated "2026" is as
    recent as it can be, and so is a diagnosis dated "2026-03".
    """
    if not isinstance(value, str):
        return None
    key = value[:10]  # all the pattern reads: records repeat dates (a lab panel, a visit)
    # Memo.recall written out: the call through it cost ~130 ns more per date (timeit), and a
    # large record carries thousands of dates.
    found = _DATES.get(key, _UNSEEN)
    if found is not _UNSEEN:
        return found  # type: ignore[return-value]
    return _DATES.remember(key, _parse_date(key))


_DATES: Memo[str, date | None] = Memo(50_000)
_UNSEEN = object()


def _parse_date(value: str) -> date | None:
    match = _DATE.match(value)
    if not match:
        return None
    year, month, day = match.groups()
    try:
        y = int(year)
        m = int(month) if month else 12
        d = int(day) if day else calendar.monthrange(y, m)[1]
        return date(y, m, d)
    except ValueError:
        return None


_EMPTY: Mapping[str, Any] = {}
_NO_CONCEPTS: frozenset[str] = frozenset()


def _dict(value: Any) -> Mapping[str, Any]:
    # JSON objects arrive as dicts: the concrete check is much cheaper than an ABC check.
    return value if type(value) is dict else _EMPTY


def _list(value: Any) -> Sequence[Any]:
    return value if type(value) is list else ()


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _codings(concept: Any) -> list[tuple[str, str]]:
    """(system, code) of a CodeableConcept's codings that have both (hot: inlined checks)."""
    if type(concept) is not dict:
        return []
    codings = concept.get("coding")
    if type(codings) is not list:
        return []
    out = []
    for c in codings:
        if type(c) is dict:
            system, code = c.get("system"), c.get("code")
            if type(system) is str and type(code) is str and system and code:
                out.append((system, code))
    return out


def _label(concept: Any) -> str:
    cc = _dict(concept)
    text = _str(cc.get("text"))
    if text:
        return text
    for coding in _list(cc.get("coding")):
        c = _dict(coding)
        shown = _str(c.get("display")) or _str(c.get("code"))
        if shown:
            return shown
    return ""


def _status_code(concept: Any) -> str | None:
    for coding in _list(_dict(concept).get("coding")):
        code = _str(_dict(coding).get("code"))
        if code:
            return code
    return None


def _number(value: Any) -> float | None:
    kind = type(value)  # JSON numbers are exactly int or float (a bool is not a number here)
    if kind is float:
        return cast(float, value)
    if kind is int:
        return float(value)
    return None


_PATHS: dict[str, tuple[str, ...]] = {}


def _first_date(resource: Mapping[str, Any], *paths: str) -> date | None:
    for path in paths:
        parts = _PATHS.get(path)
        if parts is None:
            parts = _PATHS[path] = tuple(path.split("."))
        node: Any = resource.get(parts[0])
        for part in parts[1:]:
            node = node.get(part) if type(node) is dict else None
        if type(node) is str:
            found = parse_date(node)
            if found:
                return found
    return None


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


def _validate(resource: Mapping[str, Any], where: str) -> list[str]:
    """Validate with fhir.resources R4B; return the failing element paths (empty when valid)."""
    try:
        key = hashlib.blake2b(orjson.dumps(resource, option=orjson.OPT_SORT_KEYS), digest_size=16)
    except TypeError:
        return _validate_now(resource, where)
    digest = key.digest()
    cached = _VALIDATED.get(digest)
    if cached is None:
        cached = tuple(_validate_now(resource, where))
        _VALIDATED.put(digest, cached)
    elif cached:
        _log_invalid(resource, where, list(cached))
    return list(cached)


def _log_invalid(resource: Mapping[str, Any], where: str, locations: list[str]) -> None:
    logger.warning(
        "invalid resource read leniently",
        extra={
            "fields": {
                "event": "invalid-resource",
                "resourceType": str(resource.get("resourceType"))[:40],
                "at": where,
                "elements": locations[:5],
            }
        },
    )


def _validate_now(resource: Mapping[str, Any], where: str) -> list[str]:
    try:
        model = get_fhir_model_class(str(resource.get("resourceType")))
    except (KeyError, ValueError):
        return ["resourceType"]
    try:
        model.model_validate(resource)
    except ValidationError as exc:
        locations = sorted({".".join(str(p) for p in err["loc"]) for err in exc.errors()})
        _log_invalid(resource, where, locations)
        return locations
    return []


# --------------------------------------------------------------------------------------------
# Bundles and prefetch values


def bundle_resources(value: Any) -> Iterator[Mapping[str, Any]]:
    """Resources of a Bundle (any type) or a bare resource; OperationOutcomes are left out."""
    node = _dict(value)
    if node.get("resourceType") == "Bundle":
        for entry in _list(node.get("entry")):
            resource = _dict(_dict(entry).get("resource"))
            if resource.get("resourceType") == "Bundle":
                yield from bundle_resources(resource)
            elif resource.get("resourceType") not in (None, "OperationOutcome"):
                yield resource  # a resource without a type is nothing the rules can read
    elif node and node.get("resourceType") not in (None, "OperationOutcome"):
        yield node


def is_error_value(value: Any) -> bool:
    """An OperationOutcome, or a Bundle holding only OperationOutcomes: the client hit an error."""
    node = _dict(value)
    if node.get("resourceType") == "OperationOutcome":
        return True
    if node.get("resourceType") != "Bundle":
        return False
    entries = _list(node.get("entry"))
    for entry in entries:  # stops at the first resource that is not an OperationOutcome
        if _dict(_dict(entry).get("resource")).get("resourceType") != "OperationOutcome":
            return False
    return bool(entries)


def next_link(bundle: Any) -> str | None:
    for link in _list(_dict(bundle).get("link")):
        entry = _dict(link)
        if entry.get("relation") == "next":
            return _str(entry.get("url"))
    return None


# --------------------------------------------------------------------------------------------
# Prefetch values as received: resources kept as bytes until their codes say they matter
#
# A Synthea-size record is hundreds of resources of which the rules read a few dozen; a
# 5,000-resource record is mostly labs the rules never look at. Building Python objects for all
# of it (and freeing them again) was the largest cost of a call on a large record (bench/:
# 5,000 resources, parse and facts: median 72 -> 55 ms over 8 paired runs). So a value is
# first read only for its shape (msgspec; each resource left as raw bytes), then each resource
# only for its type and codes; a resource is parsed in full (orjson) only when one of those
# codes maps to a concept, and then read by the same lenient readers as any other. Whatever
# does not have the expected shape (a ``coding`` that is not an array, an entry that is not an
# object, ...) is parsed in full at once and read leniently: the fast path decides as the full
# one does (tests/test_received.py checks every fixture, the Synthea records, odd shapes and
# mutated requests, generated bodies). What differs is JSON the full parser refuses for a
# number beyond double range (1e999): where the fast path parses nothing (a record resource the
# rules never read, an unknown top-level key, a Bundle's total, link or search) it is not seen;
# in a record it does parse it is refused later, so another 4xx or a 412 may be answered first.
# Never a 5xx. Invalid UTF-8 anywhere is refused up front, as by the full parser.
# Bodies under hooks.RAW_READ_FROM are parsed whole: for a few dozen resources that is cheaper.


# The probe's structs are left out of the garbage collector (gc=False): decoded from JSON they
# cannot form a reference cycle, and a 5,000-resource call makes tens of thousands of them
# (bench/: probe and shape passes ~10 % faster).
class _Coding(msgspec.Struct, gc=False):
    system: Any = None
    code: Any = None


class _Concept(msgspec.Struct, gc=False):
    coding: list[_Coding] | None = None


class _Stage(msgspec.Struct, gc=False):
    summary: _Concept | None = None


class _Meta(msgspec.Struct, gc=False):
    profile: Any = None


class _Probe(msgspec.Struct, gc=False):
    """What decides whether a record resource is read: its type and its codes."""

    resourceType: Any = None  # noqa: N815 - FHIR element names
    code: _Concept | None = None
    valueCodeableConcept: _Concept | None = None  # noqa: N815
    medicationCodeableConcept: _Concept | None = None  # noqa: N815
    stage: list[_Stage] | None = None
    meta: _Meta | None = None


_NULL = msgspec.Raw(b"null")


class _Entry(msgspec.Struct, gc=False):
    resource: msgspec.Raw = _NULL


class _Link(msgspec.Struct, gc=False):
    relation: Any = None
    url: Any = None


class _Shape(msgspec.Struct, gc=False):
    """A prefetch value read for its shape only: a Bundle's entries stay raw JSON."""

    resourceType: Any = None  # noqa: N815
    entry: list[_Entry] | None = None
    link: list[_Link] | None = None


class _ProbedEntry(msgspec.Struct, gc=False):
    resource: _Probe | None = None


class _ProbedBundle(msgspec.Struct, gc=False):
    entry: list[_ProbedEntry] | None = None


# Not the usual shape, or nested deeper than msgspec recurses (orjson allows 1,024 levels):
# such a value is parsed by the plain parser, which reads it or refuses it as it always did.
_UNUSUAL = (msgspec.ValidationError, RecursionError, UnicodeDecodeError)
_PROBE = msgspec.json.Decoder(_Probe)
_PROBED_BUNDLE = msgspec.json.Decoder(_ProbedBundle)
_SHAPE = msgspec.json.Decoder(_Shape)
# Tuples, not sets: a resourceType from a client may be unhashable (a list), and `in` on a
# tuple compares without hashing.
_PROCEDURE_TYPES = ("Procedure", "DiagnosticReport", "ServiceRequest")
_MEDICATION_TYPES = ("MedicationRequest", "MedicationStatement")


def _parse(raw: msgspec.Raw | bytes) -> Any:
    return orjson.loads(memoryview(raw))


def _probe_concepts(concept: _Concept | None, code_map: CodeMap) -> frozenset[str]:
    """As ``code_map.lookup_all(_codings(concept))`` on the parsed concept, written out: it runs
    once per record of a large body, and a generator into lookup_all made that pass ~30 %
    slower (bench/ stages, 5,000 resources)."""
    if concept is None or not concept.coding:
        return _NO_CONCEPTS
    found = _NO_CONCEPTS
    for coding in concept.coding:
        system, code = coding.system, coding.code
        if type(system) is str and type(code) is str:
            hit = code_map.lookup(system, code)
            if hit:
                found = found | hit if found else hit
    return found


class Record:
    """A record resource as received: raw JSON and its probe (type and codes)."""

    __slots__ = ("probe", "raw")

    def __init__(self, raw: msgspec.Raw | bytes, probe: _Probe) -> None:
        self.raw = raw
        self.probe = probe

    def worth_reading(self, code_map: CodeMap) -> bool:
        """Would build_facts read this resource (the same test it makes on a parsed one)?"""
        probe = self.probe
        rtype = probe.resourceType
        if type(rtype) is not str:
            return False
        if rtype == "Patient":
            return True
        if rtype == "Condition":
            if _probe_concepts(probe.code, code_map):
                return True
            profiles = probe.meta.profile if probe.meta is not None else None
            if type(profiles) is list and any(_profile_concept(p) for p in profiles):
                return True
            return any(_probe_concepts(stage.summary, code_map) for stage in probe.stage or ())
        if rtype == "Observation":
            return bool(
                _probe_concepts(probe.code, code_map)
                or _probe_concepts(probe.valueCodeableConcept, code_map)
            )
        if rtype in _PROCEDURE_TYPES:
            return bool(_probe_concepts(probe.code, code_map))
        if rtype in _MEDICATION_TYPES:
            return bool(_probe_concepts(probe.medicationCodeableConcept, code_map))
        return False

    def parse(self) -> Mapping[str, Any]:
        """The resource in full; a 400 when the parser refuses it (as it would have refused
        the whole body: a number beyond double range such as 1e999)."""
        try:
            value = _parse(self.raw)
        except orjson.JSONDecodeError as exc:
            raise InvalidRequest(f"request body is not valid JSON: {exc.msg}") from exc
        return value if type(value) is dict else _EMPTY


@dataclass(frozen=True)
class Received:
    """A prefetch value read for its shape (see above): its resource type, its resources
    (nested Bundles flattened, OperationOutcomes left out) as Records or, where the shape was
    unexpected, parsed dicts; whether it reports an error; its next page."""

    resource_type: Any
    items: tuple[Record | Mapping[str, Any], ...]
    error: bool
    next: str | None


def received_value(value: Any) -> Received:
    """A prefetch value already parsed (tests, tools): the same view as ``receive`` gives."""
    node = _dict(value)
    return Received(
        node.get("resourceType"),
        tuple(bundle_resources(node)),
        is_error_value(node),
        next_link(node),
    )


def _entry_items(entries: Sequence[_Entry], out: list[Record | Mapping[str, Any]]) -> list[Any]:
    """Append the resources of Bundle entries to ``out``; return the entries' resource types."""
    kinds: list[Any] = []
    for entry in entries:
        raw = entry.resource
        try:
            probe = _PROBE.decode(raw)
        except _UNUSUAL:  # not the usual shape: parse it and read leniently
            resource = _parse(raw)
            kinds.append(_dict(resource).get("resourceType"))
            wrapped = {"resourceType": "Bundle", "entry": [{"resource": resource}]}
            out.extend(bundle_resources(wrapped))
            continue
        kind = probe.resourceType
        kinds.append(kind)
        if kind == "Bundle":
            try:
                nested = _SHAPE.decode(raw)
            except _UNUSUAL:
                out.extend(bundle_resources(_parse(raw)))
            else:
                _entry_items(nested.entry or (), out)
        elif kind is not None and kind != "OperationOutcome":  # no type: nothing to read
            out.append(Record(raw, probe))
    return kinds


def _probed_items(
    raw: msgspec.Raw | bytes, entries: Sequence[_Entry], out: list[Record | Mapping[str, Any]]
) -> list[Any] | None:
    """``_entry_items`` with every entry probed in one pass over the Bundle (one decoder call,
    not one per entry). None when an entry is not of the usual shape or is itself a Bundle:
    then each entry is read on its own."""
    try:
        probed = _PROBED_BUNDLE.decode(raw).entry or ()
    except _UNUSUAL:
        return None
    if len(probed) != len(entries):  # cannot happen (same bytes); never pair wrongly
        return None
    kinds: list[Any] = []
    for entry, found in zip(entries, probed, strict=True):
        probe = found.resource
        kind = probe.resourceType if probe is not None else None
        if kind == "Bundle":
            return None
        kinds.append(kind)
        if probe is not None and kind is not None and kind != "OperationOutcome":
            out.append(Record(entry.resource, probe))
    return kinds


def receive(raw: msgspec.Raw | bytes) -> Received | None:
    """Read one prefetch value (or a FHIR search page) from its raw JSON; None for ``null``.

    Raises ``msgspec.DecodeError`` for JSON that does not parse."""
    try:
        shape = _SHAPE.decode(raw)
    except _UNUSUAL:  # not an object, or entry/link of another shape
        value = _parse(raw)
        return None if value is None else received_value(value)
    if shape.resourceType != "Bundle":
        try:
            probe = _PROBE.decode(raw)
        except _UNUSUAL:
            return received_value(_parse(raw))
        kind = probe.resourceType
        items: tuple[Record | Mapping[str, Any], ...] = ()
        if kind is not None and kind != "OperationOutcome":
            items = (Record(raw, probe),)
        return Received(kind, items, kind == "OperationOutcome", _next(shape))
    out: list[Record | Mapping[str, Any]] = []
    kinds = _probed_items(raw, shape.entry or (), out)
    if kinds is None:
        out = []
        kinds = _entry_items(shape.entry or (), out)
    error = bool(kinds) and all(kind == "OperationOutcome" for kind in kinds)
    return Received(shape.resourceType, tuple(out), error, _next(shape))


def _next(shape: _Shape) -> str | None:
    """As ``next_link``: the first link whose relation is "next", if its url is usable."""
    for link in shape.link or ():
        if link.relation == "next":
            return _str(link.url)
    return None


# --------------------------------------------------------------------------------------------
# Draft orders


def parse_orders(
    draft_orders: Any, selections: Sequence[str] | None, code_map: CodeMap
) -> list[OrderFact]:
    """The orders to judge: the selected ones (order-select) or all of them (order-sign)."""
    wanted = set(selections) if selections is not None else None
    orders = []
    for index, entry in enumerate(_list(_dict(draft_orders).get("entry"))):
        resource = _dict(_dict(entry).get("resource"))
        rtype = _str(resource.get("resourceType")) or ""
        rid = _str(resource.get("id"))
        reference = f"{rtype}/{rid}" if rid else rtype
        if wanted is not None and reference not in wanted:
            continue
        if rtype != "ServiceRequest":
            orders.append(OrderFact(reference, rtype, frozenset(), ""))
            continue
        where = f"context.draftOrders.entry[{index}].resource"
        problems = _validate(resource, where)
        read = [p for p in problems if p.split(".")[0] in ORDER_FIELDS_READ]
        if read:
            # What real clients send and the rules read without harm (an id with "_", which
            # the CDS Hooks order invariant allows; "" or padded strings) is no reason to
            # refuse the call: only what is still wrong once that is tolerated is.
            lenient = _validate(_tolerated(resource), where)
            read = [p for p in lenient if p.split(".")[0] in ORDER_FIELDS_READ]
        if read:
            raise InvalidRequest(
                f"draft order {reference} is not a valid FHIR R4 ServiceRequest "
                f"({', '.join(read[:3])})",
                [f"{where}.{read[0]}"],
            )
        code = resource.get("code")
        codings = _codings(code)
        orders.append(
            OrderFact(
                reference=reference,
                resource_type=rtype,
                concepts=code_map.lookup_all(codings),
                text=_label(code),
                codings=tuple(codings),
                body_site_text=" ".join(_label(site) for site in _list(resource.get("bodySite"))),
                reasons=tuple(
                    ReasonFact(code_map.lookup_all(_codings(reason)), _label(reason))
                    for reason in _list(resource.get("reasonCode"))
                ),
                priority=_str(resource.get("priority")),
                reason_references=tuple(
                    ref
                    for ref in (
                        _str(_dict(r).get("reference"))
                        for r in _list(resource.get("reasonReference"))
                    )
                    if ref
                ),
            )
        )
    return orders


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


def find_draft(draft_orders: Any, reference: str) -> Mapping[str, Any] | None:
    for entry in _list(_dict(draft_orders).get("entry")):
        resource = _dict(_dict(entry).get("resource"))
        if f"{resource.get('resourceType')}/{resource.get('id')}" == reference:
            return resource
    return None


# --------------------------------------------------------------------------------------------
# Patient record


def _onset_from_age(raw: Mapping[str, Any], birth: date | None) -> date | None:
    """``onsetAge`` in years: the last day the patient had that age (conservative: recent)."""
    age = _dict(raw.get("onsetAge"))
    years = _number(age.get("value"))
    if birth is None or years is None or age.get("code", "a") not in ("a", None):
        return None
    try:
        return date(birth.year + int(years) + 1, birth.month, min(birth.day, 28))
    except ValueError:
        return None


def _condition(
    raw: Mapping[str, Any], concepts: frozenset[str], code_map: CodeMap, birth: date | None = None
) -> ConditionFact:
    stage_codings = [
        c for stage in _list(raw.get("stage")) for c in _codings(_dict(stage).get("summary"))
    ]
    profiles = frozenset(
        p for p in _list(_dict(raw.get("meta")).get("profile")) if isinstance(p, str)
    )
    return ConditionFact(
        id=_str(raw.get("id")) or "",
        concepts=concepts,
        label=_label(raw.get("code")),
        clinical_status=_status_code(raw.get("clinicalStatus")),
        verification=_status_code(raw.get("verificationStatus")),
        onset=_first_date(raw, "onsetDateTime", "onsetPeriod.start") or _onset_from_age(raw, birth),
        recorded=parse_date(raw.get("recordedDate")),
        abatement=_first_date(raw, "abatementDateTime", "abatementPeriod.end"),
        stage_concepts=code_map.lookup_all(stage_codings),
        profiles=profiles,
        codes=frozenset(_codings(raw.get("code"))),
    )


def _observation(
    raw: Mapping[str, Any],
    concepts: frozenset[str],
    values: frozenset[str],
    text: TextMatcher | None = None,
) -> ObservationFact:
    # Hot on large records (thousands of labs): concrete type checks, nothing built that is
    # not kept.
    quantity = raw.get("valueQuantity")
    value = _number(quantity.get("value")) if type(quantity) is dict else None
    high = None
    for reference in _list(raw.get("referenceRange")):
        high = _number(_dict(_dict(reference).get("high")).get("value"))
        if high is None:
            high = _range_high(_str(_dict(reference).get("text")))
        if high is not None:
            break
    interpretation = _NO_CONCEPTS
    interpretations = raw.get("interpretation")
    if interpretations:
        interpretation = frozenset(
            code
            for concept in _list(interpretations)
            for coding in _list(_dict(concept).get("coding"))
            if (code := _str(_dict(coding).get("code")))
        )
        if not interpretation and text is not None:
            # Only words ("High", "Abnormal"): read as the abnormal code they stand for.
            words = [_str(_dict(concept).get("text")) for concept in _list(interpretations)]
            if any(text.mentions_finding(w) for w in words if w):
                interpretation = _ABNORMAL_BY_TEXT
    value_bool = raw.get("valueBoolean")
    return ObservationFact(
        id=_str(raw.get("id")) or "",
        concepts=concepts,
        label=_label(raw.get("code")),
        status=_str(raw.get("status")),
        effective=_first_date(
            raw,
            "effectiveDateTime",
            "effectivePeriod.end",
            "effectivePeriod.start",
            "effectiveInstant",
            "issued",
        ),
        value_concepts=values,
        value=value,
        value_bool=value_bool if isinstance(value_bool, bool) else None,
        reference_high=high,
        interpretation=interpretation,
    )


_ABNORMAL_BY_TEXT = frozenset({"A"})  # v3 ObservationInterpretation "Abnormal"
# A reference range written only as text, "40-129 U/L" or "40 - 129": its upper bound.
_RANGE_TEXT = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(?:-|–|to)\s*(\d+(?:\.\d+)?)\b")


def _range_high(text: str | None) -> float | None:
    match = _RANGE_TEXT.match(text) if text else None
    return float(match.group(2)) if match else None


def _procedure(raw: Mapping[str, Any], concepts: frozenset[str]) -> ProcedureFact:
    """A Procedure, or a DiagnosticReport or ServiceRequest of a past or planned study."""
    return ProcedureFact(
        id=_str(raw.get("id")) or "",
        concepts=concepts,
        label=_label(raw.get("code")),
        status=_str(raw.get("status")),
        performed=_first_date(
            raw,
            "performedDateTime",
            "performedPeriod.end",
            "performedPeriod.start",
            "effectiveDateTime",
            "effectivePeriod.end",
            "occurrenceDateTime",
            "occurrencePeriod.start",
            "issued",
            "authoredOn",
        ),
    )


def _medication(raw: Mapping[str, Any], concepts: frozenset[str]) -> MedicationFact:
    return MedicationFact(
        id=_str(raw.get("id")) or "",
        concepts=concepts,
        label=_label(raw.get("medicationCodeableConcept")),
        status=_str(raw.get("status")),
        authored=_first_date(raw, "authoredOn", "effectiveDateTime", "effectivePeriod.start"),
        ended=_first_date(raw, "dispenseRequest.validityPeriod.end", "effectivePeriod.end"),
    )


def _profile_concepts(raw: Mapping[str, Any]) -> frozenset[str]:
    meta = raw.get("meta")
    if type(meta) is not dict:
        return _NO_CONCEPTS
    profiles = meta.get("profile")
    if type(profiles) is not list:
        return _NO_CONCEPTS
    found = _NO_CONCEPTS
    for p in profiles:
        concept = _profile_concept(p)
        if concept:
            found = found | {concept}
    return found


def _profile_concept(profile: Any) -> str | None:
    """The concept a profile URL (``|version`` or not) says; most say none (US Core)."""
    if type(profile) is not str:
        return None
    concept = PROFILE_CONCEPTS.get(profile)
    if concept is None and "|" in profile:
        concept = PROFILE_CONCEPTS.get(profile.split("|", 1)[0])
    return concept


Sources = dict[tuple[str, str], tuple[str, Mapping[str, Any]]]


# Whose words are read for metastatic disease: the breast cancer entries themselves, whose
# titles often say what their code does not ("Metastatic breast cancer (HCC)" on a C50 code).
# Not other entries: a regional-node code's own title ("Secondary ... neoplasm of lymph nodes
# of axilla") says regional, and its code already says so.
_BREAST_CANCER_ENTRIES = frozenset({"invasive-breast-cancer", "personal-history-breast-cancer"})


def _list_of_dicts(concept: Any) -> list[dict[str, Any]]:
    return [c for c in _list(_dict(concept).get("coding")) if isinstance(c, dict)]


def build_facts(
    resources: Mapping[str, Sequence[Record | Mapping[str, Any]]],
    code_map: CodeMap,
    sources: Sources | None = None,
    text: TextMatcher | None = None,
) -> PatientFacts:
    """Reduce the record (resources grouped by prefetch key) to the facts the rules read.

    Only resources with a code the rules know are read at all. They are read leniently (an
    element of the wrong shape counts as absent, which the rules treat conservatively) and not
    validated here: full validation costs ~0.4 ms a resource, and records run to thousands.
    ``sources`` collects where each fact came from, so that ``validate_cited`` can validate the
    few records a card cites. ``text`` (the knowledge's TextMatcher; None: codes only) reads
    what is written rather than coded: a stage written only as text ("Stage IV", "cM1",
    "Metastatic") counts as the stage IV value; a breast cancer entry titled "Metastatic
    breast cancer" counts as metastatic disease; a lab interpretation given only in words
    ("High") as abnormal.
    """
    conditions: list[ConditionFact] = []
    observations: list[ObservationFact] = []
    procedures: list[ProcedureFact] = []
    medications: list[MedicationFact] = []
    readable: list[tuple[str, int, Mapping[str, Any]]] = []
    for key, items in resources.items():
        for index, item in enumerate(items):
            if isinstance(item, Record):  # as received: parsed only when its codes matter
                if item.worth_reading(code_map):
                    readable.append((key, index, item.parse()))
            else:
                readable.append((key, index, item))
    patient: Mapping[str, Any] = next(
        (r for _, _, r in readable if r.get("resourceType") == "Patient"), {}
    )
    birth = parse_date(patient.get("birthDate"))
    for key, index, raw in readable:
        rtype = raw.get("resourceType")
        if rtype == "Patient":
            continue
        if rtype == "Condition":
            codings = _codings(raw.get("code"))
            stage = [c for s in _list(raw.get("stage")) for c in _codings(_dict(s).get("summary"))]
            concepts = code_map.lookup_all(codings) | _profile_concepts(raw)
            relevant = bool(concepts) or bool(code_map.lookup_all(stage))
        elif rtype == "Observation":
            concepts = code_map.lookup_all(_codings(raw.get("code")))
            values = code_map.lookup_all(_codings(raw.get("valueCodeableConcept")))
            if (
                text is not None
                and not values
                and concepts & {"stage-group-observation", "m-category-observation"}
                and text.says_distant(
                    _label(raw.get("valueCodeableConcept")) or _str(raw.get("valueString"))
                )
            ):
                distant = "m1-value" if "m-category-observation" in concepts else "stage-iv-value"
                values = frozenset({distant})
            relevant = bool(concepts or values)
        elif rtype in _PROCEDURE_TYPES:
            concepts = code_map.lookup_all(_codings(raw.get("code")))
            relevant = bool(concepts)
        elif rtype in _MEDICATION_TYPES:
            concepts = code_map.lookup_all(_codings(raw.get("medicationCodeableConcept")))
            relevant = bool(concepts)
        else:
            continue
        if not relevant:
            continue
        if sources is not None:
            sources[(str(rtype), str(raw.get("id")))] = (f"prefetch.{key}[{index}]", raw)
        if rtype == "Condition":
            fact = _condition(raw, concepts, code_map, birth)
            if text is not None and not fact.stage_concepts:
                stages = [_label(_dict(st).get("summary")) for st in _list(raw.get("stage"))]
                if any(text.says_distant(t) for t in stages):
                    fact = replace(fact, stage_concepts=frozenset({"stage-iv-value"}))
            if text is not None and fact.concepts & _BREAST_CANCER_ENTRIES:
                words = [_str(_dict(raw.get("code")).get("text"))]
                words += [_str(c.get("display")) for c in _list_of_dicts(raw.get("code"))]
                if any(text.names_metastatic(w) for w in words):
                    fact = replace(fact, concepts=fact.concepts | {"metastatic-disease"})
            conditions.append(fact)
        elif rtype == "Observation":
            observations.append(_observation(raw, concepts, values, text))
        elif rtype in _PROCEDURE_TYPES:
            procedures.append(_procedure(raw, concepts))
        else:
            medications.append(_medication(raw, concepts))
    return PatientFacts(
        birth_date=birth,
        gender=_str(patient.get("gender")),
        conditions=tuple(conditions),
        observations=tuple(observations),
        procedures=tuple(procedures),
        medications=tuple(medications),
    )


def validate_cited(cited: Iterable[tuple[str, str]], sources: Sources) -> int:
    """Validate, with fhir.resources R4B, the records a card cites as evidence; an invalid one
    is logged (type and element, never a value). Returns how many were invalid."""
    invalid = 0
    for key in dict.fromkeys(cited):
        found = sources.get(key)
        if found is not None and _validate(found[1], found[0]):
            invalid += 1
    return invalid


def count_invalid(resources: Iterable[Mapping[str, Any]]) -> int:
    """How many of these resources fail R4 validation (tools and tests; not the hot path)."""
    return sum(1 for index, r in enumerate(resources) if _validate(r, f"resource[{index}]"))


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
    *_PROCEDURE_TYPES,
    *_MEDICATION_TYPES,
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
