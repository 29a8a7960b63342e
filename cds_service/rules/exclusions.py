"""What takes a survivor out of routine surveillance besides symptoms: metastatic disease,
recurrence, active treatment, another cancer, palliative care."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, timedelta

from ..facts import ConditionFact, ObservationFact, PatientFacts, ProcedureFact
from .concepts import (
    BREAST_CANCER,
    CHEMOTHERAPY,
    DISEASE_STATUS,
    DISTANT_METASTASIS,
    FULVESTRANT,
    HER2_THERAPY,
    HISTORY_OTHER,
    M1,
    M_CATEGORY,
    METASTATIC,
    N1,
    N_LATE,
    OTHER_CANCER,
    PALLIATIVE,
    PROGRESSION,
    RADIOTHERAPY,
    RECURRENCE,
    REGIONAL_NODES,
    STAGE_GROUP,
    STAGE_IV,
    SYSTEMIC_THERAPY,
)
from .diagnosis import POST_SURGERY_STAGING_DAYS, diagnosis_date
from .findings import Evidence, Exclusion, Windows
from .records import (
    ACTIVE_MEDICATION,
    HISTORICAL,
    ONGOING,
    VOID_RESULT,
    condition_date,
    counts,
    evidence_of,
    within,
)

OTHER_CANCER_YEARS = 5


def metastatic_exclusions(facts: PatientFacts) -> list[Exclusion]:
    """Known distant disease: secondary neoplasm codes, stage IV, cM1, progression status."""
    found = []
    for c in facts.conditions:
        if not counts(c):
            continue
        if c.concepts & {METASTATIC, DISTANT_METASTASIS}:
            found.append(Exclusion("metastatic-disease", evidence_of(c, METASTATIC)))
        elif c.stage_concepts & {STAGE_IV, M1}:
            found.append(Exclusion("stage-iv", evidence_of(c, STAGE_IV)))
    for o in facts.observations:
        if o.status in VOID_RESULT:
            continue
        values = o.value_concepts
        if STAGE_GROUP in o.concepts and STAGE_IV in values:
            found.append(Exclusion("stage-iv", evidence_of(o, STAGE_IV)))
        elif M_CATEGORY in o.concepts and M1 in values:
            found.append(Exclusion("stage-iv", evidence_of(o, M1)))
        elif DISEASE_STATUS in o.concepts and values & {PROGRESSION, DISTANT_METASTASIS}:
            found.append(Exclusion("disease-progression", evidence_of(o, PROGRESSION)))
        elif values & {METASTATIC, DISTANT_METASTASIS}:
            found.append(Exclusion("metastatic-disease", evidence_of(o, METASTATIC)))
    for p in facts.procedures:  # a report's conclusion, a procedure on a metastasis
        if p.status not in VOID_RESULT and p.concepts & {METASTATIC, DISTANT_METASTASIS}:
            found.append(Exclusion("metastatic-disease", evidence_of(p, METASTATIC)))
    for m in facts.medications:  # a drug given for bone metastases (denosumab 120 mg, Xgeva)
        if METASTATIC in m.concepts and m.status not in VOID_RESULT:
            found.append(Exclusion("metastatic-disease", evidence_of(m, METASTATIC)))
    return found


def recurrence_exclusions(
    facts: PatientFacts, cancers: Sequence[ConditionFact], today: date, windows: Windows
) -> list[Exclusion]:
    """Recurrence: coded, or a status on the cancer, or regional nodal disease (C77.0/.1/.3)
    that appears in the last year and well after the diagnosis (a regional recurrence; the
    same codes at diagnosis are staging)."""
    found = [
        Exclusion("recurrence", evidence_of(c, RECURRENCE))
        for c in cancers
        if RECURRENCE not in c.concepts and c.clinical_status in {"recurrence", "relapse"}
    ]
    # Recurrence named on any entry (a local code "Recurrent breast cancer, chest wall"), and
    # in a result or report of the last year ("suspected recurrence").
    found += [
        Exclusion("recurrence", evidence_of(c, RECURRENCE))
        for c in facts.conditions
        if RECURRENCE in c.concepts and counts(c)
    ]
    records: list[ObservationFact | ProcedureFact] = [*facts.observations, *facts.procedures]
    for record in records:
        when = record.effective if isinstance(record, ObservationFact) else record.performed
        concepts = record.concepts | (
            record.value_concepts if isinstance(record, ObservationFact) else frozenset()
        )
        if (
            RECURRENCE in concepts
            and record.status not in VOID_RESULT
            and (when is None or within(when, today, windows.new_diagnosis))
        ):
            found.append(Exclusion("recurrence", evidence_of(record, RECURRENCE)))
    diagnosed = diagnosis_date(cancers)
    for c in facts.conditions:
        when = condition_date(c)
        if REGIONAL_NODES not in c.concepts or not counts(c):
            continue
        if when is None or (
            within(when, today, windows.new_diagnosis)
            and (diagnosed is None or when > diagnosed + timedelta(days=POST_SURGERY_STAGING_DAYS))
        ):
            found.append(Exclusion("regional-recurrence", evidence_of(c, REGIONAL_NODES)))
    # A node-positive stage reading (N1-N3, coded or written) recorded in the last year and
    # well after the diagnosis is a regional recurrence too ("rpN1a"), not the original stage.
    for stage in facts.stages:
        positive = stage.concepts & {N1, N_LATE} or (stage.n or "")[1:2] in ("1", "2", "3")
        if (
            positive
            and stage.when is not None
            and diagnosed is not None
            and within(stage.when, today, windows.new_diagnosis)
            and stage.when > diagnosed + timedelta(days=POST_SURGERY_STAGING_DAYS)
        ):
            shown = Evidence(
                stage.kind, stage.id, stage.label, stage.when, REGIONAL_NODES, stage.how
            )
            found.append(Exclusion("regional-recurrence", shown))
    return found


def treatment_exclusions(facts: PatientFacts, today: date, windows: Windows) -> list[Exclusion]:
    """Active systemic or radiation treatment; adjuvant endocrine therapy is NOT one of these.

    Any antineoplastic other than endocrine therapy counts when active or ended (or last
    given) within the active-treatment window. Two classes say more and are named: a CDK4/6
    inhibitor (advanced or high-risk disease) and HER2-directed therapy begun more than a year
    ago (adjuvant trastuzumab lasts a year: longer means treatment of advanced disease)."""
    found = []
    for m in facts.medications:
        if m.status in VOID_RESULT:
            continue
        systemic = m.concepts & SYSTEMIC_THERAPY
        recent = m.status in ACTIVE_MEDICATION or within(
            m.ended or m.authored, today, windows.active_treatment
        )
        if systemic and recent:
            concept = sorted(systemic)[0]
            code = "active-chemotherapy" if concept == CHEMOTHERAPY else f"active-{concept}"
            if concept == HER2_THERAPY and m.status in ACTIVE_MEDICATION and m.authored:
                if m.authored < today - timedelta(days=365):
                    code = "her2-therapy-beyond-one-year"
            found.append(Exclusion(code, evidence_of(m, concept)))
        elif FULVESTRANT in m.concepts and m.status in ACTIVE_MEDICATION:
            found.append(Exclusion("fulvestrant", evidence_of(m, FULVESTRANT)))
    for p in facts.procedures:
        treatment = p.concepts & {CHEMOTHERAPY, RADIOTHERAPY}
        if (
            treatment
            and p.status not in VOID_RESULT
            and (
                p.status in {"in-progress", "preparation"}
                or within(p.performed, today, windows.active_treatment)
            )
        ):
            concept = sorted(treatment)[0]
            code = "active-chemotherapy" if concept == CHEMOTHERAPY else "active-treatment"
            found.append(Exclusion(code, evidence_of(p, concept)))
    for c in facts.conditions:
        treatment = c.concepts & (SYSTEMIC_THERAPY | {RADIOTHERAPY})
        if treatment and counts(c):
            when = condition_date(c)
            # Undated and still active ("Encounter for chemotherapy" with no date): current.
            undated_active = when is None and c.clinical_status in (None, *ONGOING)
            if undated_active or within(when, today, windows.active_treatment):
                found.append(Exclusion("active-treatment", evidence_of(c, sorted(treatment)[0])))
    return found


def other_cancer_exclusions(facts: PatientFacts, today: date) -> list[Exclusion]:
    """Another primary cancer that is active or recent may justify the imaging on its own.

    A personal history of another cancer (Z85.x, V10.x, "history of colon cancer") is history,
    whatever its clinical status: it counts only when its entry is dated within five years (or
    has no date at all), when its own follow-up may still use CT. A non-melanoma skin cancer
    history never counts (as C44 does not)."""
    found = []
    for c in facts.conditions:
        if HISTORY_OTHER in c.concepts and OTHER_CANCER not in c.concepts and counts(c):
            # Dated by when it ended or began; the recorded date only when neither is known
            # (a 2008 thyroid cancer reconciled onto the problem list in 2023 is from 2008).
            when = c.abatement or c.onset or c.recorded
            if when is None or within(when, today, 365 * OTHER_CANCER_YEARS):
                found.append(Exclusion("other-cancer-history", evidence_of(c, HISTORY_OTHER)))
            continue
        if OTHER_CANCER not in c.concepts or BREAST_CANCER in c.concepts or not counts(c):
            continue
        when = c.abatement or condition_date(c)
        ongoing = c.clinical_status in ONGOING or c.clinical_status is None
        recent = when is None or within(when, today, 365 * OTHER_CANCER_YEARS)
        # Ongoing at any date, or ended within five years: its own follow-up may use CT.
        if ongoing or recent:
            found.append(Exclusion("other-cancer", evidence_of(c, OTHER_CANCER)))
    return found


def palliative_exclusions(facts: PatientFacts) -> list[Exclusion]:
    """Palliative care, named on a current problem-list entry or a procedure."""
    return [
        Exclusion("palliative-care", evidence_of(c, PALLIATIVE))
        for c in facts.conditions
        if PALLIATIVE in c.concepts and counts(c) and c.clinical_status not in HISTORICAL
    ] + [
        Exclusion("palliative-care", evidence_of(p, PALLIATIVE))
        for p in facts.procedures
        if PALLIATIVE in p.concepts and p.status not in VOID_RESULT
    ]
