"""ACR Variants 1-2 on facts: which stage readings belong to the diagnosis being staged, when
they place it positively at stage I-IIA (AJCC 8 anatomic stage), and the exclusions that keep
the service quiet (issue 20)."""

from __future__ import annotations

from dataclasses import replace

import pytest

from cds_service.facts import ObservationFact, OrderFact, PatientFacts, ReasonFact, StageFact
from cds_service.mappings import Knowledge
from cds_service.rules.early_stage import classify, early_stage

from .conftest import LUMPECTOMY, PET_CT, ago, cancer, condition, verdict

NEW = cancer(id="new", clinical_status="active", onset=ago(20), label="Left breast IDC")


def stage(**kw: object) -> StageFact:
    base: dict[str, object] = {
        "id": "st",
        "kind": "Observation",
        "label": "AJCC stage IA",
        "basis": "clinical",
        "concepts": frozenset({"stage-group-early-value"}),
        "when": ago(10),
        "focus": "new",
    }
    base.update(kw)
    return StageFact(**base)  # type: ignore[arg-type]


def new_patient(*stages: StageFact, conditions: tuple[object, ...] = ()) -> PatientFacts:
    return PatientFacts(conditions=(NEW, *conditions), stages=stages)  # type: ignore[arg-type]


STAGING = replace(PET_CT, reasons=(ReasonFact(frozenset(), "staging"),))


def words(label: str, **kw: object) -> StageFact:
    base: dict[str, object] = {"kind": "Condition", "id": "new", "concepts": frozenset()}
    return stage(label=label, **(base | kw))


# --- the stage readings of one source -----------------------------------------------------


@pytest.mark.parametrize(
    ("readings", "expected"),
    [
        ([stage()], "early"),
        ([words("stage IIA", group="IIA")], "early"),
        ([words("T1c N0 M0", t="T1c", n="N0", m="M0")], "early"),
        ([words("T1b N1mi", t="T1b", n="N1mi")], "early"),
        ([words("T0 N1", t="T0", n="N1")], "unplaced"),  # an occult primary: its own work-up
        ([words("T2 N0 MX", t="T2", n="N0", m="MX")], "early"),
        ([words("T2 N1 M0", t="T2", n="N1", m="M0")], "late"),  # IIB given only as TNM
        ([words("T3 N0", t="T3", n="N0")], "late"),
        ([words("T4d N1", t="T4d", n="N1")], "late"),  # inflammatory
        ([words("T1 N2a", t="T1", n="N2a")], "late"),
        ([words("T1 N0 M1", t="T1", n="N0", m="M1")], "late"),
        ([words("stage IIB", group="IIB")], "late"),
        ([words("stage IV", group="IV")], "late"),
        ([words("stage II", group="II")], "unplaced"),
        ([words("stage 0", group="0")], "unplaced"),
        ([words("Tis N0", t="Tis", n="N0")], "unplaced"),
        ([words("TX N0", t="Tx", n="N0")], "unplaced"),
        ([words("ypT1 N0", t="T1", n="N0", basis="post-therapy")], "unplaced"),
        ([stage(concepts=frozenset({"non-metastatic-stage-value"}))], "unplaced"),  # generic
        (
            [stage(concepts=frozenset({"t1-value"})), stage(concepts=frozenset({"n1-value"}))],
            "early",
        ),
        (
            [stage(concepts=frozenset({"t2-value"})), stage(concepts=frozenset({"n1-value"}))],
            "late",
        ),
        ([stage(concepts=frozenset({"t1-value"}))], "partial"),  # T alone places nothing
        ([stage(), stage(concepts=frozenset({"n2-n3-value"}))], "late"),
    ],
)
def test_readings_of_one_source(readings: list[StageFact], expected: str) -> None:
    assert classify(readings) == expected


# --- which stages are this diagnosis's --------------------------------------------------


def test_an_early_stage_of_this_diagnosis_places_it() -> None:
    assert early_stage(new_patient(stage())) is not None


def test_a_stage_of_another_cancer_is_not_ours() -> None:
    colon = condition("other-primary-malignancy", id="colon", onset=ago(140))
    assert early_stage(new_patient(stage(focus="colon"), conditions=(colon,))) is None


def test_a_stage_of_an_older_breast_cancer_is_not_ours() -> None:
    old = cancer(id="old", clinical_status="resolved", onset=ago(11 * 365))
    facts = new_patient(stage(focus="old", when=ago(11 * 365)), conditions=(old,))
    assert early_stage(facts) is None


def test_an_unfocused_stage_counts_only_when_nothing_else_could_own_it() -> None:
    report = words("T1b N0", kind="DiagnosticReport", id="rep", t="T1b", n="N0", focus=None)
    assert early_stage(new_patient(report)) is not None
    colon = condition("other-primary-malignancy", id="colon", onset=ago(140))
    assert early_stage(new_patient(report, conditions=(colon,))) is None
    assert early_stage(new_patient(replace(report, when=ago(400)))) is None  # older than dx


def test_clinical_and_pathological_stages_must_both_be_early() -> None:
    upstaged = stage(id="p", basis="pathological", concepts=frozenset({"stage-group-late-value"}))
    assert early_stage(new_patient(stage(), upstaged)) is None
    assert early_stage(new_patient(stage(), replace(upstaged, concepts=stage().concepts)))


def test_a_later_late_stage_silences_an_earlier_early_one() -> None:
    updated = stage(id="later", when=ago(2), concepts=frozenset({"stage-group-late-value"}))
    assert early_stage(new_patient(stage(), updated)) is None


def test_no_stage_is_no_early_stage() -> None:
    assert early_stage(new_patient()) is None


def test_a_stage_in_doubt_places_nothing() -> None:
    """Words beside the stage that put it in doubt ("r/o inflammatory", "FNA pending") or name
    another disease (phyllodes, lymphoma) are read as a reading of their own that places
    nothing (fhir/stages.py): the early stage beside them does not warn."""
    doubt = words("stage in doubt", group="doubt")
    assert early_stage(new_patient(words("stage IA", group="IA"), doubt)) is None


def test_cancers_of_both_breasts_need_a_stage_each() -> None:
    """Synchronous cancers of both breasts: an early stage of the left one says nothing of an
    unstaged right one (which may be the larger cancer)."""
    icd = "http://hl7.org/fhir/sid/icd-10-cm"
    left = replace(NEW, codes=frozenset({(icd, "C50.412")}))
    right = cancer(id="right", clinical_status="active", onset=ago(5), label="Right breast IDC")
    right = replace(right, codes=frozenset({(icd, "C50.911")}))
    staged_left = stage(focus="new")
    facts = PatientFacts(conditions=(left, right), stages=(staged_left,))
    assert early_stage(facts) is None
    both = (staged_left, stage(id="r", focus="right"))
    assert early_stage(PatientFacts(conditions=(left, right), stages=both)) is not None


def test_an_earlier_invasive_breast_cancer_silences() -> None:
    """A new breast cancer after an earlier invasive one may be its recurrence ("rT1c", "2nd
    event"): restaged, not Variant 2, whatever stage it is given."""
    history = condition("personal-history-breast-cancer", id="hx", onset=ago(11 * 365))
    assert early_stage(new_patient(stage(), conditions=(history,))) is None


def test_an_unfocused_stage_from_before_the_diagnosis_is_not_ours() -> None:
    """A stage naming no condition, recorded days before this diagnosis (a lung wedge
    resection's "pT1a pN0" 19 days earlier), may be another cancer's."""
    report = words("T1b N0", kind="DiagnosticReport", id="rep", t="T1b", n="N0", focus=None)
    assert early_stage(new_patient(replace(report, when=ago(39)))) is None


# --- the verdict ----------------------------------------------------------------------


def test_a_new_stage_ia_cancer_staged_with_pet_ct_warns(knowledge: Knowledge) -> None:
    assert verdict(new_patient(stage()), knowledge, STAGING) == ("warn", "variant-2")
    assert verdict(new_patient(stage()), knowledge) == ("warn", "variant-2")  # no reason


@pytest.mark.parametrize(
    "reason",
    ["initial staging", "staging workup", "staging - new dx", "new breast ca - staging"],
)
def test_plain_staging_reasons_are_the_scenario(knowledge: Knowledge, reason: str) -> None:
    order = replace(PET_CT, reasons=(ReasonFact(frozenset(), reason),))
    assert verdict(new_patient(stage()), knowledge, order)[0] == "warn"


@pytest.mark.parametrize(
    "reason",
    ["staging r/o mets", "restaging", "r/o mets - liver lesion", "characterize RLL nodule"],
)
def test_a_suspected_metastasis_reason_is_silent(knowledge: Knowledge, reason: str) -> None:
    order = replace(PET_CT, reasons=(ReasonFact(frozenset(), reason),))
    assert verdict(new_patient(stage()), knowledge, order)[0] == "silent"


def test_restaging_in_the_order_text_is_silent(knowledge: Knowledge) -> None:
    order = replace(PET_CT, text="PET/CT RESTAGING")
    assert verdict(new_patient(stage()), knowledge, order)[0] == "silent"


def test_an_urgent_order_is_silent(knowledge: Knowledge) -> None:
    assert (
        verdict(new_patient(stage()), knowledge, replace(STAGING, priority="stat"))[0] == "silent"
    )


def test_an_early_stage_with_a_raised_alp_is_silent(knowledge: Knowledge) -> None:
    alp = ObservationFact(
        "alp",
        frozenset({"alkaline-phosphatase"}),
        "ALP",
        status="final",
        effective=ago(5),
        value=240.0,
        reference_high=120.0,
    )
    facts = replace(new_patient(stage()), observations=(alp,))
    assert verdict(facts, knowledge, STAGING)[0] == "silent"


def test_another_active_cancer_is_silent(knowledge: Knowledge) -> None:
    cll = condition("other-primary-malignancy", id="cll", onset=ago(900))
    assert verdict(new_patient(stage(), conditions=(cll,)), knowledge, STAGING)[0] == "silent"


def test_dcis_only_is_silent(knowledge: Knowledge) -> None:
    dcis = condition("dcis", id="dcis", onset=ago(20))
    facts = PatientFacts(conditions=(dcis,), stages=(stage(focus="dcis"),))
    assert verdict(facts, knowledge, STAGING)[0] == "silent"


def test_a_breast_imaging_order_gets_no_card(knowledge: Knowledge) -> None:
    mri = OrderFact("ServiceRequest/mri", "ServiceRequest", frozenset({"breast-mri"}), "MRI")
    assert verdict(new_patient(stage()), knowledge, mri)[0] == "silent"


def test_a_survivor_with_an_early_original_stage_keeps_variant_10(knowledge: Knowledge) -> None:
    facts = PatientFacts(
        conditions=(cancer(id="old"),),
        procedures=(LUMPECTOMY,),
        stages=(stage(focus="old", when=ago(5 * 365)),),
    )
    assert verdict(facts, knowledge) == ("warn", "variant-10")


def test_an_unfocused_stage_of_the_other_breast_is_not_ours() -> None:
    left = replace(NEW, codes=frozenset({("http://hl7.org/fhir/sid/icd-10-cm", "C50.412")}))
    report = words("T1b N0", kind="DiagnosticReport", id="rep", t="T1b", n="N0", focus=None)
    facts = PatientFacts(conditions=(left,), stages=(replace(report, side="right"),))
    assert early_stage(facts) is None
    assert early_stage(replace(facts, stages=(replace(report, side="left"),))) is not None
    assert early_stage(replace(facts, stages=(report,))) is not None  # side not given


def test_the_order_notes_are_read_with_staging_phrases_taken_out(knowledge: Knowledge) -> None:
    plain = replace(STAGING, words=("Baseline staging scans",))
    assert verdict(new_patient(stage()), knowledge, plain)[0] == "warn"
    suspicious = replace(STAGING, words=("staging; r/o mets, new back pain",))
    assert verdict(new_patient(stage()), knowledge, suspicious)[0] == "silent"
