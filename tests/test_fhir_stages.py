"""Reading a cancer's stage from FHIR (fhir/stages.py): Condition.stage coded and in words,
mCODE stage-group and T/N/M Observations with their focus or membership, compact and spaced
TNM and "stage IIA" in a Condition's title and notes, and stage words in a report."""

from __future__ import annotations

from typing import Any

import pytest

from cds_service.facts import StageFact
from cds_service.fhir import build_facts
from cds_service.mappings import Knowledge, load_dir
from cds_service.rules import REQUIRED_CONCEPTS, WARNING_ENABLERS

from .conftest import MAPPINGS

SCT = "http://snomed.info/sct"
LOINC = "http://loinc.org"


@pytest.fixture(scope="module")
def knowledge() -> Knowledge:
    return load_dir(MAPPINGS, REQUIRED_CONCEPTS, WARNING_ENABLERS)


def cc(system: str, code: str, display: str = "", text: str | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"coding": [{"system": system, "code": code, "display": display}]}
    return out | ({"text": text} if text else {})


def cancer(**extra: Any) -> dict[str, Any]:
    return {
        "resourceType": "Condition",
        "id": "bc",
        "code": cc("http://hl7.org/fhir/sid/icd-10-cm", "C50.412", "Malignant neoplasm"),
        "onsetDateTime": "2026-11-04",
    } | extra


def observation(rid: str, code: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "id": rid,
        "status": "final",
        "code": code,
        "effectiveDateTime": "2026-11-12",
    } | extra


def stages(knowledge: Knowledge, *resources: dict[str, Any]) -> tuple[StageFact, ...]:
    return build_facts({"records": list(resources)}, knowledge).stages


def test_condition_stage_summary_coded_with_its_type(knowledge: Knowledge) -> None:
    entry = {
        "summary": cc(SCT, "1222766008", "American Joint Committee on Cancer stage IIA"),
        "type": cc(SCT, "260998006", "Clinical staging (qualifier value)"),
    }
    [found] = stages(knowledge, cancer(stage=[entry]))
    assert found.concepts == {"stage-group-early-value"} and found.basis == "clinical"
    assert found.focus == "bc" and found.label == "AJCC stage IIA"


def test_condition_stage_summary_in_words(knowledge: Knowledge) -> None:
    entry = {"summary": {"text": "Stage IA (cT1c, cN0, cM0) - Signed"}}
    found = stages(knowledge, cancer(stage=[entry]))
    assert {(s.group, s.t, s.n, s.m) for s in found} == {
        ("IA", None, None, None),
        (None, "T1c", "N0", "M0"),
    }
    assert {s.focus for s in found} == {"bc"}


def test_a_code_display_alone_is_not_read_as_words(knowledge: Knowledge) -> None:
    """A P-marked value (AJCC code system '1A') is not indexed; its display is not read."""
    entry = {"summary": cc("http://cancerstaging.org", "1A", "IA")}
    assert stages(knowledge, cancer(stage=[entry])) == ()


@pytest.mark.parametrize(
    ("title", "tnm"),
    [
        ("IDC L breast 1.6 cm cT1cN0M0 ER+/PR+/HER2-", ("T1c", "N0", "M0")),
        ("R breast ca T2 N1 M0", ("T2", "N1", "M0")),
        ("Carcinoma of right breast, cT1b N0 Mx", ("T1b", "N0", "MX")),
        ("L breast IDC cT1c cN1 (biopsy-proven axillary node) cM0", ("T1c", "N1", None)),
    ],
)
def test_compact_tnm_in_a_condition_title(
    knowledge: Knowledge, title: str, tnm: tuple[str, ...]
) -> None:
    code = cc("http://hl7.org/fhir/sid/icd-10-cm", "C50.912", "Malignant neoplasm", title)
    [found] = stages(knowledge, cancer(code=code))
    assert (found.t, found.n, found.m) == tnm and found.focus == "bc"


def test_stage_words_in_a_condition_note(knowledge: Knowledge) -> None:
    note = [{"text": "Clinical stage IIA (cT2 cN0 M0) per tumor board 11/12."}]
    found = stages(knowledge, cancer(note=note))
    assert {(s.basis, s.group) for s in found if s.group} == {("clinical", "IIA")}


def test_vague_words_are_no_stage(knowledge: Knowledge) -> None:
    note = [{"text": "Small early-stage breast cancer, likely node negative."}]
    assert stages(knowledge, cancer(note=note)) == ()


def test_mcode_group_and_tnm_observations_with_focus_and_members(knowledge: Knowledge) -> None:
    focus = [{"reference": "Condition/bc"}]
    t = observation("t", cc(LOINC, "21905-5"), valueCodeableConcept=cc(SCT, "1228899006", "cT1c"))
    n = observation("n", cc(LOINC, "21906-3"), valueCodeableConcept=cc(SCT, "1229967007"))
    group = observation(
        "g",
        cc(LOINC, "21908-9", "Stage group.clinical Cancer"),
        valueCodeableConcept=cc(SCT, "1222724007"),
        focus=focus,
        hasMember=[{"reference": "Observation/t"}, {"reference": "Observation/n"}],
    )
    found = {s.id: s for s in stages(knowledge, cancer(), t, n, group)}
    assert found["g"].concepts == {"stage-group-early-value"}
    assert found["t"].concepts == {"t1-value"} and found["n"].concepts == {"n0-value"}
    assert {s.focus for s in found.values()} == {"bc"}  # members take the group's focus
    assert found["g"].basis == "clinical"


def test_a_pathological_stage_observation(knowledge: Knowledge) -> None:
    obs = observation(
        "p",
        cc(LOINC, "21902-2", "Stage group.pathology Cancer"),
        valueCodeableConcept=cc(SCT, "1222724007"),
        focus=[{"reference": "Condition/bc"}],
    )
    [found] = stages(knowledge, obs)
    assert found.basis == "pathological" and found.focus == "bc"


def test_an_observation_assessed_by_the_condition_stage_takes_its_focus(
    knowledge: Knowledge,
) -> None:
    obs = observation("a", cc(LOINC, "21908-9"), valueCodeableConcept=cc(SCT, "1222766008"))
    entry = {"assessment": [{"reference": "Observation/a"}]}
    [found] = stages(knowledge, cancer(stage=[entry]), obs)
    assert found.focus == "bc"


def test_stage_words_in_a_pathology_report(knowledge: Knowledge) -> None:
    report = {
        "resourceType": "DiagnosticReport",
        "id": "path",
        "status": "final",
        "code": cc(LOINC, "22637-3", "Pathology report final diagnosis Narrative"),
        "effectiveDateTime": "2026-11-18",
        "conclusion": "Lumpectomy: IDC 0.8 cm; sentinel nodes 0/3. pT1b pN0(sn) cM0, stage IA.",
    }
    found = stages(knowledge, report)
    assert {(s.basis, s.t, s.n, s.m) for s in found if s.t} == {("pathological", "T1b", "N0", "M0")}
    assert all(s.focus is None and s.kind == "DiagnosticReport" for s in found)


def test_a_report_names_its_side(knowledge: Knowledge) -> None:
    report = {
        "resourceType": "DiagnosticReport",
        "id": "path",
        "code": {"text": "Surgical pathology - right breast lumpectomy"},
        "conclusion": "IDC 1.4 cm. pT1c pN0(sn).",
    }
    [found] = stages(knowledge, report)
    assert found.side == "right"


def test_a_stage_range_is_read_as_a_range(knowledge: Knowledge) -> None:
    note = [{"text": "Early stage I-II disease, staging pending."}]
    found = stages(knowledge, cancer(note=note))
    # neither early nor late, and "pending" puts it in doubt: the rule places nothing on it
    assert {s.group for s in found} == {"I-II", "doubt"}


def test_a_report_about_another_organ_gives_no_stage(knowledge: Knowledge) -> None:
    report = {
        "resourceType": "DiagnosticReport",
        "id": "ct",
        "code": {"text": "CT chest"},
        "conclusion": "1.8 cm RUL mass, suspicious for primary lung cancer, stage IA.",
    }
    assert stages(knowledge, report) == ()


def test_an_entered_in_error_stage_observation_is_not_read(knowledge: Knowledge) -> None:
    value = cc(
        "http://snomed.info/sct", "1222724007", "American Joint Committee on Cancer stage IA"
    )
    obs = observation(
        "void",
        cc("http://loinc.org", "21908-9", "Stage group.clinical Cancer"),
        status="entered-in-error",
        valueCodeableConcept=value,
    )
    assert stages(knowledge, obs) == ()
    assert stages(knowledge, obs | {"status": "final"}) != ()


@pytest.mark.parametrize(
    "note",
    [
        "Clinical stage IIA (cT2 cN0) - 2 abnormal level I nodes, FNA pending",
        "cT1c cN0 M0; peau d'orange >1/3 of breast, r/o inflammatory",
        "Malignant phyllodes tumor, T2 N0",
    ],
)
def test_words_beside_a_stage_that_put_it_in_doubt(knowledge: Knowledge, note: str) -> None:
    found = stages(knowledge, cancer(note=[{"text": note}]))
    assert "doubt" in {s.group for s in found}


def test_a_breast_report_naming_another_disease_places_nothing(knowledge: Knowledge) -> None:
    report = {
        "resourceType": "DiagnosticReport",
        "id": "bx",
        "status": "final",
        "code": {"text": "Surgical pathology"},
        "effectiveDateTime": "2026-11-10",
        "conclusion": "Left breast core biopsy: diffuse large B-cell lymphoma, no carcinoma.",
    }
    assert [s.group for s in stages(knowledge, report)] == ["doubt"]
    endometrial = report | {
        "conclusion": "Endometrioid adenocarcinoma, myometrium. Sentinel nodes 0/2. pT1a pN0. "
        "Stage IA."
    }
    assert stages(knowledge, endometrial) == ()  # another organ's report: no stage at all
