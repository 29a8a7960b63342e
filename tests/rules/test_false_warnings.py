"""No false warning: a warned seed request plus one change (a new diagnosis, a sign, a lab, an
order reason or text, ...) gets no warning; records that only look alarming still warn.

Each case is a false warning found in a clinical review. Through the app: the facts reader and
the rules together."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest
from flask.testing import FlaskClient

from ..conftest import FIXTURES, load_json
from .conftest import SELECT

ICD = "http://hl7.org/fhir/sid/icd-10-cm"
SCT = "http://snomed.info/sct"
LOINC = "http://loinc.org"
CPT = "http://www.ama-assn.org/go/cpt"
Change = Callable[[dict[str, Any]], None]


def seed() -> dict[str, Any]:
    body: dict[str, Any] = load_json(FIXTURES / "requests" / "seed-pet-ct.json")
    return body


def order(body: dict[str, Any]) -> dict[str, Any]:
    resource: dict[str, Any] = body["context"]["draftOrders"]["entry"][0]["resource"]
    return resource


def add(key: str, resource: dict[str, Any]) -> Change:
    def change(body: dict[str, Any]) -> None:
        resource.setdefault("subject", {"reference": f"Patient/{body['context']['patientId']}"})
        bundle = body["prefetch"][key]
        bundle.setdefault("entry", []).append({"resource": copy.deepcopy(resource)})

    return change


def condition(code: str, system: str = ICD, **extra: Any) -> dict[str, Any]:
    return {
        "resourceType": "Condition",
        "id": f"added-{code.replace('.', '')}",
        "clinicalStatus": {
            "coding": [
                {
                    "system": "http://terminology.hl7.org/CodeSystem/condition-clinical",
                    "code": extra.pop("status", "active"),
                }
            ]
        },
        "code": {"coding": [{"system": system, "code": code}]},
        **extra,
    }


def lab(code: str, **extra: Any) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "id": f"lab-{code}",
        "status": "final",
        "code": {"coding": [{"system": LOINC, "code": code}]},
        **extra,
    }


def alp(value: float, **extra: Any) -> dict[str, Any]:
    """An alkaline phosphatase result of this month (U/L)."""
    return lab(
        "6768-6",
        valueQuantity={"value": value, "unit": "U/L"},
        effectiveDateTime="2026-11-01",
        **extra,
    )


def set_reason(text: str, coding: list[dict[str, str]] | None = None) -> Change:
    def change(body: dict[str, Any]) -> None:
        reason: dict[str, Any] = {"text": text}
        if coding:
            reason["coding"] = coding
        order(body)["reasonCode"] = [reason]

    return change


def cancer_onset(value: str) -> Change:
    def change(body: dict[str, Any]) -> None:
        body["prefetch"]["procedures"]["entry"] = []
        for entry in body["prefetch"]["conditions"]["entry"]:
            resource = entry["resource"]
            codes = str(resource.get("code"))
            if "C50" in codes or "408643008" in codes:
                resource["onsetDateTime"] = value
                resource["clinicalStatus"]["coding"][0]["code"] = "active"

    return change


HIGH = {"interpretation": [{"coding": [{"code": "H"}]}], "effectiveDateTime": "2026-11-01"}

SILENCED: dict[str, Change] = {
    "partial-date-new-diagnosis": cancer_onset("2026"),
    "partial-month-new-diagnosis": cancer_onset("2026-11"),
    "excisional-biopsy-after-recent-diagnosis": lambda b: (
        cancer_onset("2026-10-20")(b),
        add(
            "procedures",
            {
                "resourceType": "Procedure",
                "id": "exc",
                "status": "completed",
                "code": {"coding": [{"system": SCT, "code": "392023007"}]},
                "performedDateTime": "2026-10-25",
            },
        )(b),
    ),
    "new-contralateral-primary": add(
        "conditions", condition("C50.911", onsetDateTime="2026-10-20")
    ),
    "new-regional-nodal-recurrence": add(
        "conditions", condition("C77.3", onsetDateTime="2026-10-15")
    ),
    "reason-follow-up-with-lump": set_reason("Routine follow-up; palpable left axillary lump"),
    "reason-coded-history-text-rib-pain": set_reason(
        "Hx breast ca, new rib pain", [{"system": ICD, "code": "Z85.3"}]
    ),
    "reason-lung-screening": set_reason("Lung cancer screening, 30 pack-years"),
    "new-lung-nodule-r91": add("conditions", condition("R91.1", onsetDateTime="2026-10-20")),
    "malignant-pleural-effusion": add("conditions", condition("J91.0", onsetDateTime="2026-10-20")),
    "high-ldh": add("observations", lab("2532-0", **HIGH)),
    "high-ca-27-29": add("observations", lab("17842-6", **HIGH)),
    "high-alp-no-date": add(
        "observations", lab("6768-6", interpretation=[{"coding": [{"code": "HH"}]}])
    ),
    "other-cancer-in-remission-2025": add(
        "conditions",
        condition(
            "C34.90", status="remission", onsetDateTime="2023-01-01", abatementDateTime="2025-03-01"
        ),
    ),
    "other-cancer-history-z85": add("conditions", condition("Z85.038", recordedDate="2023-01-01")),
    "other-cancer-active-since-2010": add(
        "conditions", condition("C34.90", onsetDateTime="2010-01-01")
    ),
    "symptom-onset-age": add(
        "conditions",
        condition(
            "297217002",
            SCT,
            onsetAge={"value": 58, "unit": "a", "system": "http://unitsofmeasure.org", "code": "a"},
            recordedDate="2024-01-01",
        ),
    ),
    "ldct-screening-text-on-ct-code": lambda b: order(b).update(
        code={"coding": [{"system": CPT, "code": "71250"}], "text": "LDCT lung cancer screening"}
    ),
    "conflicting-pet-codes": lambda b: order(b).update(
        code={
            "coding": [{"system": CPT, "code": "78815"}, {"system": CPT, "code": "78814"}],
            "text": "PET/CT",
        }
    ),
    "chemo-statement-last-month": add(
        "medications",
        {
            "resourceType": "MedicationStatement",
            "id": "ms",
            "status": "completed",
            "medicationCodeableConcept": {
                "coding": [
                    {"system": "http://www.nlm.nih.gov/research/umls/rxnorm", "code": "583214"}
                ]
            },
            "effectivePeriod": {"start": "2026-08-01", "end": "2026-10-30"},
        },
    ),
    "stat-priority": lambda b: order(b).update(priority="stat"),
    "stage-iv-as-text": add(
        "observations",
        lab("21908-9", valueCodeableConcept={"text": "Stage IV"}, effectiveDateTime="2026-01-10"),
    ),
    "stage-iv-as-string": add(
        "observations", lab("21908-9", valueString="IV", effectiveDateTime="2026-01-10")
    ),
    "cm1-as-string": add(
        "observations", lab("21907-1", valueString="cM1", effectiveDateTime="2026-01-10")
    ),
    "stage-summary-text-only": lambda b: b["prefetch"]["conditions"]["entry"][0]["resource"].update(
        stage=[{"summary": {"text": "AJCC stage IVB"}}]
    ),
    # A second clinical review (end of the performance work), each a reproduced false warning:
    "c50-titled-metastatic": lambda b: b["prefetch"]["conditions"]["entry"][0]["resource"][
        "code"
    ].update(text="Metastatic breast cancer (HCC)"),
    "added-c50-titled-metastatic-to-bone": add(
        "conditions",
        {
            **condition("C50.912", recordedDate="2026-09-01"),
            "code": {
                "coding": [{"system": ICD, "code": "C50.912"}],
                "text": "Malignant neoplasm of left breast, metastatic to bone",
            },
        },
    ),
    "stage-summary-text-metastatic": lambda b: b["prefetch"]["conditions"]["entry"][0][
        "resource"
    ].update(stage=[{"summary": {"text": "Metastatic"}}]),
    "stage-value-text-metastatic": add(
        "observations",
        lab(
            "21908-9",
            valueCodeableConcept={"text": "Metastatic disease"},
            effectiveDateTime="2026-01-10",
        ),
    ),
    "reason-coded-c50-text-stage-iv": set_reason(
        "Stage IV breast cancer", [{"system": ICD, "code": "C50.412"}]
    ),
    "reason-coded-c50-text-response": set_reason(
        "assess response to treatment", [{"system": ICD, "code": "C50.412"}]
    ),
    "order-text-restaging": lambda b: order(b)["code"].update(
        text="PET/CT SKULL BASE TO MID-THIGH RESTAGING"
    ),
    "order-text-rule-out-metastases": lambda b: order(b)["code"].update(
        text="PET/CT SKULL BASE TO MID-THIGH R/O METASTASES"
    ),
    "order-text-initial-staging": lambda b: order(b)["code"].update(text="PET/CT INITIAL STAGING"),
    "active-capecitabine": add(
        "medications",
        {
            "resourceType": "MedicationRequest",
            "id": "cape",
            "status": "active",
            "intent": "order",
            "medicationCodeableConcept": {
                "coding": [
                    {"system": "http://www.nlm.nih.gov/research/umls/rxnorm", "code": "200327"}
                ]
            },
            "authoredOn": "2026-10-01",
        },
    ),
    "old-symptom-now-recurrence": add(
        "conditions",
        condition("297217002", SCT, status="recurrence", onsetDateTime="2023-06-01"),
    ),
    "old-symptom-now-relapse": add(
        "conditions",
        condition("297217002", SCT, status="relapse", onsetDateTime="2023-06-01"),
    ),
    **{
        f"sign-{code}": add("conditions", condition(code, onsetDateTime="2026-10-20"))
        for code in ("E83.52", "J90", "M84.48XA", "M48.50XA", "G95.20", "G40.89", "M25.559")
    },
    "new-contralateral-primary-recorded-only": add(
        "conditions", condition("C50.911", recordedDate="2026-10-15")
    ),
    "alp-high-by-interpretation-text": add(
        "observations", alp(310, interpretation=[{"text": "High"}])
    ),
    "alp-above-a-range-given-as-text": add(
        "observations", alp(310, referenceRange=[{"text": "40-129 U/L"}])
    ),
    "sibling-order-for-chronic-cough": lambda b: b["context"]["draftOrders"]["entry"].append(
        {
            "resource": {
                "resourceType": "ServiceRequest",
                "id": "cxr-1",
                "status": "draft",
                "intent": "order",
                "code": {"coding": [{"system": CPT, "code": "71046"}], "text": "XR CHEST 2 VIEWS"},
                "subject": {"reference": f"Patient/{b['context']['patientId']}"},
                "reasonCode": [
                    {"coding": [{"system": ICD, "code": "R05.3"}], "text": "Chronic cough"}
                ],
            }
        }
    ),
}


@pytest.mark.parametrize(
    "extra",
    [
        {"interpretation": [{"text": "Normal"}]},
        {"referenceRange": [{"text": "40-129 U/L"}]},
        {"referenceRange": [{"text": "see report"}], "interpretation": [{"text": "N"}]},
    ],
    ids=["normal-in-words", "within-a-range-given-as-text", "unreadable-words"],
)
def test_normal_labs_in_words_still_warn(client: FlaskClient, extra: dict[str, Any]) -> None:
    body = seed()
    add("observations", alp(95, **extra))(body)
    assert [c["indicator"] for c in client.post(SELECT, json=body).get_json()["cards"]] == [
        "warning"
    ]


def test_the_same_cancer_recorded_again_still_warns(client: FlaskClient) -> None:
    """An entry without onset that shares a code with the dated diagnosis (the C50.412 of
    2021 entered again last month) is that diagnosis recorded again, not a new one."""
    body = seed()
    add("conditions", condition("C50.412", recordedDate="2026-10-15"))(body)
    assert [c["indicator"] for c in client.post(SELECT, json=body).get_json()["cards"]] == [
        "warning"
    ]


def test_regional_node_titles_still_warn(client: FlaskClient) -> None:
    """Reading titles for metastatic disease stays on the breast cancer entries: a C77.3 entry
    at diagnosis ("Secondary ... neoplasm of lymph nodes of axilla") is regional and still
    warns; a C50 entry titled "Non-metastatic" does too."""
    body = load_json(FIXTURES / "requests" / "axillary-nodes-c77-3-regional.json")
    assert [c["indicator"] for c in client.post(SELECT, json=body).get_json()["cards"]] == [
        "warning"
    ]
    body = seed()
    body["prefetch"]["conditions"]["entry"][0]["resource"]["code"]["text"] = (
        "Non-metastatic invasive ductal carcinoma of left breast"
    )
    assert [c["indicator"] for c in client.post(SELECT, json=body).get_json()["cards"]] == [
        "warning"
    ]


@pytest.mark.parametrize("name", list(SILENCED))
def test_no_false_warning(client: FlaskClient, name: str) -> None:
    body = seed()
    assert [c["indicator"] for c in client.post(SELECT, json=body).get_json()["cards"]] == [
        "warning"
    ]
    SILENCED[name](body)
    response = client.post(SELECT, json=body)
    assert response.status_code == 200
    assert [c for c in response.get_json()["cards"] if c["indicator"] == "warning"] == []
