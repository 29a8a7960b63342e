"""ACR Variants 1-2: a new invasive breast cancer whose stage is positively I-IIA, staged with
a bone scan, CT or FDG-PET/CT. Which stages belong to this diagnosis, whether they place it
early (AJCC 8 anatomic stage, breast), and the verdict; silent whenever anything is unclear."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, timedelta

from ..facts import ConditionFact, OrderFact, PatientFacts, StageFact
from ..mappings import Knowledge
from .concepts import (
    BREAST_CANCER,
    DCIS,
    EARLY_GROUP,
    HISTORY,
    LATE_GROUP,
    N0,
    N1,
    N_LATE,
    OTHER_CANCER,
    STAGE_UNPLACED,
    T1,
    T2,
    T_LATE,
)
from .diagnosis import breast_cancer_conditions, diagnosing_entry, diagnosis_date, side_of
from .findings import Assessment, Evidence, Finding
from .records import URGENT, condition_date, counts

VARIANT = 2  # the distant-staging variant; Variant 1 (locoregional) rates breast imaging
STAGE_BEFORE_DIAGNOSIS_DAYS = 31  # an unfocused stage this long before the diagnosis is older
EARLY_GROUPS = frozenset({"I", "IA", "IB", "IIA"})
LATE_GROUPS = frozenset({"IIB", "III", "IIIA", "IIIB", "IIIC", "IV", "IVA", "IVB", "IVC"})

Reading = str  # "early" | "late" | "unplaced" | "partial"


# How a coded and a written T or N category read: T0-T2 and N0-N1 by name, the rest "late";
# a written category not in the table (Tis, TX, NX) cannot be placed.
_CODED = {
    "T": ((T1, "T1"), (T2, "T2"), (T_LATE, "late")),
    "N": ((N0, "N0"), (N1, "N1"), (N_LATE, "late")),
}
# T0 (an occult primary found by its nodes) is a work-up of its own, not Variant 2: unplaced.
_WRITTEN = {
    "T": {"1": "T1", "2": "T2", "3": "late", "4": "late"},
    "N": {"0": "N0", "1": "N1", "2": "late", "3": "late"},
}


def _category(stage: StageFact, axis: str) -> str | None:
    """T or N as "T0".."T2", "N0", "N1", "late", "unplaced", or None (not given)."""
    for concept, name in _CODED[axis]:
        if concept in stage.concepts:
            return name
    written = stage.t if axis == "T" else stage.n
    return _WRITTEN[axis].get(written[1:2], "unplaced") if written else None


def _late(stage: StageFact) -> bool:
    """Anything in one reading that says IIB or higher, or distant metastasis."""
    return bool(
        stage.concepts & {LATE_GROUP, "stage-iv-value", "m1-value", T_LATE, N_LATE}
        or stage.group in LATE_GROUPS
        or stage.m == "M1"
        or _category(stage, "T") == "late"
        or _category(stage, "N") == "late"
    )


def classify(readings: Sequence[StageFact]) -> Reading:
    """One source's readings together (a stage group with its T, N, M): AJCC 8 anatomic stage
    T1N0 IA, T0-1N1mi IB, T0-1N1 and T2N0 IIA, T2N1 IIB."""
    if any(_late(s) for s in readings):
        return "late"
    if any(s.basis == "post-therapy" for s in readings):
        return "unplaced"  # yp: after neoadjuvant therapy, not the stage at presentation
    groups = [s for s in readings if s.group or s.concepts & (STAGE_UNPLACED | {EARLY_GROUP})]
    if any(
        s.concepts & STAGE_UNPLACED or (s.group and s.group not in EARLY_GROUPS) for s in groups
    ):
        return "unplaced"  # "stage II", stage 0, a generic value, TX, NX
    t = {c for s in readings if (c := _category(s, "T"))}
    n = {c for s in readings if (c := _category(s, "N"))}
    if "unplaced" in t | n or len(t) > 1 or len(n) > 1:
        return "unplaced"
    if t and n:
        if (t, n) == ({"T2"}, {"N1"}):
            return "late"
        return "early"  # T1 with N0-1, or T2N0
    return "early" if groups else "partial"


def _same_diagnosis(
    cancers: Sequence[ConditionFact], entry: ConditionFact, diagnosed: date
) -> list[ConditionFact]:
    """The breast cancer entries of the diagnosis being staged: the diagnosing entry and those
    recorded around it (not an older cancer, not a history entry)."""
    since = diagnosed - timedelta(days=STAGE_BEFORE_DIAGNOSIS_DAYS)
    return [
        c
        for c in cancers
        if c.id == entry.id
        or (HISTORY not in c.concepts and (d := condition_date(c)) is not None and d >= since)
    ]


def stages_of_diagnosis(facts: PatientFacts) -> tuple[list[ConditionFact], list[StageFact]]:
    """The entries of the diagnosis being staged, and the stage readings that belong to it. A
    stage that names another Condition is not ours; one that names none counts only when it is
    dated from the diagnosis on, the record holds no other cancer it could belong to, and the
    side it names (if any) is not the other breast. No reading counts after an earlier invasive
    breast cancer."""
    cancers = breast_cancer_conditions(facts)
    entry = diagnosing_entry(cancers)
    diagnosed = diagnosis_date(cancers)
    if entry is None or diagnosed is None:
        return [], []
    entries = _same_diagnosis(cancers, entry, diagnosed)
    ours = {c.id for c in entries}
    others = [
        c
        for c in facts.conditions
        if counts(c)
        and c.id not in ours
        and c.concepts & {BREAST_CANCER, HISTORY, OTHER_CANCER, DCIS}
    ]
    if any(c.concepts & {BREAST_CANCER, HISTORY} for c in others):
        # An earlier invasive breast cancer: a new one may be its recurrence (restaged, not
        # Variant 2), and a stage may be either's. Quiet.
        return entries, []
    side = side_of(entry)
    return entries, [
        s
        for s in facts.stages
        if s.focus in ours
        or (
            s.focus is None
            and not others
            and s.when is not None
            and s.when >= diagnosed  # one recorded before the diagnosis may be another's
            and (s.side is None or side is None or s.side == side)
        )
    ]


def _every_side_staged(entries: Sequence[ConditionFact], readings: Sequence[StageFact]) -> bool:
    """Cancers of both breasts in one diagnosis (synchronous, bilateral): each side needs a
    reading of its own (focused on an entry of that side, or a report naming that side); an
    unstaged side may be the larger cancer."""
    sides = {side for c in entries if (side := side_of(c))}
    for side in sides if len(sides) > 1 else ():
        ids = {c.id for c in entries if side_of(c) == side}
        if not any(s.focus in ids or (s.focus is None and s.side == side) for s in readings):
            return False
    return True


def early_stage(facts: PatientFacts) -> StageFact | None:
    """The reading that places this diagnosis positively at stage I-IIA, if every reading of
    it agrees (clinical and pathological alike) and, for cancers of both breasts, each side
    has one; None when any is late or unplaced, or none places it."""
    entries, readings = stages_of_diagnosis(facts)
    if not _every_side_staged(entries, readings):
        return None
    sources: dict[tuple[str, str | None, str | None, date | None], list[StageFact]] = {}
    for s in readings:
        # Coded T, N, M and group Observations of one staging go together; words stand alone.
        key = (
            ("coded", s.focus, s.basis, s.when)
            if s.kind == "Observation"
            else (s.kind, s.id, s.label, None)
        )
        sources.setdefault(key, []).append(s)
    verdicts = {key: classify(found) for key, found in sources.items()}
    if any(v in ("late", "unplaced") for v in verdicts.values()):
        return None
    early = [found for key, found in sources.items() if verdicts[key] == "early"]
    if not early:
        return None
    return next((s for s in early[0] if s.group or s.concepts & {EARLY_GROUP}), early[0][0])


def plain_reasons(order: OrderFact, facts: PatientFacts, knowledge: Knowledge) -> bool:
    """The order's reasons and words say no more than "staging of this new breast cancer"."""
    words = knowledge.stage_text
    by_id = {c.id: c for c in facts.conditions}
    for reason in order.reasons:
        if reason.concepts - {BREAST_CANCER, "receptor-status-codes"}:
            return False
        # A breast cancer code whose text says nothing more ("Malignant neoplasm of ... breast"),
        # or words that say only "staging" ("initial staging", "staging - new dx").
        coded_plainly = bool(reason.concepts) and not _names_more((reason.text,), knowledge)
        if reason.text and not coded_plainly and not words.plain_staging(reason.text):
            return False
    for ref in order.reason_references:
        target = by_id.get(ref.split("/")[-1]) if ref.startswith("Condition/") else None
        if target is None or BREAST_CANCER not in target.concepts:
            return False
    # The order's own name and words: "PET/CT ... INITIAL STAGING" is the scenario,
    # "PET/CT RESTAGING" or a note naming a finding is not.
    left = words.without_plain_staging(order.text)
    return not knowledge.text.names_work_up(left) and not _names_more(
        (order.text, *order.words), knowledge
    )


def _names_more(texts: Sequence[str], knowledge: Knowledge) -> bool:
    """Words that name a symptom, a finding or another indication, staging phrases aside."""
    cleared = [knowledge.stage_text.without_plain_staging(t) for t in texts if t]
    return bool(
        knowledge.words.concepts("order", cleared)
        or any(knowledge.text.mentions_finding(t) for t in cleared)
    )


def judge_early_stage(
    order: OrderFact, study: str, patient: Assessment, facts: PatientFacts, knowledge: Knowledge
) -> Finding | None:
    """The Variant 2 warning, or None (the usual verdict stands). Only for a patient whose one
    reason to be out of surveillance is the new diagnosis itself (initial staging)."""
    if study not in knowledge.topic.warn_studies(VARIANT) or patient.symptoms:
        return None
    if [e.code for e in patient.exclusions] != ["initial-staging"]:
        return None
    if order.priority in URGENT or not plain_reasons(order, facts, knowledge):
        return None
    stage = early_stage(facts)
    if stage is None:
        return None
    shown = Evidence(stage.kind, stage.id, stage.label, stage.when, "early-stage", stage.how)
    return Finding(order, study, "warn", "variant-2", (*patient.evidence, shown))
