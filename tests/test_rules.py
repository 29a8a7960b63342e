"""The guideline as pure functions: facts in, verdicts out, ``today`` passed in."""

from __future__ import annotations

from datetime import date, timedelta

import pytest

from cds_service.facts import (
    ConditionFact,
    MedicationFact,
    ObservationFact,
    OrderFact,
    PatientFacts,
    ProcedureFact,
    ReasonFact,
)
from cds_service.mappings import Knowledge, load_dir
from cds_service.rules import REQUIRED_CONCEPTS, WARNING_ENABLERS, Windows, assess_patient, evaluate

from .conftest import MAPPINGS

TODAY = date(2026, 11, 25)


def ago(days: int) -> date:
    return TODAY - timedelta(days=days)


@pytest.fixture(scope="module")
def knowledge() -> Knowledge:
    return load_dir(MAPPINGS, REQUIRED_CONCEPTS, WARNING_ENABLERS)


def cancer(**kw: object) -> ConditionFact:
    base: dict[str, object] = {
        "id": "bc",
        "concepts": frozenset({"invasive-breast-cancer"}),
        "label": "Infiltrating duct carcinoma of breast",
        "clinical_status": "remission",
        "onset": ago(5 * 365),
    }
    base.update(kw)
    return ConditionFact(**base)  # type: ignore[arg-type]


def condition(concept: str, **kw: object) -> ConditionFact:
    base: dict[str, object] = {
        "id": concept,
        "concepts": frozenset({concept}),
        "label": concept,
        "clinical_status": "active",
    }
    base.update(kw)
    return ConditionFact(**base)  # type: ignore[arg-type]


LUMPECTOMY = ProcedureFact(
    "px", frozenset({"breast-surgery"}), "Lumpectomy", "completed", ago(5 * 365 - 30)
)
SURVIVOR = PatientFacts(conditions=(cancer(),), procedures=(LUMPECTOMY,))
PET_CT = OrderFact("ServiceRequest/pet", "ServiceRequest", frozenset({"pet-ct"}), "PET/CT")


def verdict(
    facts: PatientFacts, knowledge: Knowledge, order: OrderFact = PET_CT
) -> tuple[str, str]:
    finding = evaluate(facts, [order], knowledge, TODAY)[0]
    return finding.verdict, finding.reason


def with_conditions(*extra: ConditionFact) -> PatientFacts:
    return PatientFacts(conditions=(cancer(), *extra), procedures=(LUMPECTOMY,))


def test_asymptomatic_survivor_gets_a_warning(knowledge: Knowledge) -> None:
    assert verdict(SURVIVOR, knowledge) == ("warn", "variant-10")


def test_no_breast_cancer_no_scenario(knowledge: Knowledge) -> None:
    assert verdict(PatientFacts(), knowledge) == ("silent", "no-invasive-breast-cancer")


def test_dcis_only_is_not_invasive(knowledge: Knowledge) -> None:
    facts = PatientFacts(conditions=(condition("dcis"),))
    assert verdict(facts, knowledge) == ("silent", "dcis-only")


def test_family_history_never_counts(knowledge: Knowledge) -> None:
    facts = PatientFacts(conditions=(condition("family-history-breast-cancer"),))
    assert verdict(facts, knowledge) == ("silent", "family-history-only")


@pytest.mark.parametrize("status", ["refuted", "entered-in-error"])
def test_refuted_breast_cancer_does_not_make_a_survivor(knowledge: Knowledge, status: str) -> None:
    facts = PatientFacts(conditions=(cancer(verification=status),))
    assert verdict(facts, knowledge)[0] == "silent"


def test_metastatic_disease_silences(knowledge: Knowledge) -> None:
    facts = with_conditions(condition("metastatic-disease", onset=ago(400)))
    assert verdict(facts, knowledge) == ("silent", "metastatic-disease")


def test_stage_iv_observation_silences(knowledge: Knowledge) -> None:
    stage = ObservationFact(
        "st",
        frozenset({"stage-group-observation"}),
        "Stage",
        "final",
        ago(2000),
        frozenset({"stage-iv-value"}),
    )
    facts = PatientFacts(conditions=(cancer(),), observations=(stage,), procedures=(LUMPECTOMY,))
    assert verdict(facts, knowledge) == ("silent", "stage-iv")


def test_stage_iv_on_condition_stage_silences(knowledge: Knowledge) -> None:
    facts = PatientFacts(
        conditions=(cancer(stage_concepts=frozenset({"stage-iv-value"})),), procedures=(LUMPECTOMY,)
    )
    assert verdict(facts, knowledge) == ("silent", "stage-iv")


@pytest.mark.parametrize("status", ["recurrence", "relapse"])
def test_recurrence_silences(knowledge: Knowledge, status: str) -> None:
    facts = PatientFacts(conditions=(cancer(clinical_status=status),), procedures=(LUMPECTOMY,))
    assert verdict(facts, knowledge) == ("silent", "recurrence")


def test_recent_diagnosis_without_surgery_is_initial_staging(knowledge: Knowledge) -> None:
    facts = PatientFacts(conditions=(cancer(onset=ago(60), clinical_status="active"),))
    assert verdict(facts, knowledge) == ("silent", "initial-staging")


def test_decades_old_active_condition_is_history(knowledge: Knowledge) -> None:
    facts = PatientFacts(conditions=(cancer(onset=ago(20 * 365), clinical_status="active"),))
    assert verdict(facts, knowledge) == ("warn", "variant-10")


def test_unknown_diagnosis_date_without_history_is_silent(knowledge: Knowledge) -> None:
    facts = PatientFacts(conditions=(cancer(onset=None, clinical_status="active"),))
    assert verdict(facts, knowledge) == ("silent", "diagnosis-date-unknown")


def test_personal_history_code_is_enough(knowledge: Knowledge) -> None:
    z85 = condition("personal-history-breast-cancer", onset=None)
    z85 = ConditionFact(
        **{
            **z85.__dict__,
            "concepts": frozenset({"personal-history-breast-cancer", "invasive-breast-cancer"}),
        }
    )
    assert verdict(PatientFacts(conditions=(z85,)), knowledge) == ("warn", "variant-10")


def test_active_chemotherapy_silences(knowledge: Knowledge) -> None:
    chemo = MedicationFact("m", frozenset({"chemotherapy"}), "paclitaxel", "active", ago(20))
    facts = PatientFacts(conditions=(cancer(),), procedures=(LUMPECTOMY,), medications=(chemo,))
    assert verdict(facts, knowledge) == ("silent", "active-chemotherapy")


def test_endocrine_therapy_is_not_active_treatment(knowledge: Knowledge) -> None:
    ai = MedicationFact("m", frozenset({"endocrine-therapy"}), "anastrozole", "active", ago(20))
    facts = PatientFacts(conditions=(cancer(),), procedures=(LUMPECTOMY,), medications=(ai,))
    assert verdict(facts, knowledge) == ("warn", "variant-10")


def test_new_symptom_gives_targeted_info_not_warning(knowledge: Knowledge) -> None:
    facts = with_conditions(condition("headache", onset=ago(20)))
    assert verdict(facts, knowledge) == ("info-targeted", "symptom:headache")


def test_symptom_with_its_targeted_study_gives_no_card(knowledge: Knowledge) -> None:
    facts = with_conditions(condition("bone-pain", onset=ago(20)))
    bone_scan = OrderFact(
        "ServiceRequest/b", "ServiceRequest", frozenset({"bone-scan-whole-body"}), "Bone scan"
    )
    assert verdict(facts, knowledge, bone_scan) == ("silent", "symptom:bone-pain")


def test_persistent_symptom_silences(knowledge: Knowledge) -> None:
    facts = with_conditions(condition("cough", onset=ago(200)))
    ct = OrderFact("ServiceRequest/c", "ServiceRequest", frozenset({"ct-chest"}), "CT chest")
    assert verdict(facts, knowledge, ct) == ("silent", "symptom:cough")


def test_long_standing_symptom_does_not_silence_but_is_mentioned(knowledge: Knowledge) -> None:
    facts = with_conditions(condition("back-pain", onset=ago(6 * 365)))
    finding = evaluate(facts, [PET_CT], knowledge, TODAY)[0]
    assert finding.verdict == "warn"
    assert [e.concept for e in finding.long_standing] == ["back-pain"]


def test_resolved_symptom_counts_only_when_recent(knowledge: Knowledge) -> None:
    old = with_conditions(
        condition("cough", clinical_status="resolved", onset=ago(800), abatement=ago(700))
    )
    recent = with_conditions(
        condition("cough", clinical_status="resolved", onset=ago(100), abatement=ago(10))
    )
    assert verdict(old, knowledge)[0] == "warn"
    assert verdict(recent, knowledge)[0] != "warn"


def test_refuted_symptom_does_not_silence(knowledge: Knowledge) -> None:
    facts = with_conditions(condition("bone-pain", onset=ago(10), verification="refuted"))
    assert verdict(facts, knowledge)[0] == "warn"


def test_symptom_of_unknown_date_silences(knowledge: Knowledge) -> None:
    facts = with_conditions(condition("jaundice"))
    assert verdict(facts, knowledge)[0] != "warn"


@pytest.mark.parametrize(
    ("interpretation", "value", "high", "days", "warns"),
    [
        (frozenset({"H"}), 180.0, None, 30, False),
        (frozenset(), 180.0, 120.0, 30, False),
        (frozenset(), 100.0, 120.0, 30, True),
        (frozenset({"H"}), 180.0, 120.0, 2 * 365, True),
        (frozenset({"N"}), 80.0, 120.0, 10, True),
    ],
)
def test_abnormal_lab_window(
    knowledge: Knowledge,
    interpretation: frozenset[str],
    value: float,
    high: float | None,
    days: int,
    warns: bool,
) -> None:
    alp = ObservationFact(
        "alp",
        frozenset({"alkaline-phosphatase"}),
        "ALP",
        "final",
        ago(days),
        value=value,
        reference_high=high,
        interpretation=interpretation,
    )
    facts = PatientFacts(conditions=(cancer(),), observations=(alp,), procedures=(LUMPECTOMY,))
    assert (verdict(facts, knowledge)[0] == "warn") is warns


def test_order_reason_symptom_silences(knowledge: Knowledge) -> None:
    order = OrderFact(
        "ServiceRequest/pet",
        "ServiceRequest",
        frozenset({"pet-ct"}),
        "PET/CT",
        reasons=(ReasonFact(frozenset({"bone-pain"}), "Rib pain"),),
    )
    assert verdict(SURVIVOR, knowledge, order) == ("silent", "order-reason:bone-pain")


def test_order_reason_reference_to_symptom_silences(knowledge: Knowledge) -> None:
    pain = condition("bone-pain", id="pain-1", onset=ago(5 * 365))
    facts = with_conditions(pain)
    order = OrderFact(
        "ServiceRequest/pet",
        "ServiceRequest",
        frozenset({"pet-ct"}),
        "PET/CT",
        reason_references=("Condition/pain-1",),
    )
    assert verdict(facts, knowledge, order) == ("silent", "order-reason:bone-pain")


def test_other_active_cancer_silences(knowledge: Knowledge) -> None:
    facts = with_conditions(condition("other-primary-malignancy", onset=ago(120)))
    assert verdict(facts, knowledge) == ("silent", "other-cancer")


def test_windows_are_configurable(knowledge: Knowledge) -> None:
    facts = with_conditions(
        condition("cough", onset=ago(200), clinical_status="resolved", abatement=ago(150))
    )
    assert evaluate(facts, [PET_CT], knowledge, TODAY)[0].verdict == "warn"
    wide = Windows(symptom_new=180)
    assert evaluate(facts, [PET_CT], knowledge, TODAY, wide)[0].verdict != "warn"


def test_assessment_names_its_evidence() -> None:
    assessment = assess_patient(SURVIVOR, TODAY)
    assert assessment.survivor
    assert [e.id for e in assessment.evidence] == ["bc"]
    assert assessment.exclusions == ()


def _pet_with(*reasons: ReasonFact, refs: tuple[str, ...] = ()) -> OrderFact:
    return OrderFact(
        "ServiceRequest/pet",
        "ServiceRequest",
        frozenset({"pet-ct"}),
        "PET/CT",
        reasons=reasons,
        reason_references=refs,
    )


@pytest.mark.parametrize(
    ("reason", "expected"),
    [
        (ReasonFact(frozenset({"invasive-breast-cancer"}), "Breast cancer"), "warn"),
        (ReasonFact(frozenset({"surveillance-encounter"}), "Z08"), "warn"),
        (ReasonFact(frozenset(), "Routine follow-up, history of breast cancer"), "warn"),
        (ReasonFact(frozenset(), "Pulmonary nodule"), "silent"),
        (ReasonFact(frozenset(), "Follow up; new back pain"), "silent"),
        (ReasonFact(frozenset(), ""), "silent"),
        (ReasonFact(frozenset({"metastatic-disease"}), "Bone metastases"), "silent"),
    ],
)
def test_order_reasons(knowledge: Knowledge, reason: ReasonFact, expected: str) -> None:
    assert verdict(SURVIVOR, knowledge, _pet_with(reason))[0] == expected


def test_surveillance_reason_is_noted_on_the_finding(knowledge: Knowledge) -> None:
    order = _pet_with(ReasonFact(frozenset({"surveillance-encounter"}), "Z08"))
    assert evaluate(SURVIVOR, [order], knowledge, TODAY)[0].surveillance_reason


def test_reason_reference_we_cannot_read_silences(knowledge: Knowledge) -> None:
    order = _pet_with(refs=("Condition/not-in-the-record",))
    assert verdict(SURVIVOR, knowledge, order) == ("silent", "order-reason:not-surveillance")
    order = _pet_with(refs=("Observation/some-finding",))
    assert verdict(SURVIVOR, knowledge, order)[0] == "silent"
