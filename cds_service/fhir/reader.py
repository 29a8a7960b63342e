"""One resource of a patient record → its fact, when it is relevant: when its codes map to a
concept or its words name one (the one relevance check).

Every resource of the record is parsed (orjson, at the edge) and read here by the same code,
whether it came in a prefetch, from the EHR's FHIR server or from a tool. Words count as much as
codes: a problem-list title under a local code, a coding's display, a lab's name, a value written
as text, a note, a drug's name, a report's conclusion. Words may only silence
(mappings/words.json): they add the concepts that take a patient out of Variant 10 and never the
ones that can make a warning.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import replace
from datetime import date
from typing import Any

import orjson

from ..concepts import LABS, SYMPTOMS
from ..facts import ConditionFact, MedicationFact, ObservationFact, ProcedureFact
from ..mappings import Knowledge
from .dates import date_in_text, first_date, onset_from_age, parse_date
from .elements import NO_CONCEPTS, as_dict, as_list, as_str, coding_pairs, concept_label, first_code
from .lab_values import observation_fact
from .resource_facts import medication_fact, procedure_fact, profile_concepts
from .texts import concept_texts, note_texts, reason_texts, reference_displays


class ResourceReader:
    """Reads one record's resources into facts with the knowledge's codes and words."""

    def __init__(self, knowledge: Knowledge) -> None:
        self.codes = knowledge.codes
        self.text = knowledge.text
        self.words = knowledge.words
        self.medications: dict[str, Mapping[str, Any]] = {}
        self.names = knowledge.readings

    def coded(self, concept: Any) -> tuple[frozenset[str], tuple[tuple[str, str], ...]]:
        """Concepts of a CodeableConcept's codes, and how each was found."""
        found: frozenset[str] = NO_CONCEPTS
        how: list[tuple[str, str]] = []
        for system, code in coding_pairs(concept):
            hit = self.codes.lookup(system, code)
            if hit:
                found = found | hit
                how += [(c, f"code {system}|{code}") for c in sorted(hit)]
        return found, tuple(how)

    def named(
        self, scope: str, texts: Iterable[str | None], drop: frozenset[str] = NO_CONCEPTS
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
        profiles = profile_concepts(raw)
        concepts |= profiles
        how += tuple((c, "profile") for c in sorted(profiles))
        labels = concept_texts(code)
        notes = note_texts(raw)
        # What the entry cites as its evidence ("Secondary malignant neoplasm of liver").
        for evidence in as_list(raw.get("evidence")):
            for concept in as_list(as_dict(evidence).get("code")):
                found, found_how = self.coded(concept)
                concepts |= found & _EVIDENCE_CONCEPTS
                how += tuple(h for h in found_how if h[0] in _EVIDENCE_CONCEPTS)
                notes += concept_texts(concept)
            notes += reference_displays(as_dict(evidence).get("detail"))
        # A regional-node code's own title ("Secondary ... neoplasm of axillary lymph nodes")
        # says regional, and its code already says so: its words do not make it distant.
        drop = concepts | (_NOT_DISTANT if "regional-nodal-disease" in concepts else concepts)
        stage_texts = [
            t for s in as_list(raw.get("stage")) for t in concept_texts(as_dict(s).get("summary"))
        ]
        named, named_how = self.named("condition", labels + notes + stage_texts, drop)
        stage_codings = [
            c for s in as_list(raw.get("stage")) for c in coding_pairs(as_dict(s).get("summary"))
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
            id=as_str(raw.get("id")) or "",
            concepts=concepts | named,
            label=concept_label(code),
            clinical_status=first_code(raw.get("clinicalStatus")),
            verification=first_code(raw.get("verificationStatus")),
            onset=first_date(raw, "onsetDateTime", "onsetPeriod.start")
            or onset_from_age(raw, birth),
            recorded=parse_date(raw.get("recordedDate")),
            abatement=first_date(raw, "abatementDateTime", "abatementPeriod.end")
            or date_in_text(as_str(raw.get("abatementString"))),
            stage_concepts=stage,
            profiles=frozenset(
                p for p in as_list(as_dict(raw.get("meta")).get("profile")) if isinstance(p, str)
            ),
            codes=frozenset(coding_pairs(code)),
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
        values: frozenset[str] = NO_CONCEPTS
        if value_cc is not None:
            values, value_how = self.coded(value_cc)
            how += value_how
        value_texts = concept_texts(value_cc) if value_cc is not None else []
        if v := as_str(raw.get("valueString")):
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
        notes = note_texts(raw) if "note" in raw else []
        if not value_texts and not notes and "component" not in raw:
            if not concepts and not values:
                return None
            return observation_fact(raw, concepts, values, self.text, how, self.words)
        # What it says: the answer, the value written as text, notes, components.
        said = value_texts + notes  # the name was read above: "Disease progression?"
        for component in as_list(raw.get("component")):
            part = as_dict(component)
            if part.get("valueBoolean") is False:
                continue
            part_values = concept_texts(part.get("valueCodeableConcept"))
            part_values += [v] if (v := as_str(part.get("valueString"))) else []
            if any(self.words.denies(t) for t in part_values):
                continue
            part_concepts, part_how = self.coded(part.get("code"))
            part_values_concepts, part_value_how = self.coded(part.get("valueCodeableConcept"))
            values |= (part_concepts | part_values_concepts) & _SYMPTOM_LIKE
            how += part_how + part_value_how
            said += part_values
            part_named, part_named_how = self.named(
                "observation", concept_texts(part.get("code")), _LAB_LIKE | _NOT_FROM_NAME
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
        return observation_fact(raw, concepts, values, self.text, how, self.words)

    def component_labs(self, raw: Mapping[str, Any]) -> list[ObservationFact]:
        """The lab results inside a panel's components (an ALP of a metabolic panel), each read
        as an Observation of its own: its value, interpretation and reference range, and the
        panel's status and date."""
        labs = []
        for index, component in enumerate(as_list(raw.get("component"))):
            part = as_dict(component)
            concepts, how, named_by_name, _ = self.observation_name(part.get("code"))
            named, named_how = named_by_name
            analytes = (concepts | named) & _LAB_LIKE
            if not analytes:
                continue
            result = {
                **{k: v for k, v in raw.items() if k not in ("component", "valueQuantity")},
                **part,
                "id": f"{as_str(raw.get('id')) or ''}#component-{index}",
            }
            labs.append(
                observation_fact(
                    result, analytes, NO_CONCEPTS, self.text, how + named_how, self.words
                )
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
            labels = concept_texts(code)
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
        texts = concept_texts(code) + note_texts(raw)
        if rtype == "DiagnosticReport":
            conclusion, conclusion_how = self.coded_all(raw.get("conclusionCode"))
            concepts |= conclusion - _WARNING_ENABLERS_FROM_REPORTS
            how += conclusion_how
            texts += [c] if (c := as_str(raw.get("conclusion"))) else []
        if rtype == "ServiceRequest" and not concepts:
            return None  # an order in the record is read for the study it names, by code
        named, named_how = self.named(scope, texts, concepts)
        if rtype == "Procedure":
            # Why it was done ("Metastasis to bone", a kyphoplasty "for pathologic fracture").
            reasons, reasons_how = self.coded_all(raw.get("reasonCode"))
            reasons &= _EVIDENCE_CONCEPTS | _SYMPTOM_LIKE
            named_why, why_how = self.named(
                "condition", reason_texts(raw), concepts | named | reasons | _TREATMENT_WORDS
            )
            named |= reasons | named_why
            named_how += tuple(h for h in reasons_how if h[0] in reasons) + why_how
        if not concepts and not named:
            return None
        return procedure_fact(raw, concepts | named, how + named_how)

    def coded_all(self, concepts: Any) -> tuple[frozenset[str], tuple[tuple[str, str], ...]]:
        found: frozenset[str] = NO_CONCEPTS
        how: tuple[tuple[str, str], ...] = ()
        for concept in as_list(concepts):
            hit, hit_how = self.coded(concept)
            found |= hit
            how += hit_how
        return found, how

    # --- Medications

    def medication(self, raw: Mapping[str, Any]) -> MedicationFact | None:
        drug: Any = raw.get("medicationCodeableConcept")
        concepts, how = self.coded(drug)
        texts = concept_texts(drug)
        reference = as_str(as_dict(raw.get("medicationReference")).get("reference"))
        referenced = self.medications.get(reference.rsplit("/", 1)[-1]) if reference else None
        if reference and reference.startswith("#"):
            referenced = next(
                (
                    as_dict(c)
                    for c in as_list(raw.get("contained"))
                    if f"#{as_dict(c).get('id')}" == reference
                ),
                None,
            )
        label_from = drug
        if referenced is not None:
            label_from = referenced.get("code")
            found, found_how = self.coded(label_from)
            concepts |= found
            how += found_how
            texts += concept_texts(label_from)
            for ingredient in as_list(referenced.get("ingredient")):
                item = as_dict(ingredient).get("itemCodeableConcept")
                found, found_how = self.coded(item)
                concepts |= found
                how += found_how
                texts += concept_texts(item)
        if reference and not texts:
            texts.append(as_str(as_dict(raw.get("medicationReference")).get("display")) or "")
        named, named_how = self.named("medication", texts + note_texts(raw), concepts)
        # Why it was prescribed ("Right hip pain"): read as a problem-list entry would be.
        reasons = reason_texts(raw)
        if reasons:
            why, why_how = self.named("condition", reasons, concepts | named | _TREATMENT_WORDS)
            named |= why
            named_how += why_how
        if not concepts and not named:
            return None
        fact = medication_fact(raw, concepts | named, how + named_how)
        if fact.label == "" and texts:
            fact = replace(fact, label=texts[0])
        elif referenced is not None:
            fact = replace(fact, label=concept_label(label_from) or fact.label)
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
_STAGING_CONCEPTS = frozenset({"stage-group-observation", "m-category-observation"})
_STAGING_WORDS = re.compile(r"\b(STAGE|STAGING|TNM|AJCC)\b")


# Whose words are read for metastatic disease: the breast cancer entries themselves, whose
# titles often say what their code does not ("Metastatic breast cancer (HCC)" on a C50 code).
# Not other entries: a regional-node code's own title ("Secondary ... neoplasm of lymph nodes
# of axilla") says regional, and its code already says so.
_BREAST_CANCER_ENTRIES = frozenset({"invasive-breast-cancer", "personal-history-breast-cancer"})
