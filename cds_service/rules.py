"""ACR Appropriateness Criteria "Imaging of Invasive Breast Cancer", Variants 10 and 11.

Pure functions.

Variant 10: surveillance of a survivor of invasive breast cancer, regardless of stage at
presentation, evaluation for distant metastatic disease: FDG-PET/CT, CT chest/abdomen/pelvis,
whole-body bone scan and US axilla are *Usually Not Appropriate*. The variant has no
"asymptomatic" in its text: it is implied by Variant 11 (suspected distant recurrence from
symptoms, examination or a laboratory value), which these rules treat as the exclusion. So do
known metastatic disease, recurrence, initial staging of a recent diagnosis, active systemic
treatment and another active cancer: none of those is routine surveillance.

The guiding asymmetry: a false warning on a symptomatic patient is worse than no card. Any
doubt about the scenario (a symptom of unknown date, an order reason we cannot read, a
provisional diagnosis) silences the warning. Nothing here reads the clock: ``today`` is passed in.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import date, timedelta
from typing import Literal

from .concepts import LABS, SYMPTOMS
from .facts import (
    ConditionFact,
    MedicationFact,
    ObservationFact,
    OrderFact,
    PatientFacts,
    ProcedureFact,
)
from .mappings import Knowledge

# Concept ids the rules read (the mapping files must define them; checked at start-up).
BREAST_CANCER = "invasive-breast-cancer"
HISTORY = "personal-history-breast-cancer"
REMISSION = "breast-cancer-in-remission"
RECURRENCE = "breast-cancer-recurrence"
DCIS = "dcis"
FAMILY_HISTORY = "family-history-breast-cancer"
METASTATIC = "metastatic-disease"
DISTANT_METASTASIS = "distant-metastasis-finding"
STAGE_GROUP = "stage-group-observation"
M_CATEGORY = "m-category-observation"
STAGE_IV = "stage-iv-value"
M1 = "m1-value"
DISEASE_STATUS = "disease-status-observation"
PROGRESSION = "disease-progression-value"
OTHER_CANCER = "other-primary-malignancy"
CHEMOTHERAPY = "chemotherapy"
RADIOTHERAPY = "radiotherapy-encounter"
FULVESTRANT = "fulvestrant"
ENDOCRINE = "endocrine-therapy"
COMPLETED_TREATMENT = "completed-treatment-history"
SURGERY = "breast-surgery"
SURVEILLANCE_ENCOUNTER = "surveillance-encounter"
TUMOR_MARKER = "tumor-marker"
US_EXTREMITY_FOCAL = "us-extremity-focal"
US_AXILLA = "us-axilla"
CONTRADICTED = "contradictory-order"  # not a concept: an order whose codes or text disagree
MAMMOGRAPHY = "mammography"
MASTECTOMY = "mastectomy"
REGIONAL_NODES = "regional-nodal-disease"
HISTORY_OTHER = "history-of-other-cancer"
IONIZED_CALCIUM = "calcium-ionized"
PALLIATIVE = "palliative-care"  # words only (mappings/words.json)
HER2_THERAPY = "her2-directed-therapy"
CDK46 = "cdk46-inhibitor"
# Systemic anticancer therapy other than endocrine therapy, by class (mappings/treatment.json):
# a class whose concept the mappings do not define is simply never seen.
SYSTEMIC_THERAPY = frozenset(
    {
        CHEMOTHERAPY,
        HER2_THERAPY,
        CDK46,
        "parp-inhibitor",
        "immunotherapy",
        "other-targeted-antineoplastic",
    }
)
POST_SURGERY_STAGING_DAYS = 90
MAMMOGRAM_INTERVAL_DAYS = 365

_SYMPTOM_SET = frozenset(SYMPTOMS)
STUDIES = (
    "pet-ct",
    "pet-limited",
    "naf-pet",
    "ct-chest",
    "ct-abdomen-pelvis",
    "ct-chest-abdomen-pelvis",
    "bone-scan-whole-body",
    "bone-spect",
    "bone-scan-limited",
    "us-axilla",
    "us-extremity-focal",
    "breast-us",
    "mammography",
    "breast-mri",
    "chest-xray",
    "brain-mri",
    "head-ct",
    "abdominal-us",
    "targeted-bone-imaging",
)
REQUIRED_CONCEPTS = frozenset(
    {
        BREAST_CANCER,
        HISTORY,
        REMISSION,
        RECURRENCE,
        DCIS,
        FAMILY_HISTORY,
        METASTATIC,
        DISTANT_METASTASIS,
        STAGE_GROUP,
        M_CATEGORY,
        STAGE_IV,
        M1,
        DISEASE_STATUS,
        PROGRESSION,
        OTHER_CANCER,
        CHEMOTHERAPY,
        RADIOTHERAPY,
        FULVESTRANT,
        ENDOCRINE,
        COMPLETED_TREATMENT,
        SURGERY,
        SURVEILLANCE_ENCOUNTER,
        TUMOR_MARKER,
        MASTECTOMY,
        REGIONAL_NODES,
        HISTORY_OTHER,
        HER2_THERAPY,
        CDK46,
        "immunotherapy",
        "other-targeted-antineoplastic",
        *SYMPTOMS,
        *LABS,
        *STUDIES,
    }
)

# Concepts whose presence can lead to a warning (the survivor's evidence, the surgery and the
# completed treatment that end initial work-up, the routine reasons): words may never name
# them (mappings/words.json; the loader refuses).
WARNING_ENABLERS = frozenset(
    {
        BREAST_CANCER,
        HISTORY,
        REMISSION,
        SURGERY,
        MASTECTOMY,
        COMPLETED_TREATMENT,
        SURVEILLANCE_ENCOUNTER,
        ENDOCRINE,
        "receptor-status-codes",
        *STUDIES,
    }
)

NOT_COUNTED = frozenset({"refuted", "entered-in-error"})
URGENT = frozenset({"urgent", "asap", "stat"})  # not how routine surveillance is ordered
UNCONFIRMED = frozenset({"provisional", "differential", "unconfirmed"})
ONGOING = frozenset({"active", "recurrence", "relapse"})
HISTORICAL = frozenset({"inactive", "remission", "resolved"})
ABNORMAL_HIGH = frozenset({"H", "HH", "HU", "A", "AA", ">"})
VOID_RESULT = frozenset({"cancelled", "entered-in-error"})
ACTIVE_MEDICATION = frozenset({"active", "on-hold", "draft"})
OTHER_CANCER_YEARS = 5


@dataclass(frozen=True)
class Windows:
    """The configurable look-back windows, in days."""

    symptom_new: int = 90
    symptom_persistent: int = 365
    lab: int = 90
    new_diagnosis: int = 365
    active_treatment: int = 183


@dataclass(frozen=True)
class Evidence:
    """One record that decided something, named for the clinician (never logged)."""

    kind: str  # FHIR resource type
    id: str
    label: str
    when: date | None = None
    concept: str = ""
    how: str = ""  # the code ("code system|code") or our phrase ("words 'METASTA'") that named it


@dataclass(frozen=True)
class Exclusion:
    """Why the patient is not in routine surveillance; ``code`` is safe to log and audit."""

    code: str  # e.g. "metastatic-disease", "symptom:bone-pain", "abnormal-lab:calcium"
    evidence: Evidence | None = None


@dataclass(frozen=True)
class Assessment:
    """The patient's side of the verdict, shared by every order of one call."""

    survivor: bool
    evidence: tuple[Evidence, ...]
    exclusions: tuple[Exclusion, ...]  # any of these: not Variant 10
    symptoms: tuple[Exclusion, ...]  # the Variant 11 part of exclusions (symptoms and labs)
    long_standing: tuple[Evidence, ...]  # chronic symptom entries that do not silence alone
    not_applicable: str = ""  # why there is no scenario at all (no invasive breast cancer, ...)


Verdict = Literal["warn", "info-targeted", "info-tumor-marker", "silent", "snoozed"]


@dataclass(frozen=True)
class Finding:
    order: OrderFact
    study: str | None
    verdict: Verdict
    reason: str  # safe to log: which rule decided
    evidence: tuple[Evidence, ...] = ()
    long_standing: tuple[Evidence, ...] = ()
    symptoms: tuple[Exclusion, ...] = ()
    targeted: tuple[str, ...] = ()  # for info-targeted: the studies that fit the symptoms
    surveillance_reason: bool = False
    offer_mammogram: bool = False  # no mammogram in the last year: suggest one instead
    # The rules' verdict when the site's or the client's policy (policy.apply_policy) changed
    # it: a snoozed or switched-off warning is still a Usually Not Appropriate order.
    before_policy: Verdict | None = None
    # For a verdict that is not a warning: the record (or the order's own words) that decided
    # it, with the code or our phrase that named the concept (audit, evaluate --explain).
    cause: Evidence | None = None


# --------------------------------------------------------------------------------------------
# Small helpers


def _within(when: date | None, today: date, days: int) -> bool:
    """On or after ``today - days``. A date after today (a partial date such as "2026" read as
    its last day, or a clock skew) counts as today: the conservative reading."""
    return when is not None and min(when, today) >= today - timedelta(days=days)


def _condition_date(condition: ConditionFact) -> date | None:
    return condition.onset or condition.recorded


def _counts(condition: ConditionFact) -> bool:
    return condition.verification not in NOT_COUNTED


def _ev(
    record: ConditionFact | ObservationFact | ProcedureFact | MedicationFact, concept: str = ""
) -> Evidence:
    how = next((h for c, h in record.how if c == concept), "")
    if isinstance(record, ConditionFact):
        return Evidence("Condition", record.id, record.label, _condition_date(record), concept, how)
    if isinstance(record, ObservationFact):
        return Evidence("Observation", record.id, record.label, record.effective, concept, how)
    if isinstance(record, ProcedureFact):
        return Evidence("Procedure", record.id, record.label, record.performed, concept, how)
    return Evidence("MedicationRequest", record.id, record.label, record.authored, concept, how)


# --------------------------------------------------------------------------------------------
# The patient


def _breast_cancer_conditions(facts: PatientFacts) -> list[ConditionFact]:
    return [c for c in facts.conditions if BREAST_CANCER in c.concepts and _counts(c)]


def _metastatic_exclusions(facts: PatientFacts) -> list[Exclusion]:
    """Known distant disease: secondary neoplasm codes, stage IV, cM1, progression status."""
    found = []
    for c in facts.conditions:
        if not _counts(c):
            continue
        if c.concepts & {METASTATIC, DISTANT_METASTASIS}:
            found.append(Exclusion("metastatic-disease", _ev(c, METASTATIC)))
        elif c.stage_concepts & {STAGE_IV, M1}:
            found.append(Exclusion("stage-iv", _ev(c, STAGE_IV)))
    for o in facts.observations:
        if o.status in VOID_RESULT:
            continue
        values = o.value_concepts
        if STAGE_GROUP in o.concepts and STAGE_IV in values:
            found.append(Exclusion("stage-iv", _ev(o, STAGE_IV)))
        elif M_CATEGORY in o.concepts and M1 in values:
            found.append(Exclusion("stage-iv", _ev(o, M1)))
        elif DISEASE_STATUS in o.concepts and values & {PROGRESSION, DISTANT_METASTASIS}:
            found.append(Exclusion("disease-progression", _ev(o, PROGRESSION)))
        elif values & {METASTATIC, DISTANT_METASTASIS}:
            found.append(Exclusion("metastatic-disease", _ev(o, METASTATIC)))
    for p in facts.procedures:  # a report's conclusion, a procedure on a metastasis
        if p.status not in VOID_RESULT and p.concepts & {METASTATIC, DISTANT_METASTASIS}:
            found.append(Exclusion("metastatic-disease", _ev(p, METASTATIC)))
    for m in facts.medications:  # a drug given for bone metastases (denosumab 120 mg, Xgeva)
        if METASTATIC in m.concepts and m.status not in VOID_RESULT:
            found.append(Exclusion("metastatic-disease", _ev(m, METASTATIC)))
    return found


def _recurrence_exclusions(
    facts: PatientFacts, cancers: Sequence[ConditionFact], today: date, windows: Windows
) -> list[Exclusion]:
    """Recurrence: coded, or a status on the cancer, or regional nodal disease (C77.0/.1/.3)
    that appears in the last year and well after the diagnosis (a regional recurrence; the
    same codes at diagnosis are staging)."""
    found = [
        Exclusion("recurrence", _ev(c, RECURRENCE))
        for c in cancers
        if RECURRENCE not in c.concepts and c.clinical_status in {"recurrence", "relapse"}
    ]
    # Recurrence named on any entry (a local code "Recurrent breast cancer, chest wall"), and
    # in a result or report of the last year ("suspected recurrence").
    found += [
        Exclusion("recurrence", _ev(c, RECURRENCE))
        for c in facts.conditions
        if RECURRENCE in c.concepts and _counts(c)
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
            and (when is None or _within(when, today, windows.new_diagnosis))
        ):
            found.append(Exclusion("recurrence", _ev(record, RECURRENCE)))
    diagnosed = _diagnosis_date(cancers)
    for c in facts.conditions:
        when = _condition_date(c)
        if REGIONAL_NODES not in c.concepts or not _counts(c):
            continue
        if when is None or (
            _within(when, today, windows.new_diagnosis)
            and (diagnosed is None or when > diagnosed + timedelta(days=POST_SURGERY_STAGING_DAYS))
        ):
            found.append(Exclusion("regional-recurrence", _ev(c, REGIONAL_NODES)))
    return found


def _diagnosis_date(cancers: Sequence[ConditionFact]) -> date | None:
    """The most recent diagnosis: the latest onset (a new primary counts), else the earliest
    recorded date (re-recorded problem-list entries do not make a diagnosis new).

    An entry with no onset whose codes differ from those of every entry that has one (a C50.911
    recorded last month beside a C50.412 with a 2021 onset: the other breast) is a diagnosis of
    its own, dated by when it was recorded; one that shares a code with a dated entry is that
    entry recorded again."""
    entry = _diagnosing_entry(cancers)
    if entry is None:
        return None
    return entry.onset or _recorded(entry)


def _diagnosing_entry(cancers: Sequence[ConditionFact]) -> ConditionFact | None:
    """The entry that dates the most recent diagnosis (see ``_diagnosis_date``)."""
    primary = [c for c in cancers if HISTORY not in c.concepts]
    dated_entries = [c for c in primary if c.onset]
    if dated_entries:
        dated = {code for c in dated_entries for code in c.codes}
        candidates = dated_entries + [
            c
            for c in primary
            if not c.onset
            and _recorded(c)
            and not c.codes & dated
            and not _same_breast(c.codes, dated)
        ]
        return max(candidates, key=lambda c: c.onset or _recorded(c) or date.min)
    recorded = [c for c in primary if _recorded(c)]
    return min(recorded, key=lambda c: _recorded(c) or date.max) if recorded else None


_ICD10 = "http://hl7.org/fhir/sid/icd-10-cm"
_ICD9 = "http://hl7.org/fhir/sid/icd-9-cm"


def _side(system: str, code: str) -> str | None:
    """The side an ICD-10-CM C50 code names ("1" right, "2" left, "9" unspecified), if any."""
    norm = code.upper().replace(".", "")
    if system == _ICD10 and norm.startswith("C50") and len(norm) == 6 and norm[3] != "A":
        return norm[5]
    if system == _ICD10 and norm in ("C50A1", "C50A2", "C50A0"):
        return {"C50A1": "1", "C50A2": "2", "C50A0": "9"}[norm]
    return None


def _same_breast(codes: frozenset[tuple[str, str]], dated: set[tuple[str, str]]) -> bool:
    """Does an undated entry name the same breast as a dated one (C50.912 beside C50.412: both
    left)? Then it is that diagnosis recorded again (a visit's encounter diagnosis), not a new
    primary in the other breast. An unspecified side cannot show that: it stays a possible new
    diagnosis (the conservative reading)."""
    sides = {s for system, code in codes if (s := _side(system, code))}
    known = {s for system, code in dated if (s := _side(system, code))}
    return bool(sides & known) and "9" not in sides


def _recorded(condition: ConditionFact) -> date | None:
    """When an entry without onset was diagnosed at the latest: its recorded date, or its
    abatement when that is earlier (an entry migrated last month from an old system, ended in
    2016, was diagnosed before 2016)."""
    if condition.abatement and condition.recorded:
        return min(condition.abatement, condition.recorded)
    return condition.recorded or condition.abatement


def _new_diagnosis_exclusion(
    facts: PatientFacts, cancers: Sequence[ConditionFact], today: date, windows: Windows
) -> Exclusion | None:
    """Initial work-up: a recent diagnosis with no completed definitive surgery yet.

    A breast cancer Condition left 'active' for years after treatment is history, not a new
    diagnosis: only the date decides. With no date at all and no sign of completed treatment
    we cannot tell a new diagnosis from history, so we stay silent.
    """
    history_signals = any(
        HISTORY in c.concepts or REMISSION in c.concepts or c.clinical_status in HISTORICAL
        for c in cancers
    ) or any(COMPLETED_TREATMENT in c.concepts and _counts(c) for c in facts.conditions)
    diagnosed = _diagnosis_date(cancers)
    surgeries = _surgery_dates(facts)
    if diagnosed is None:
        if history_signals or surgeries:
            return None
        return Exclusion("diagnosis-date-unknown", _ev(cancers[0], BREAST_CANCER))
    # Definitive surgery for THIS diagnosis, long enough ago that post-surgical staging is over
    # (a biopsy or surgery days ago, or one years before the diagnosis, does not count).
    settled = today - timedelta(days=POST_SURGERY_STAGING_DAYS)
    surgery_done = any(d is not None and diagnosed <= d <= settled for d in surgeries)
    if _within(diagnosed, today, windows.new_diagnosis) and not surgery_done:
        entry = _diagnosing_entry(cancers) or cancers[0]  # the entry that dates it
        return Exclusion("initial-staging", _ev(entry, BREAST_CANCER))
    return None


def _surgery_dates(facts: PatientFacts) -> list[date | None]:
    """The date (None: unknown) of each completed breast cancer surgery on record: a
    Procedure, or a Condition that records the surgery."""
    return [
        p.performed
        for p in facts.procedures
        if SURGERY in p.concepts and p.status in (None, "completed")
    ] + [_condition_date(c) for c in facts.conditions if SURGERY in c.concepts and _counts(c)]


def _unconfirmed_exclusion(cancers: Sequence[ConditionFact]) -> Exclusion | None:
    if cancers and all(c.verification in UNCONFIRMED for c in cancers):
        return Exclusion("diagnosis-unconfirmed", _ev(cancers[0], BREAST_CANCER))
    return None


def _treatment_exclusions(facts: PatientFacts, today: date, windows: Windows) -> list[Exclusion]:
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
        recent = m.status in ACTIVE_MEDICATION or _within(
            m.ended or m.authored, today, windows.active_treatment
        )
        if systemic and recent:
            concept = sorted(systemic)[0]
            code = "active-chemotherapy" if concept == CHEMOTHERAPY else f"active-{concept}"
            if concept == HER2_THERAPY and m.status in ACTIVE_MEDICATION and m.authored:
                if m.authored < today - timedelta(days=365):
                    code = "her2-therapy-beyond-one-year"
            found.append(Exclusion(code, _ev(m, concept)))
        elif FULVESTRANT in m.concepts and m.status in ACTIVE_MEDICATION:
            found.append(Exclusion("fulvestrant", _ev(m, FULVESTRANT)))
    for p in facts.procedures:
        treatment = p.concepts & {CHEMOTHERAPY, RADIOTHERAPY}
        if (
            treatment
            and p.status not in VOID_RESULT
            and (
                p.status in {"in-progress", "preparation"}
                or _within(p.performed, today, windows.active_treatment)
            )
        ):
            concept = sorted(treatment)[0]
            code = "active-chemotherapy" if concept == CHEMOTHERAPY else "active-treatment"
            found.append(Exclusion(code, _ev(p, concept)))
    for c in facts.conditions:
        treatment = c.concepts & (SYSTEMIC_THERAPY | {RADIOTHERAPY})
        if treatment and _counts(c):
            when = _condition_date(c)
            # Undated and still active ("Encounter for chemotherapy" with no date): current.
            undated_active = when is None and c.clinical_status in (None, *ONGOING)
            if undated_active or _within(when, today, windows.active_treatment):
                found.append(Exclusion("active-treatment", _ev(c, sorted(treatment)[0])))
    return found


def _other_cancer_exclusions(facts: PatientFacts, today: date) -> list[Exclusion]:
    """Another primary cancer that is active or recent may justify the imaging on its own.

    A personal history of another cancer (Z85.x, V10.x, "history of colon cancer") is history,
    whatever its clinical status: it counts only when its entry is dated within five years (or
    has no date at all), when its own follow-up may still use CT. A non-melanoma skin cancer
    history never counts (as C44 does not)."""
    found = []
    for c in facts.conditions:
        if HISTORY_OTHER in c.concepts and OTHER_CANCER not in c.concepts and _counts(c):
            # Dated by when it ended or began; the recorded date only when neither is known
            # (a 2008 thyroid cancer reconciled onto the problem list in 2023 is from 2008).
            when = c.abatement or c.onset or c.recorded
            if when is None or _within(when, today, 365 * OTHER_CANCER_YEARS):
                found.append(Exclusion("other-cancer-history", _ev(c, HISTORY_OTHER)))
            continue
        if OTHER_CANCER not in c.concepts or BREAST_CANCER in c.concepts or not _counts(c):
            continue
        when = c.abatement or _condition_date(c)
        ongoing = c.clinical_status in ONGOING or c.clinical_status is None
        recent = when is None or _within(when, today, 365 * OTHER_CANCER_YEARS)
        # Ongoing at any date, or ended within five years: its own follow-up may use CT.
        if ongoing or recent:
            found.append(Exclusion("other-cancer", _ev(c, OTHER_CANCER)))
    return found


def _symptom_status(
    condition: ConditionFact, today: date, windows: Windows
) -> Literal["current", "long-standing", "past"]:
    """New (recorded within the short window) or persistent (ongoing, onset within a year)."""
    when = _condition_date(condition)
    if condition.clinical_status in HISTORICAL:
        if _within(condition.abatement, today, windows.symptom_new):
            return "current"
        if condition.abatement is None and _within(when, today, windows.symptom_new):
            return "current"
        return "past"
    if when is None:
        return "current"  # an ongoing symptom of unknown date: assume it matters
    if condition.clinical_status in {"recurrence", "relapse"}:
        return "current"  # it came back: new again, whatever its first onset
    # Recorded lately counts only without an onset: a 2009 back pain recorded last month (a
    # migration, a problem list tidied) is the 2009 back pain.
    if _within(when, today, windows.symptom_new) or (
        condition.onset is None and _within(condition.recorded, today, windows.symptom_new)
    ):
        return "current"
    if _within(when, today, windows.symptom_persistent):
        return "current"
    if when > today:
        return "current"
    return "long-standing"


def _lab_abnormal(o: ObservationFact) -> bool:
    if o.interpretation & ABNORMAL_HIGH:
        return True
    return o.value is not None and o.reference_high is not None and o.value > o.reference_high


def _recent_finding(
    concepts: frozenset[str], status: str | None, when: date | None, today: date, days: int
) -> str | None:
    """The symptom or finding a result or report names, if it is not void and is recent
    (or undated: the conservative reading)."""
    hits = concepts & _SYMPTOM_SET
    if not hits or status in VOID_RESULT or (when is not None and not _within(when, today, days)):
        return None
    return sorted(hits)[0]


def _variant_11(
    facts: PatientFacts, today: date, windows: Windows
) -> tuple[list[Exclusion], list[Evidence]]:
    """Symptoms, signs and laboratory values that suggest distant recurrence."""
    current: list[Exclusion] = []
    long_standing: list[Evidence] = []
    symptom_set = frozenset(SYMPTOMS)
    for c in facts.conditions:
        hits = c.concepts & symptom_set
        if not hits or not _counts(c):
            continue
        concept = sorted(hits)[0]
        status = _symptom_status(c, today, windows)
        if status == "current":
            current.append(Exclusion(f"symptom:{concept}", _ev(c, concept)))
        elif status == "long-standing":
            long_standing.append(_ev(c, concept))
    for p in facts.procedures:  # a report's conclusion naming a finding ("new lytic lesion")
        found = _recent_finding(p.concepts, p.status, p.performed, today, windows.symptom_new)
        if found:
            current.append(Exclusion(f"symptom:{found}", _ev(p, found)))
    for m in facts.medications:  # prescribed for a symptom lately ("oxycodone for hip pain")
        found = _recent_finding(m.concepts, m.status, m.authored, today, windows.symptom_new)
        if found:
            current.append(Exclusion(f"symptom:{found}", _ev(m, found)))
    lab_set = frozenset(LABS)
    # A raised ionized calcium beside a normal total calcium of the lab window is most often a
    # handling artefact; without a total calcium it counts.
    total_calcium_normal = any(
        "calcium" in o.concepts
        and o.status not in VOID_RESULT
        and (o.value is not None or o.interpretation)
        and not _lab_abnormal(o)
        and o.effective is not None
        and _within(o.effective, today, windows.lab)
        for o in facts.observations
    )
    for o in facts.observations:
        if o.status in VOID_RESULT:
            continue
        found = _recent_finding(
            o.concepts | o.value_concepts, o.status, o.effective, today, windows.symptom_new
        )
        if found and o.value_bool is not False:
            current.append(Exclusion(f"symptom:{found}", _ev(o, found)))
            continue
        labs = o.concepts & lab_set
        if (
            labs
            and _lab_abnormal(o)
            and (o.effective is None or _within(o.effective, today, windows.lab))
        ):
            if labs == {IONIZED_CALCIUM} and total_calcium_normal:
                continue  # a normal total calcium of the same weeks says more
            concept = sorted(labs)[0]
            current.append(Exclusion(f"abnormal-lab:{concept}", _ev(o, concept)))
    return current, long_standing


def assess_patient(facts: PatientFacts, today: date, windows: Windows = Windows()) -> Assessment:
    """Is this patient a survivor of invasive breast cancer in routine surveillance?"""
    cancers = _breast_cancer_conditions(facts)
    if not cancers:
        counted = [c for c in facts.conditions if _counts(c)]
        if any(DCIS in c.concepts for c in counted):
            reason = "dcis-only"
        elif any(FAMILY_HISTORY in c.concepts for c in counted):
            reason = "family-history-only"
        else:
            reason = "no-invasive-breast-cancer"
        return Assessment(False, (), (), (), (), not_applicable=reason)

    evidence = tuple(
        _ev(c, HISTORY if HISTORY in c.concepts else BREAST_CANCER)
        for c in sorted(cancers, key=lambda c: _condition_date(c) or date.min)
    )
    symptoms, long_standing = _variant_11(facts, today, windows)
    exclusions: list[Exclusion] = []
    exclusions += _metastatic_exclusions(facts)
    exclusions += _recurrence_exclusions(facts, cancers, today, windows)
    unconfirmed = _unconfirmed_exclusion(cancers)
    if unconfirmed:
        exclusions.append(unconfirmed)
    new_dx = _new_diagnosis_exclusion(facts, cancers, today, windows)
    if new_dx:
        exclusions.append(new_dx)
    exclusions += _treatment_exclusions(facts, today, windows)
    exclusions += _other_cancer_exclusions(facts, today)
    exclusions += [
        Exclusion("palliative-care", _ev(c, PALLIATIVE))
        for c in facts.conditions
        if PALLIATIVE in c.concepts and _counts(c) and c.clinical_status not in HISTORICAL
    ]
    exclusions += [
        Exclusion("palliative-care", _ev(p, PALLIATIVE))
        for p in facts.procedures
        if PALLIATIVE in p.concepts and p.status not in VOID_RESULT
    ]
    exclusions += symptoms
    return Assessment(True, evidence, tuple(exclusions), tuple(symptoms), tuple(long_standing))


# --------------------------------------------------------------------------------------------
# The order


def classify_order(order: OrderFact, knowledge: Knowledge) -> str | None:
    """Which study is ordered: by code first, then by the order text for EHR-local codes."""
    if TUMOR_MARKER in order.concepts:
        return TUMOR_MARKER
    studies = {s for s in STUDIES if s in order.concepts}
    text = " ".join(t for t in (order.text, order.body_site_text) if t)
    if studies == {US_EXTREMITY_FOCAL}:
        # CPT 76882 covers any focal extremity structure: the axilla only when the order says so.
        return US_AXILLA if knowledge.text.match(text) == US_AXILLA else US_EXTREMITY_FOCAL
    if not studies:
        return knowledge.text.match(text)
    if len(studies) == 1:
        study = studies.pop()
        # The order text contradicts the code ("CT chest" coded, "PE protocol" or "low-dose
        # lung screening" written): we cannot tell which is right, so no Variant 10 verdict.
        return CONTRADICTED if knowledge.text.contradicts(study, text) else study
    # CPT 71260 and 74177 as two codings of one order describe CT chest/abdomen/pelvis.
    if studies == {"ct-chest", "ct-abdomen-pelvis"}:
        return "ct-chest-abdomen-pelvis"
    # Codings that disagree otherwise (PET/CT whole body and limited): no verdict either.
    return CONTRADICTED


# Order reasons that are compatible with routine surveillance (the cancer itself, its history,
# follow-up encounters, adjuvant therapy); anything else given as a reason is a work-up.
SURVEILLANCE_REASONS = frozenset(
    {
        BREAST_CANCER,
        HISTORY,
        REMISSION,
        SURVEILLANCE_ENCOUNTER,
        COMPLETED_TREATMENT,
        ENDOCRINE,
        SURGERY,
        "receptor-status-codes",
    }
)
DIAGNOSTIC_REASONS = frozenset(
    {*SYMPTOMS, *LABS, METASTATIC, DISTANT_METASTASIS, RECURRENCE, OTHER_CANCER, DCIS}
)


def _order_reason(
    order: OrderFact, facts: PatientFacts, knowledge: Knowledge
) -> tuple[list[Exclusion], bool]:
    """The order's own reason: a symptom or finding means a diagnostic work-up.

    A reason counts for surveillance only when we can read it as such (a coded breast cancer
    history or follow-up, or text such as "routine follow-up"); a reason we cannot read (an
    unmapped code, a free-text finding, a reference to a record we do not have) silences the
    warning: the clinician has told us why, and we cannot tell that it is routine.
    """
    reasons: list[tuple[frozenset[str], str]] = [(r.concepts, r.text) for r in order.reasons]
    by_id = {c.id: c for c in facts.conditions}
    for ref in order.reason_references:
        target = by_id.get(ref.split("/")[-1]) if ref.startswith("Condition/") else None
        if target is None:
            reasons.append((frozenset(), ""))
        elif _counts(target):
            reasons.append((target.concepts, target.label))
    found: list[Exclusion] = []
    surveillance = False
    for concepts, text in reasons:
        # Denied parts say nothing ("Surveillance, no pain, no cough"; "abnormal? No").
        cleared = knowledge.words.without_denials(text) if text else text
        named = bool(text) and bool(knowledge.words.concepts("order", (text,)))
        diagnostic = concepts & DIAGNOSTIC_REASONS
        if diagnostic:
            found.append(Exclusion(f"order-reason:{sorted(diagnostic)[0]}"))
        elif concepts & SURVEILLANCE_REASONS:
            # A surveillance code whose text names a finding ("Z85.3 - new rib pain", "Hx
            # breast ca, c/o RUQ discomfort"): the text says more than the code, and wins.
            if knowledge.text.names_work_up(cleared) or named:
                found.append(Exclusion("order-reason:not-surveillance"))
            else:
                surveillance = True
        elif knowledge.text.reason(cleared) == "surveillance" and not named:
            surveillance = True
        else:
            found.append(Exclusion("order-reason:not-surveillance"))
    return found, surveillance


def _targets(symptoms: Iterable[Exclusion], knowledge: Knowledge) -> tuple[set[str], list[str]]:
    studies: set[str] = set()
    concepts: list[str] = []
    for s in symptoms:
        concept = s.code.split(":", 1)[1]
        target = knowledge.guideline.symptom_targets.get(concept)
        if target is not None:
            studies |= set(target.studies)
            concepts.append(concept)
    return studies, concepts


def judge_order(
    order: OrderFact, patient: Assessment, facts: PatientFacts, knowledge: Knowledge
) -> Finding:
    """The verdict for one order, given the patient's assessment."""
    study = classify_order(order, knowledge)
    if study is None:
        return Finding(order, None, "silent", "not-a-recognised-study")
    if study == TUMOR_MARKER:
        if (
            patient.survivor
            and not patient.exclusions
            and not _order_reason(order, facts, knowledge)[0]
        ):
            return Finding(
                order,
                study,
                "info-tumor-marker",
                "tumor-marker-surveillance",
                patient.evidence,
                patient.long_standing,
            )
        return Finding(order, study, "silent", patient.not_applicable or _first(patient))
    info = knowledge.guideline.studies.get(study)
    if info is None or not info.warn:
        return Finding(order, study, "silent", "not-a-variant-10-study")
    if not patient.survivor:
        return Finding(order, study, "silent", patient.not_applicable)
    reasons, surveillance = _order_reason(order, facts, knowledge)
    if reasons:
        return Finding(order, study, "silent", reasons[0].code, cause=reasons[0].evidence)
    if knowledge.text.names_work_up(order.text):
        # "PET/CT RESTAGING", "CT CHEST R/O METASTASES": the order says it is a work-up.
        return Finding(order, study, "silent", "order-text:work-up")
    named = knowledge.words.concepts("order", (order.text, *order.words))
    if named:
        # Its note, "reason for exam" answers or instructions name a symptom, a finding or an
        # indication that is not surveillance ("r/o mets", "fall", "pre-op planning").
        kind, _, rid = order.reference.partition("/")
        own = Evidence(kind, rid, order.text, None, named[0].concept, f"words '{named[0].phrase}'")
        return Finding(order, study, "silent", f"order-text:{named[0].concept}", cause=own)
    if order.priority in URGENT:
        return Finding(order, study, "silent", f"order-priority:{order.priority}")
    hard = [e for e in patient.exclusions if e not in patient.symptoms]
    if hard:
        return Finding(order, study, "silent", hard[0].code, cause=hard[0].evidence)
    if patient.symptoms:
        targeted, _ = _targets(patient.symptoms, knowledge)
        labs_only = all(s.code.startswith("abnormal-lab:") for s in patient.symptoms)
        if study in targeted or labs_only or not targeted:
            first = patient.symptoms[0]
            return Finding(order, study, "silent", first.code, cause=first.evidence)
        return Finding(
            order,
            study,
            "info-targeted",
            patient.symptoms[0].code,
            patient.evidence,
            symptoms=patient.symptoms,
            targeted=tuple(sorted(targeted)),
        )
    return Finding(
        order,
        study,
        "warn",
        "variant-10",
        patient.evidence,
        patient.long_standing,
        surveillance_reason=surveillance,
    )


def _first(patient: Assessment) -> str:
    return patient.exclusions[0].code if patient.exclusions else "not-in-scenario"


def mammogram_due(
    facts: PatientFacts, drafts: Sequence[OrderFact], knowledge: Knowledge, today: date
) -> bool:
    """Annual mammography is the surveillance that helps (ACR Variants 6-7, ASCO): suggest it when
    none is recorded, done or ordered, in the last year and none is among the draft orders."""
    if facts.gender == "male":
        return False  # a man's follow-up mammography is individual, not a standard suggestion
    if any(MASTECTOMY in c.concepts and _counts(c) for c in facts.conditions):
        return False
    if any(classify_order(order, knowledge) == MAMMOGRAPHY for order in drafts):
        return False
    for record in facts.procedures:
        if MAMMOGRAPHY not in record.concepts or record.status in VOID_RESULT | {"revoked"}:
            continue
        if record.performed is None or _within(record.performed, today, MAMMOGRAM_INTERVAL_DAYS):
            return False
        if record.performed > today:  # a mammogram already scheduled
            return False
    return True


def evaluate(
    facts: PatientFacts,
    orders: Sequence[OrderFact],
    knowledge: Knowledge,
    today: date,
    windows: Windows = Windows(),
    drafts: Sequence[OrderFact] = (),
    partial: bool = False,
) -> list[Finding]:
    """One finding per order: the whole guideline decision for one hook call.

    ``drafts`` are all the draft orders of the call (context for suggestions and their
    reasons); ``orders`` the ones to judge. ``partial``: the record is known to be incomplete
    (a search with more pages than were read), so it cannot show that the patient has no
    symptom, abnormal lab, metastasis or recurrence, which is what a Variant 10 warning
    asserts: no warning from it (silent, "partial-record"); the other verdicts stand, as what
    was read already explains them.
    """
    patient = assess_patient(facts, today, windows)
    findings = [judge_order(order, patient, facts, knowledge) for order in orders]
    on_partial = "partial-record" if partial else None
    findings = [
        replace(f, verdict="silent", reason=why)
        if f.verdict == "warn"
        and (why := _sibling_reason(f.order, drafts, knowledge) or on_partial)
        else f
        for f in findings
    ]
    if any(f.verdict == "warn" for f in findings) and mammogram_due(
        facts, drafts or orders, knowledge, today
    ):
        findings = [replace(f, offer_mammogram=f.verdict == "warn") for f in findings]
    return findings


# What another draft order's words may say to silence this one: a symptom or a finding (its
# own indication, "trauma" on a head CT, says nothing of this order).
SIBLING_WORDS = frozenset({*SYMPTOMS, METASTATIC, RECURRENCE})


def _sibling_reason(
    order: OrderFact, drafts: Sequence[OrderFact], knowledge: Knowledge
) -> str | None:
    """Another draft order of the same call given a symptom or finding as its reason (a chest
    X-ray "for chronic cough" beside the CT chest): the work-up is under way, so the CT is not
    routine surveillance either. Only reasons that name a symptom or finding count; a reason
    that is merely unreadable on another order does not silence this one."""
    for other in drafts:
        if other.reference == order.reference:
            continue
        for reason in other.reasons:
            diagnostic = reason.concepts & DIAGNOSTIC_REASONS
            if diagnostic:
                return f"sibling-order-reason:{sorted(diagnostic)[0]}"
            if knowledge.text.mentions_finding(reason.text):
                return "sibling-order-reason:finding"
            said = [
                h
                for h in knowledge.words.concepts("order", (reason.text,))
                if h.concept in SIBLING_WORDS
            ]
            if said:
                return f"sibling-order-reason:{said[0].concept}"
        named = [
            h for h in knowledge.words.concepts("order", other.words) if h.concept in SIBLING_WORDS
        ]
        if named:
            return f"sibling-order-text:{named[0].concept}"
    return None


def needs_record(order: OrderFact, knowledge: Knowledge) -> bool:
    """Could this order get a card? Only then is the patient's record worth reading."""
    study = classify_order(order, knowledge)
    if study == TUMOR_MARKER:
        return True
    info = knowledge.guideline.studies.get(study) if study else None
    return bool(info and info.warn)


def judge_without_record(orders: Sequence[OrderFact], knowledge: Knowledge) -> list[Finding]:
    """Verdicts when no order can get a card (mammography, non-imaging orders, ...)."""
    findings = []
    for order in orders:
        study = classify_order(order, knowledge)
        reason = "not-a-recognised-study" if study is None else "not-a-variant-10-study"
        findings.append(Finding(order, study, "silent", reason))
    return findings


def cited(findings: Iterable[Finding]) -> list[tuple[str, str]]:
    """(resource type, id) of every record a card will name, warning or info."""
    out = []
    for f in findings:
        if f.verdict == "silent":
            continue
        out += [(e.kind, e.id) for e in (*f.evidence, *f.long_standing)]
        out += [(s.evidence.kind, s.evidence.id) for s in f.symptoms if s.evidence]
    return out
