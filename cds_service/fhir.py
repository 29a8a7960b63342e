"""FHIR R4 JSON → facts. The only module that imports ``fhir.resources`` (its R4B package).

Speed matters here (records run to thousands of resources): a resource becomes a fact only when
its codes or its words name a concept the rules use, and only the records a card cites are
validated with ``fhir.resources``. A resource that fails validation is kept, read leniently (a
date that cannot be read becomes unknown, which the rules treat conservatively) and counted;
the log names its type and the failing element, never a value.
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

import orjson
from fhir.resources.R4B import get_fhir_model_class
from pydantic import ValidationError

from .concepts import LABS, SYMPTOMS
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
from .mappings import CodeMap, Knowledge, TextMatcher, WordMatcher
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
_PROCEDURE_TYPES = ("Procedure", "DiagnosticReport", "ServiceRequest")
_MEDICATION_TYPES = ("MedicationRequest", "MedicationStatement", "MedicationAdministration")


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
    """An OperationOutcome, or a Bundle holding only OperationOutcomes: the client hit an error.

    Except FHIR's "no results" shape: a search Bundle whose every entry is an OperationOutcome
    with ``search.mode = outcome`` and only ``information``/``warning`` issues (FHIR R4's
    ``bundle-search-warning`` example; Epic's 4101 "Resource request returns no results") is
    an empty result. An ``error``/``fatal`` issue, an issue without a severity, or an outcome
    not marked ``search.mode = outcome`` still means "fetch it again"."""
    node = _dict(value)
    if node.get("resourceType") == "OperationOutcome":
        return True
    if node.get("resourceType") != "Bundle":
        return False
    entries = _list(node.get("entry"))
    for entry in entries:  # stops at the first resource that is not an OperationOutcome
        if _dict(_dict(entry).get("resource")).get("resourceType") != "OperationOutcome":
            return False
    return bool(entries) and not all(_is_search_notice(entry) for entry in entries)


_NOTICE_SEVERITIES = frozenset({"information", "warning"})


def _is_search_notice(entry: Any) -> bool:
    """A search Bundle entry that only informs or warns about the search (no error)."""
    node = _dict(entry)
    if _dict(node.get("search")).get("mode") != "outcome":
        return False
    issues = _list(_dict(node.get("resource")).get("issue"))
    return bool(issues) and all(
        _dict(issue).get("severity") in _NOTICE_SEVERITIES for issue in issues
    )


def next_link(bundle: Any) -> str | None:
    for link in _list(_dict(bundle).get("link")):
        entry = _dict(link)
        if entry.get("relation") == "next":
            return _str(entry.get("url"))
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
    node = _dict(value)
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
        return _str(resource.get("id"))
    for key in ("subject", "patient"):
        reference = _str(_dict(resource.get(key)).get("reference"))
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


# --------------------------------------------------------------------------------------------
# Draft orders


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
    for index, entry in enumerate(_list(_dict(draft_orders).get("entry"))):
        resource = _dict(_dict(entry).get("resource"))
        rtype = _str(resource.get("resourceType")) or ""
        rid = _str(resource.get("id"))
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
                words=_order_words(resource),
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


def _order_words(resource: Mapping[str, Any]) -> tuple[str, ...]:
    """An order's free text beyond its name and reasons: notes, ``orderDetail`` (Epic's
    "reason for exam" questions), the patient instruction, the displays of its supporting
    information and of its reason references."""
    words = _notes(resource)
    for detail in _list(resource.get("orderDetail")):
        words += _texts(detail)
    words += [t] if (t := _str(resource.get("patientInstruction"))) else []
    words += _displays(resource.get("supportingInfo")) + _displays(resource.get("reasonReference"))
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
    for entry in _list(_dict(draft_orders).get("entry")):
        resource = _dict(_dict(entry).get("resource"))
        rtype = _str(resource.get("resourceType")) or ""
        rid = _str(resource.get("id"))
        reference = f"{rtype}/{rid}" if rid else rtype
        if rid:
            by_key[reference] = reference
        full_url = _str(_dict(entry).get("fullUrl"))
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
    for entry in _list(_dict(draft_orders).get("entry")):
        resource = _dict(_dict(entry).get("resource"))
        if f"{resource.get('resourceType')}/{resource.get('id')}" == reference:
            return resource
    return None


# --------------------------------------------------------------------------------------------
# Patient record
#
# One reader: every resource of the record is parsed (orjson, at the edge) and read here by the
# same code, whether it came in a prefetch, from the EHR's FHIR server or from a tool. A
# resource counts when its codes map to a concept or when its words name one: a problem-list
# title under a local code, a coding's display, a lab's name, a value written as text, a note, a
# drug's name, a report's conclusion. Words may only silence (mappings/words.json): they add the
# concepts that take a patient out of Variant 10 and never the ones that can make a warning.


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


_YEAR_IN_TEXT = re.compile(r"\b(?:(0?[1-9]|1[0-2])[/-])?((?:19|20)\d\d)\b")


def _date_in_text(text: str | None) -> date | None:
    """A date written as text ("06/2022", "2019", "June 2022: completed FOLFOX"): the last
    day of the latest month or year it names (the conservative reading: as recent as it can
    be)."""
    if not text:
        return None
    found = [
        _parse_date(f"{year}-{int(month):02d}" if month else year)
        for month, year in _YEAR_IN_TEXT.findall(text[:200])
    ]
    dates = [d for d in found if d]
    return max(dates) if dates else None


def _texts(concept: Any) -> list[str]:
    """Every word a CodeableConcept carries: its text and each coding's display."""
    cc = _dict(concept)
    out = [t] if (t := _str(cc.get("text"))) else []
    for coding in _list(cc.get("coding")):
        display = _str(_dict(coding).get("display"))
        if display and display not in out:
            out.append(display)
    return out


def _displays(references: Any) -> list[str]:
    """The displays of a list of References."""
    return [t for ref in _list(references) if (t := _str(_dict(ref).get("display")))]


def _reason_texts(raw: Mapping[str, Any]) -> list[str]:
    """Why a record was made, in words: every ``reasonCode``'s text and displays, and the
    displays of its ``reasonReference``s."""
    return [t for r in _list(raw.get("reasonCode")) for t in _texts(r)] + _displays(
        raw.get("reasonReference")
    )


def _notes(raw: Mapping[str, Any]) -> list[str]:
    return [t for n in _list(raw.get("note")) if (t := _str(_dict(n).get("text")))]


class _Reader:
    """Reads one record's resources into facts with the knowledge's codes and words."""

    def __init__(self, knowledge: Knowledge) -> None:
        self.codes = knowledge.codes
        self.text = knowledge.text
        self.words = knowledge.words
        self.medications: dict[str, Mapping[str, Any]] = {}
        self.names = knowledge.readings

    def coded(self, concept: Any) -> tuple[frozenset[str], tuple[tuple[str, str], ...]]:
        """Concepts of a CodeableConcept's codes, and how each was found."""
        found: frozenset[str] = _NO_CONCEPTS
        how: list[tuple[str, str]] = []
        for system, code in _codings(concept):
            hit = self.codes.lookup(system, code)
            if hit:
                found = found | hit
                how += [(c, f"code {system}|{code}") for c in sorted(hit)]
        return found, tuple(how)

    def named(
        self, scope: str, texts: Iterable[str | None], drop: frozenset[str] = _NO_CONCEPTS
    ) -> tuple[frozenset[str], tuple[tuple[str, str], ...]]:
        """Concepts the words name (never one of ``drop``), and the phrase that named each."""
        hits = [h for h in self.words.concepts(scope, texts) if h.concept not in drop]
        return frozenset(h.concept for h in hits), tuple(
            (h.concept, f"words '{h.phrase}'") for h in hits
        )

    # --- Conditions

    def condition(self, raw: Mapping[str, Any], birth: date | None) -> ConditionFact | None:
        code = raw.get("code")
        concepts, how = self.coded(code)
        profiles = _profile_concepts(raw)
        concepts |= profiles
        how += tuple((c, "profile") for c in sorted(profiles))
        labels = _texts(code)
        notes = _notes(raw)
        # What the entry cites as its evidence ("Secondary malignant neoplasm of liver").
        for evidence in _list(raw.get("evidence")):
            for concept in _list(_dict(evidence).get("code")):
                found, found_how = self.coded(concept)
                concepts |= found & _EVIDENCE_CONCEPTS
                how += tuple(h for h in found_how if h[0] in _EVIDENCE_CONCEPTS)
                notes += _texts(concept)
            notes += _displays(_dict(evidence).get("detail"))
        # A regional-node code's own title ("Secondary ... neoplasm of axillary lymph nodes")
        # says regional, and its code already says so: its words do not make it distant.
        drop = concepts | (_NOT_DISTANT if "regional-nodal-disease" in concepts else concepts)
        stage_texts = [t for s in _list(raw.get("stage")) for t in _texts(_dict(s).get("summary"))]
        named, named_how = self.named("condition", labels + notes + stage_texts, drop)
        stage_codings = [
            c for s in _list(raw.get("stage")) for c in _codings(_dict(s).get("summary"))
        ]
        stage = self.codes.lookup_all(stage_codings)
        if not stage and any(self.text.distant_stage(t) for t in stage_texts):
            stage = frozenset({"stage-iv-value"})
            how += (("stage-iv-value", "stage text"),)
        if concepts & _BREAST_CANCER_ENTRIES and any(
            self.text.distant_stage(t) for t in notes + labels
        ):
            named |= {"metastatic-disease"}
            named_how += (("metastatic-disease", "stage text (TNM M1 or stage IV)"),)
        if not concepts and not named and not stage:
            return None
        return ConditionFact(
            id=_str(raw.get("id")) or "",
            concepts=concepts | named,
            label=_label(code),
            clinical_status=_status_code(raw.get("clinicalStatus")),
            verification=_status_code(raw.get("verificationStatus")),
            onset=_first_date(raw, "onsetDateTime", "onsetPeriod.start")
            or _onset_from_age(raw, birth),
            recorded=parse_date(raw.get("recordedDate")),
            abatement=_first_date(raw, "abatementDateTime", "abatementPeriod.end")
            or _date_in_text(_str(raw.get("abatementString"))),
            stage_concepts=stage,
            profiles=frozenset(
                p for p in _list(_dict(raw.get("meta")).get("profile")) if isinstance(p, str)
            ),
            codes=frozenset(_codings(code)),
            how=how + named_how,
        )

    # --- Observations

    def observation(self, raw: Mapping[str, Any]) -> ObservationFact | None:
        code = raw.get("code")
        # What it measures, from its code alone: read once per distinct code (a large record
        # repeats a few lab codes thousands of times).
        concepts, how, named_by_name, staged = self.observation_name(code)
        value_cc = raw.get("valueCodeableConcept")
        if (
            not concepts
            and not named_by_name[0]
            and value_cc is None
            and "valueString" not in raw
            and "note" not in raw
            and "component" not in raw
        ):
            return None  # most of a large record: a lab or vital sign the rules never read
        values: frozenset[str] = _NO_CONCEPTS
        if value_cc is not None:
            values, value_how = self.coded(value_cc)
            how += value_how
        value_texts = _texts(value_cc) if value_cc is not None else []
        if v := _str(raw.get("valueString")):
            value_texts.append(v)
        named, named_how = named_by_name
        quantity = raw.get("valueQuantity")
        if (
            raw.get("valueBoolean") is False
            or any(self.words.denies(t) for t in value_texts)
            or (type(quantity) is dict and quantity.get("value") == 0)  # "Back pain (0-10)": 0
        ):
            # "Cough: Absent", "Bone pain: No": the question is not a symptom.
            concepts = concepts - _SYMPTOM_LIKE
            named -= _SYMPTOM_LIKE
            named_how = tuple(h for h in named_how if h[0] not in _SYMPTOM_LIKE)
        named -= concepts
        concepts |= named & _LAB_LIKE
        values |= named - _LAB_LIKE
        how += named_how
        notes = _notes(raw) if "note" in raw else []
        if not value_texts and not notes and "component" not in raw:
            if not concepts and not values:
                return None
            return _observation(raw, concepts, values, self.text, how, self.words)
        # What it says: the answer, the value written as text, notes, components.
        said = value_texts + notes  # the name was read above: "Disease progression?"
        for component in _list(raw.get("component")):
            part = _dict(component)
            if part.get("valueBoolean") is False:
                continue
            part_values = _texts(part.get("valueCodeableConcept"))
            part_values += [v] if (v := _str(part.get("valueString"))) else []
            if any(self.words.denies(t) for t in part_values):
                continue
            part_concepts, part_how = self.coded(part.get("code"))
            part_values_concepts, part_value_how = self.coded(part.get("valueCodeableConcept"))
            values |= (part_concepts | part_values_concepts) & _SYMPTOM_LIKE
            how += part_how + part_value_how
            said += part_values
            part_named, part_named_how = self.named(
                "observation", _texts(part.get("code")), _LAB_LIKE | _NOT_FROM_NAME
            )
            values |= part_named
            how += part_named_how
        said_concepts, said_how = self.named("observation", said, values | _LAB_LIKE)
        values |= said_concepts
        how += said_how
        if not values & {"stage-iv-value", "m1-value"} and staged:
            if any(self.text.distant_stage(t) for t in value_texts + notes):
                distant = "m1-value" if "m-category-observation" in concepts else "stage-iv-value"
                if not concepts & {"stage-group-observation", "m-category-observation"}:
                    distant = "metastatic-disease"
                values |= {distant}
                how += ((distant, "stage text (TNM M1 or stage IV)"),)
        if not concepts and not values:
            return None
        return _observation(raw, concepts, values, self.text, how, self.words)

    def component_labs(self, raw: Mapping[str, Any]) -> list[ObservationFact]:
        """The lab results inside a panel's components (an ALP of a metabolic panel), each read
        as an Observation of its own: its value, interpretation and reference range, and the
        panel's status and date."""
        labs = []
        for index, component in enumerate(_list(raw.get("component"))):
            part = _dict(component)
            concepts, how, named_by_name, _ = self.observation_name(part.get("code"))
            named, named_how = named_by_name
            analytes = (concepts | named) & _LAB_LIKE
            if not analytes:
                continue
            result = {
                **{k: v for k, v in raw.items() if k not in ("component", "valueQuantity")},
                **part,
                "id": f"{_str(raw.get('id')) or ''}#component-{index}",
            }
            labs.append(
                _observation(result, analytes, _NO_CONCEPTS, self.text, how + named_how, self.words)
            )
        return labs

    def observation_name(
        self, code: Any
    ) -> tuple[
        frozenset[str],
        tuple[tuple[str, str], ...],
        tuple[frozenset[str], tuple[tuple[str, str], ...]],
        bool,
    ]:
        """What an Observation's code says: the concepts of its codes, those its name gives
        (the lab by its name "ALK PHOS", a symptom asked "Cough"), and whether it is a staging
        result; remembered per distinct code."""
        try:
            key = orjson.dumps(code)  # the same code arrives as the same JSON
        except TypeError:
            key = b""
        found = self.names.get(key)
        if found is None:
            concepts, how = self.coded(code)
            labels = _texts(code)
            named = self.named("observation", labels, concepts | _NOT_FROM_NAME)
            staged = bool(concepts & _STAGING_CONCEPTS) or any(
                _STAGING_WORDS.search(t.upper()) for t in labels
            )
            found = self.names.remember(key, (concepts, how, named, staged))
        return found  # type: ignore[no-any-return]

    # --- Procedures, reports, record orders

    def procedure(self, raw: Mapping[str, Any]) -> ProcedureFact | None:
        code = raw.get("code")
        concepts, how = self.coded(code)
        rtype = raw.get("resourceType")
        scope = "report" if rtype == "DiagnosticReport" else "procedure"
        texts = _texts(code) + _notes(raw)
        if rtype == "DiagnosticReport":
            conclusion, conclusion_how = self.coded_all(raw.get("conclusionCode"))
            concepts |= conclusion - _WARNING_ENABLERS_FROM_REPORTS
            how += conclusion_how
            texts += [c] if (c := _str(raw.get("conclusion"))) else []
        if rtype == "ServiceRequest" and not concepts:
            return None  # an order in the record is read for the study it names, by code
        named, named_how = self.named(scope, texts, concepts)
        if rtype == "Procedure":
            # Why it was done ("Metastasis to bone", a kyphoplasty "for pathologic fracture").
            reasons, reasons_how = self.coded_all(raw.get("reasonCode"))
            reasons &= _EVIDENCE_CONCEPTS | _SYMPTOM_LIKE
            named_why, why_how = self.named(
                "condition", _reason_texts(raw), concepts | named | reasons | _TREATMENT_WORDS
            )
            named |= reasons | named_why
            named_how += tuple(h for h in reasons_how if h[0] in reasons) + why_how
        if not concepts and not named:
            return None
        return _procedure(raw, concepts | named, how + named_how)

    def coded_all(self, concepts: Any) -> tuple[frozenset[str], tuple[tuple[str, str], ...]]:
        found: frozenset[str] = _NO_CONCEPTS
        how: tuple[tuple[str, str], ...] = ()
        for concept in _list(concepts):
            hit, hit_how = self.coded(concept)
            found |= hit
            how += hit_how
        return found, how

    # --- Medications

    def medication(self, raw: Mapping[str, Any]) -> MedicationFact | None:
        drug: Any = raw.get("medicationCodeableConcept")
        concepts, how = self.coded(drug)
        texts = _texts(drug)
        reference = _str(_dict(raw.get("medicationReference")).get("reference"))
        referenced = self.medications.get(reference.rsplit("/", 1)[-1]) if reference else None
        if reference and reference.startswith("#"):
            referenced = next(
                (
                    _dict(c)
                    for c in _list(raw.get("contained"))
                    if f"#{_dict(c).get('id')}" == reference
                ),
                None,
            )
        label_from = drug
        if referenced is not None:
            label_from = referenced.get("code")
            found, found_how = self.coded(label_from)
            concepts |= found
            how += found_how
            texts += _texts(label_from)
            for ingredient in _list(referenced.get("ingredient")):
                item = _dict(ingredient).get("itemCodeableConcept")
                found, found_how = self.coded(item)
                concepts |= found
                how += found_how
                texts += _texts(item)
        if reference and not texts:
            texts.append(_str(_dict(raw.get("medicationReference")).get("display")) or "")
        named, named_how = self.named("medication", texts + _notes(raw), concepts)
        # Why it was prescribed ("Right hip pain"): read as a problem-list entry would be.
        reasons = _reason_texts(raw)
        if reasons:
            why, why_how = self.named("condition", reasons, concepts | named | _TREATMENT_WORDS)
            named |= why
            named_how += why_how
        if not concepts and not named:
            return None
        fact = _medication(raw, concepts | named, how + named_how)
        if fact.label == "" and texts:
            fact = replace(fact, label=texts[0])
        elif referenced is not None:
            fact = replace(fact, label=_label(label_from) or fact.label)
        return fact


_NOT_DISTANT = frozenset({"metastatic-disease"})
# What a Condition's evidence or a Procedure's coded reason may add: distant disease or
# recurrence (a cited lab or symptom is read where it is recorded).
_EVIDENCE_CONCEPTS = frozenset(
    {"metastatic-disease", "distant-metastasis-finding", "breast-cancer-recurrence"}
)
# A prescription's reason names the problem, not a treatment ("for chemotherapy nausea").
_TREATMENT_WORDS = frozenset(
    {
        "chemotherapy",
        "radiotherapy-encounter",
        "her2-directed-therapy",
        "cdk46-inhibitor",
        "parp-inhibitor",
        "immunotherapy",
        "other-targeted-antineoplastic",
    }
)
# Concepts an Observation's name may give (the lab it measures); the rest come from its answer.
_LAB_LIKE = frozenset(LABS)
# Never taken from an Observation's name alone: its name is a question ("Cough?"), not a finding.
_NOT_FROM_NAME = frozenset({"metastatic-disease", "breast-cancer-recurrence"})
_SYMPTOM_LIKE = frozenset(SYMPTOMS)
# A report's conclusion code never makes the patient a survivor (it only silences).
_WARNING_ENABLERS_FROM_REPORTS = frozenset(
    {"invasive-breast-cancer", "personal-history-breast-cancer", "breast-cancer-in-remission"}
)
_NARROW = frozenset({"alkaline-phosphatase", "lactate-dehydrogenase", "calcium", "calcium-ionized"})
_STAGING_CONCEPTS = frozenset({"stage-group-observation", "m-category-observation"})
_STAGING_WORDS = re.compile(r"\b(STAGE|STAGING|TNM|AJCC)\b")


def _observation(
    raw: Mapping[str, Any],
    concepts: frozenset[str],
    values: frozenset[str],
    text: TextMatcher | None = None,
    how: tuple[tuple[str, str], ...] = (),
    words: WordMatcher | None = None,
) -> ObservationFact:
    # Hot on large records (thousands of labs): concrete type checks, nothing built that is
    # not kept.
    quantity = raw.get("valueQuantity")
    value = _number(quantity.get("value")) if type(quantity) is dict else None
    flagged = False
    unbounded = False
    if value is None and type(raw.get("valueString")) is str:
        # A result given only as text: "260 H", "412 (H)", "7.1 HIGH".
        written = _VALUE_TEXT.match(raw["valueString"])
        if written:
            value = float(written.group(1))
            flagged = bool(written.group(2))
    high = None
    for reference in _list(raw.get("referenceRange")):
        bound = _dict(_dict(reference).get("high"))
        high = _number(bound.get("value"))
        if high is not None and value is not None and "calcium" in concepts:
            value = _same_unit(value, _dict(quantity), bound)
        if high is None:
            high = _range_high(_str(_dict(reference).get("text")))
        if high is not None:
            break
        low = _number(_dict(_dict(reference).get("low")).get("value"))
        if low is not None and value is not None and value > 2.5 * low and concepts & _NARROW:
            # A range with a lower limit only ("> 40 U/L"): the upper limit is not given. For
            # analytes whose normal range spans less than two and a half times its lower limit
            # (ALP about 40-130 U/L, LDH about 140-280 U/L, calcium about 8.6-10.3 mg/dL), a
            # value past that is read as possibly high (an ALP of 412 against 40).
            unbounded = True
    interpretation = _NO_CONCEPTS
    interpretations = raw.get("interpretation")
    if interpretations:
        interpretation = frozenset(
            code
            for concept in _list(interpretations)
            for coding in _list(_dict(concept).get("coding"))
            if (code := _str(_dict(coding).get("code")))
        )
        if not interpretation and (text is not None or words is not None):
            # Only words ("H", "High", "Abnormal"): read as the abnormal code they stand for.
            flags = [_str(_dict(concept).get("text")) for concept in _list(interpretations)]
            if any(
                (words is not None and words.says_abnormal(w))
                or (text is not None and text.mentions_finding(w))
                for w in flags
                if w
            ):
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
        interpretation=interpretation
        | (_ABNORMAL_BY_TEXT if flagged or (unbounded and high is None) else _NO_CONCEPTS),
        how=how,
    )


# Calcium in mass and molar units (40.08 g/mol): a value in one beside a range in the other.
_CALCIUM_MG_DL_PER_MMOL_L = 4.008
_MOLAR = frozenset({"MMOL/L", "MMOL L"})
_MASS = frozenset({"MG/DL", "MG DL"})


def _same_unit(value: float, quantity: Mapping[str, Any], bound: Mapping[str, Any]) -> float:
    """A calcium value in its reference range's unit (mg/dL and mmol/L told apart by UCUM
    code or unit text); unchanged when either unit is unknown or they already agree."""
    have = str(quantity.get("code") or quantity.get("unit") or "").upper()
    want = str(bound.get("code") or bound.get("unit") or "").upper()
    if have in _MOLAR and want in _MASS:
        return value * _CALCIUM_MG_DL_PER_MMOL_L
    if have in _MASS and want in _MOLAR:
        return value / _CALCIUM_MG_DL_PER_MMOL_L
    return value


_ABNORMAL_BY_TEXT = frozenset({"A"})  # v3 ObservationInterpretation "Abnormal"
# A reference range written only as text, "40-129 U/L" or "40 - 129": its upper bound.
_RANGE_TEXT = re.compile(r"(?<![\d.\-])(\d+(?:\.\d+)?)\s*(?:-|–|to)\s*(\d+(?:\.\d+)?)\b(?![\-.]\d)")
# A value written as text, with a flag: "260 H", "412 (H)", "7.1 HIGH", "96 U/mL HH".
_VALUE_TEXT = re.compile(
    r"^\s*[<>]?\s*(\d+(?:\.\d+)?)\s*(?:(?!(?:HH?|HIGH|ABN|A)\b)[A-Za-z/%µ]+\s*)?"
    r"(\(?\b(?:HH?|HIGH|ABN|A)\b\)?)?\s*$",
    re.IGNORECASE,
)
# Only an upper limit: "<38", "< 38 U/mL", "<=5.0", "≤ 38", "up to 38".
_UPPER_TEXT = re.compile(r"^\s*(?:<=?|≤|up to)\s*(\d+(?:\.\d+)?)\b", re.IGNORECASE)


def _range_high(text: str | None) -> float | None:
    match = _RANGE_TEXT.search(text[:200]) if text else None  # "Ref: 35-104 U/L" too
    if match:
        return float(match.group(2))
    upper = _UPPER_TEXT.match(text) if text else None
    return float(upper.group(1)) if upper else None


def _procedure(
    raw: Mapping[str, Any], concepts: frozenset[str], how: tuple[tuple[str, str], ...] = ()
) -> ProcedureFact:
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
        how=how,
    )


def _medication(
    raw: Mapping[str, Any], concepts: frozenset[str], how: tuple[tuple[str, str], ...] = ()
) -> MedicationFact:
    return MedicationFact(
        id=_str(raw.get("id")) or "",
        concepts=concepts,
        label=_label(raw.get("medicationCodeableConcept")),
        status=_str(raw.get("status")),
        authored=_first_date(raw, "authoredOn", "effectiveDateTime", "effectivePeriod.start"),
        ended=_first_date(raw, "dispenseRequest.validityPeriod.end", "effectivePeriod.end"),
        how=how,
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
    resources: Mapping[str, Sequence[Mapping[str, Any]]],
    knowledge: Knowledge,
    sources: Sources | None = None,
) -> PatientFacts:
    """Reduce the record (resources grouped by prefetch key) to the facts the rules read.

    A resource is read when its codes or its words name a concept (``_Reader``); it is read
    leniently (an element of the wrong shape counts as absent, which the rules treat
    conservatively) and not validated here: full validation costs ~0.4 ms a resource, and
    records run to thousands. ``sources`` collects where each fact came from, so that
    ``validate_cited`` can validate the few records a card cites.
    """
    reader = _Reader(knowledge)
    items: list[tuple[str, int, Mapping[str, Any]]] = []
    seen: dict[str, set[str]] = {}  # ids per type: one resource reached by two searches
    for key, found in resources.items():
        for index, raw in enumerate(found):
            if type(raw) is not dict:
                continue
            rid, rtype = raw.get("id"), raw.get("resourceType")
            if type(rid) is str and type(rtype) is str:  # a client's id may be anything
                ids = seen.get(rtype)
                if ids is None:
                    ids = seen[rtype] = set()
                elif rid in ids:
                    continue
                ids.add(rid)
            items.append((key, index, raw))
    for _, _, raw in items:
        if raw.get("resourceType") == "Medication" and (mid := _str(raw.get("id"))):
            reader.medications[mid] = raw
    patient: Mapping[str, Any] = next(
        (r for _, _, r in items if r.get("resourceType") == "Patient"), {}
    )
    birth = parse_date(patient.get("birthDate"))
    conditions: list[ConditionFact] = []
    observations: list[ObservationFact] = []
    procedures: list[ProcedureFact] = []
    medications: list[MedicationFact] = []
    for key, index, raw in items:
        rtype = raw.get("resourceType")
        fact: ConditionFact | ObservationFact | ProcedureFact | MedicationFact | None
        if rtype == "Condition":
            fact = reader.condition(raw, birth)
            if fact is not None:
                conditions.append(fact)
        elif rtype == "Observation":
            fact = reader.observation(raw)
            if fact is not None:
                observations.append(fact)
            if "component" in raw:  # a panel: each analyte judged as its own result
                observations += reader.component_labs(raw)
        elif rtype in _PROCEDURE_TYPES:
            fact = reader.procedure(raw)
            if fact is not None:
                procedures.append(fact)
        elif rtype in _MEDICATION_TYPES:
            fact = reader.medication(raw)
            if fact is not None:
                medications.append(fact)
        else:
            continue
        if fact is not None and sources is not None:
            sources[(str(rtype), str(raw.get("id")))] = (f"prefetch.{key}[{index}]", raw)
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
