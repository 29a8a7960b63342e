"""Clinical recall (issue 14): charts that say it in words, local codes, components or other
resources than the mapped ones. Each case is the seed survivor (who is warned) with one change
written the way a real chart writes it; a silenced case must give no warning, a warned case must
still give one (over-silencing is a failure too)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from flask.testing import FlaskClient

from .rules.conftest import SELECT
from .rules.test_false_warnings import SCT, add, condition, order, seed

LOCAL = "http://hospital.example.org/fhir/CodeSystem/problem-list"
LOCAL_LAB = "http://hospital.example.org/fhir/CodeSystem/lab"
LOCAL_MED = "http://hospital.example.org/fhir/CodeSystem/formulary"
Change = Callable[[dict[str, Any]], Any]


def local_condition(text: str, **extra: Any) -> dict[str, Any]:
    """A problem-list entry under a local code whose only readable part is its words."""
    return {
        "resourceType": "Condition",
        "id": "local-" + "".join(ch for ch in text.lower() if ch.isalnum())[:40],
        "clinicalStatus": {
            "coding": [
                {
                    "system": "http://terminology.hl7.org/CodeSystem/condition-clinical",
                    "code": extra.pop("status", "active"),
                }
            ]
        },
        "code": {"coding": [{"system": LOCAL, "code": "PL-88231", "display": text}], "text": text},
        "recordedDate": extra.pop("recordedDate", "2026-10-20"),
        **extra,
    }


def local_lab(name: str, value: float, unit: str, **extra: Any) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "id": "local-lab",
        "status": "final",
        "category": [
            {
                "coding": [
                    {
                        "system": "http://terminology.hl7.org/CodeSystem/observation-category",
                        "code": "laboratory",
                    }
                ]
            }
        ],
        "code": {"coding": [{"system": LOCAL_LAB, "code": "L-1044"}], "text": name},
        "valueQuantity": {"value": value, "unit": unit, "system": "http://unitsofmeasure.org"},
        "effectiveDateTime": "2026-11-10",
        **extra,
    }


def med_by_name(text: str, status: str = "active", **extra: Any) -> dict[str, Any]:
    return {
        "resourceType": "MedicationRequest",
        "id": "local-med",
        "status": status,
        "intent": "order",
        "medicationCodeableConcept": {
            "coding": [{"system": LOCAL_MED, "code": "F-20931", "display": text}],
            "text": text,
        },
        "authoredOn": extra.pop("authoredOn", "2026-09-01"),
        **extra,
    }


def ros(question: str, answer: str, answer_code: str | None = None) -> dict[str, Any]:
    """A review-of-systems answer: the symptom as the question, the answer as its value."""
    value: dict[str, Any] = {"text": answer}
    if answer_code:
        value["coding"] = [{"system": SCT, "code": answer_code, "display": answer}]
    return {
        "resourceType": "Observation",
        "id": "ros-" + question.lower().replace(" ", "-"),
        "status": "final",
        "code": {"text": question},
        "valueCodeableConcept": value,
        "effectiveDateTime": "2026-11-10",
    }


def said(name: str, value: str, when: str = "2026-11-12") -> dict[str, Any]:
    """An Observation whose answer is written as text ("Chief complaint": "dry cough")."""
    return {
        "resourceType": "Observation",
        "id": "said-" + "".join(ch for ch in name.lower() if ch.isalnum()),
        "status": "final",
        "code": {"text": name},
        "valueString": value,
        "effectiveDateTime": when,
    }


def ros_panel(**answers: str) -> dict[str, Any]:
    """A review-of-systems panel: one component per symptom, answered in words."""
    return {
        "resourceType": "Observation",
        "id": "ros-panel",
        "status": "final",
        "code": {"text": "Review of systems panel"},
        "effectiveDateTime": "2026-11-12",
        "component": [
            {"code": {"text": name.replace("_", " ")}, "valueString": answer}
            for name, answer in answers.items()
        ],
    }


def order_note(text: str) -> Change:
    return lambda body: order(body).update(note=[{"text": text}])


def order_detail(text: str) -> Change:
    return lambda body: order(body).update(orderDetail=[{"text": text}])


def stage_note(text: str) -> Change:
    def change(body: dict[str, Any]) -> None:
        body["prefetch"]["conditions"]["entry"][0]["resource"]["note"] = [{"text": text}]

    return change


SILENCED: dict[str, Change] = {
    # 1. conditions outside the mapped codes: a local code with words only
    "local-metastatic-to-bone": add(
        "conditions", local_condition("Metastatic breast cancer to bone")
    ),
    "local-liver-lesion": add("conditions", local_condition("Liver lesion, indeterminate")),
    "local-lung-cancer": add(
        "conditions", local_condition("Non-small cell lung cancer, RUL, on treatment")
    ),
    "local-lymphoma": add("conditions", local_condition("Follicular lymphoma, grade 2")),
    "local-recurrence": add(
        "conditions", local_condition("Recurrent breast cancer, left chest wall")
    ),
    "report-conclusion-osseous-metastases": add(
        "procedures",
        {
            "resourceType": "DiagnosticReport",
            "id": "bone-scan-report",
            "status": "final",
            "code": {"text": "NM bone scan, outside report"},
            "effectiveDateTime": "2026-10-02",
            "conclusion": "Multiple osseous metastases, new since 2024.",
        },
    ),
    # 2. stage written compactly
    "tnm-compact-cm1": stage_note("cT2N1M1 (bone), ER+/HER2-"),
    "tnm-spaced-pm1": stage_note("pT1c pN0 cM1"),
    "tnm-yp-m1": stage_note("ypT0 N0 M1 after neoadjuvant therapy"),
    "stage-4-words": add("observations", said("Cancer staging", "Stage 4 (M1, liver)", "2025-02")),
    # 3. systemic therapy by class, coded locally or named
    "palbociclib-by-brand": add("medications", med_by_name("IBRANCE 125 MG capsule")),
    "trastuzumab-local": add("medications", med_by_name("trastuzumab-anns (Kanjinti) 420 mg IV")),
    "medication-resource-reference": lambda body: (
        add(
            "medications",
            {
                "resourceType": "Medication",
                "id": "med-olaparib",
                "code": {"text": "Lynparza 150 mg tablet"},
            },
        )(body),
        add(
            "medications",
            {
                "resourceType": "MedicationRequest",
                "id": "mr-olaparib",
                "status": "active",
                "intent": "order",
                "medicationReference": {"reference": "Medication/med-olaparib"},
                "authoredOn": "2026-08-01",
            },
        )(body),
    ),
    "pembrolizumab-ended-two-months-ago": add(
        "medications",
        med_by_name(
            "KEYTRUDA 200 mg IV q3w",
            status="completed",
            authoredOn="2026-03-01",
            dispenseRequest={"validityPeriod": {"end": "2026-09-20"}},
        ),
    ),
    "cdk46-brand-coded-locally-on-a-statement": add(
        "medications",
        {
            "resourceType": "MedicationStatement",
            "id": "ms-verzenio",
            "status": "active",
            "medicationCodeableConcept": {"text": "Verzenio 150 mg twice daily"},
            "effectivePeriod": {"start": "2025-06-01"},
        },
    ),
    "recent-z85-other-cancer": add("conditions", condition("Z85.038", recordedDate="2024-05-01")),
    "history-of-lymphoma-in-words-recent": add(
        "conditions", local_condition("History of Hodgkin lymphoma", recordedDate="2025-02-01")
    ),
    "undated-unspecified-side-recorded-last-month": add(
        "conditions", condition("C50.919", recordedDate="2026-10-15")
    ),
    "oxycodone-for-new-hip-pain": add(
        "medications",
        med_by_name(
            "oxycodone 5 mg tablet",
            authoredOn="2026-11-01",
            reasonCode=[{"text": "Right hip pain"}],
        ),
    ),
    "colon-cancer-ended-2022-as-text": add(
        "conditions",
        local_condition(
            "Adenocarcinoma of sigmoid colon, stage IIIB",
            status="resolved",
            onsetDateTime="2021-03-01",
            abatementString="completed FOLFOX 06/2022",
        ),
    ),
    "capecitabine-brand": add("medications", med_by_name("Xeloda 500 mg tablet")),
    "chemo-stopped-last-month": add(
        "medications",
        med_by_name("PACLITAXEL 80 MG/M2 IV weekly", status="stopped", authoredOn="2026-06-01"),
    ),
    # 4. symptoms and findings as words and as Observation answers
    "ros-cough-present": add("observations", ros("Cough", "Present")),
    "ros-bone-pain-yes": add("observations", ros("Bone pain", "Yes")),
    "finding-as-value": add(
        "observations", said("Chief complaint", "dry cough for 6 weeks, some weight loss")
    ),
    "ros-panel-one-present": add(
        "observations", ros_panel(Cough="No", Bone_pain="Yes, ribs", Headache="Absent")
    ),
    "local-hypercalcemia": add("conditions", local_condition("Hypercalcemia")),
    "local-pleural-effusion": add("conditions", local_condition("Right pleural effusion")),
    # 5. labs by analyte under local codes and other units
    "local-alk-phos-high": add(
        "observations",
        local_lab("ALK PHOS", 312, "U/L", referenceRange=[{"high": {"value": 129}}]),
    ),
    "calcium-molar-against-mass-range": add(
        "observations",
        local_lab(
            "Calcium, serum",
            2.9,
            "mmol/L",
            referenceRange=[{"high": {"value": 10.2, "unit": "mg/dL"}}],
        ),
    ),
    # 6. the order's own words
    "order-note-new-back-pain": order_note("Hx breast ca. New back pain x 3 weeks, r/o mets."),
    "order-detail-trauma": order_detail("Reason for exam: fall from ladder, trauma"),
    "order-note-pre-op": order_note("Pre-op planning for hip replacement"),
    "order-instruction-restaging": lambda body: order(body).update(
        patientInstruction="Restaging scan before your oncology visit"
    ),
}


WARNED: dict[str, Change] = {
    # Documented negatives are not symptoms.
    "ros-cough-absent-coded": add("observations", ros("Cough", "Absent", "2667000")),
    "ros-bone-pain-no": add("observations", ros("Bone pain", "No")),
    "denies-in-words": add(
        "observations",
        said("Review of systems", "Denies bone pain, cough, shortness of breath or weight loss."),
    ),
    "ros-panel-all-absent": add(
        "observations", ros_panel(Cough="No", Bone_pain="Absent", Headache="Denies")
    ),
    "order-note-asymptomatic": order_note("Routine surveillance, asymptomatic. Pt requests scan."),
    "order-note-symptom-free": order_note("Symptom-free; patient anxious about recurrence"),
    # Words inside other words, and other people.
    "family-history-lung-cancer": add(
        "conditions", local_condition("Family history of lung cancer (mother)")
    ),
    "lung-cancer-screening-entry": add(
        "conditions", local_condition("Lung cancer screening, former smoker")
    ),
    "calcium-score": add(
        "observations",
        local_lab("Coronary artery calcium score", 312, "Agatston"),
    ),
    "normal-calcium-molar": add(
        "observations",
        local_lab(
            "Calcium, serum",
            2.3,
            "mmol/L",
            referenceRange=[{"high": {"value": 10.2, "unit": "mg/dL"}}],
        ),
    ),
    "history-of-chemotherapy": add(
        "conditions", local_condition("History of chemotherapy (AC-T, 2019)")
    ),
    "remote-skin-cancer": add(
        "conditions", local_condition("Basal cell carcinoma of nose, excised 2009")
    ),
    "letrozole-by-brand": add("medications", med_by_name("Femara 2.5 mg tablet")),
    "z85-colon-history-entered-2009": add(
        "conditions", condition("Z85.038", recordedDate="2009-03-01")
    ),
    "z85-skin-history": add("conditions", condition("Z85.828", recordedDate="2024-01-01")),
    "prediabetes-r73-03": add("conditions", condition("R73.03", recordedDate="2026-10-01")),
    "history-of-lymphoma-in-words-old": add(
        "conditions",
        local_condition("History of Hodgkin lymphoma, treated 1989", recordedDate="2012-01-01"),
    ),
    "encounter-diagnosis-same-breast": add(
        "conditions", condition("C50.912", recordedDate="2026-10-15")
    ),
    "thyroid-cancer-2008-reconciled-2023": add(
        "conditions",
        condition("Z85.850", onsetDateTime="2008-05-01", recordedDate="2023-02-01"),
    ),
    "migrated-icd-entry-ended-2016": add(
        "conditions",
        condition(
            "C50.912",
            recordedDate="2026-10-01",
            abatementDateTime="2016-05-01",
            status="resolved",
        ),
    ),
}


def _indicators(client: FlaskClient, body: dict[str, Any]) -> list[str]:
    response = client.post(SELECT, json=body)
    assert response.status_code == 200, response.get_data(as_text=True)
    return [c["indicator"] for c in response.get_json()["cards"]]


@pytest.mark.parametrize("name", list(SILENCED))
def test_words_silence(client: FlaskClient, name: str) -> None:
    body = seed()
    assert _indicators(client, body) == ["warning"]
    SILENCED[name](body)
    assert "warning" not in _indicators(client, body)


@pytest.mark.parametrize("name", list(WARNED))
def test_words_do_not_over_silence(client: FlaskClient, name: str) -> None:
    body = seed()
    WARNED[name](body)
    assert _indicators(client, body) == ["warning"]


def test_words_never_make_a_survivor(client: FlaskClient) -> None:
    """Words may only silence: a patient whose only breast cancer is a local-coded title is
    not warned, however clearly the title reads."""
    body = seed()
    conditions = body["prefetch"]["conditions"]
    conditions["entry"] = [
        {"resource": local_condition("History of invasive ductal carcinoma of left breast")}
    ]
    assert "warning" not in _indicators(client, body)


@pytest.mark.parametrize(
    ("drug", "authored", "rule"),
    [
        ("Herceptin 600 mg SC every 3 weeks", "2024-06-01", "her2-therapy-beyond-one-year"),
        ("Herceptin 600 mg SC every 3 weeks", "2026-06-01", "active-her2-directed-therapy"),
        ("Verzenio 150 mg twice daily", "2025-01-10", "active-cdk46-inhibitor"),
        ("Lynparza 300 mg twice daily", "2026-02-01", "active-parp-inhibitor"),
    ],
)
def test_systemic_therapy_names_its_class(app: Any, drug: str, authored: str, rule: str) -> None:
    """HER2-directed therapy begun more than a year ago and CDK4/6 inhibitors imply advanced
    or high-risk disease: the verdict says so by name (issue 14, class 3)."""
    from datetime import date

    from cds_service.fhir import build_facts, bundle_resources, parse_orders
    from cds_service.rules import evaluate

    body = seed()
    add("medications", med_by_name(drug, authoredOn=authored))(body)
    knowledge = app.extensions["cds_service"].knowledge
    resources = {k: list(bundle_resources(v)) for k, v in body["prefetch"].items() if v}
    orders = parse_orders(body["context"]["draftOrders"], None, knowledge.codes)
    [finding] = evaluate(build_facts(resources, knowledge), orders, knowledge, date(2026, 11, 25))
    assert (finding.verdict, finding.reason) == ("silent", rule)
