"""A cancer's stage as the record gives it → ``StageFact``s: ``Condition.stage`` (summary coded
or in words, its type, its assessments), stage-group and T/N/M Observations (value codes or
words, ``focus``, ``hasMember``), and stage words in a Condition's own title and notes or a
report's conclusion. Which cancer a stage belongs to is kept (``focus``); the rules decide."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import replace
from datetime import date
from typing import Any

from ..facts import StageFact
from ..mappings import Knowledge
from .dates import first_date
from .elements import as_dict, as_list, as_str, coding_pairs, concept_label
from .texts import concept_texts, note_texts

# Observation.code concepts of a staging observation (stage group, T, N, M).
STAGE_OBSERVATIONS = frozenset(
    {
        "stage-group-observation",
        "t-category-observation",
        "n-category-observation",
        "m-category-observation",
        "m-category-other-observation",
    }
)


def _short(display: str) -> str:
    """A SNOMED AJCC value's display as a clinician writes it ("AJCC stage IA")."""
    display = display.replace("American Joint Committee on Cancer", "AJCC")
    return display.removesuffix(" (qualifier value)")


def _target(reference: Any, kind: str) -> str | None:
    ref = as_str(as_dict(reference).get("reference")) or ""
    return ref.split("/")[-1] if ref.startswith(f"{kind}/") else None


# Results that never happened: their stage is not read.
VOID = frozenset({"entered-in-error", "cancelled"})
# A stage Observation is read once it is a result (FHIR ObservationStatus); a registered or
# preliminary stage may still change, so it places nothing.
RESULTED = frozenset({"final", "amended", "corrected"})
# A reading that places nothing: words beside the stage put it in doubt.
DOUBT = "doubt"


class StageReader:
    """Reads the stages of one record; ``linked`` ties assessments and members to their
    Condition once the whole record is read."""

    def __init__(self, knowledge: Knowledge) -> None:
        self.codes = knowledge.codes
        self.words = knowledge.stage_text
        self.assessed: dict[str, str] = {}  # Observation id -> the Condition it assesses
        self.member_of: dict[str, str] = {}  # Observation id -> its stage-group Observation

    def _from_words(
        self, text: str, kind: str, rid: str, when: date | None, focus: str | None
    ) -> list[StageFact]:
        """The stage groups and TNM categories written in one text."""
        found = [
            StageFact(
                rid, kind, f"stage {group}", basis, group, when=when, focus=focus, how="stage words"
            )
            for basis, group in self.words.groups(text)
        ]
        for tnm in self.words.tnm_readings(text):
            t = f"T{tnm.t.lower()}" if tnm.t != "IS" else "Tis"
            n, m = f"N{tnm.n.lower()}", f"M{tnm.m}" if tnm.m else None
            found.append(
                StageFact(
                    rid,
                    kind,
                    " ".join(x for x in (t, n, m) if x),
                    tnm.basis,
                    t=t,
                    n=n,
                    m=m,
                    when=when,
                    focus=focus,
                    how="stage words",
                )
            )
        return found

    def _doubt(
        self, texts: Iterable[str], kind: str, rid: str, when: date | None, focus: str | None
    ) -> list[StageFact]:
        """A reading that places nothing when the words beside a stage put it in doubt ("r/o
        inflammatory", "FNA pending") or name another disease (phyllodes, an endometrial
        primary, a recurrence): the stage of this source cannot be trusted as early."""
        if not any(self.words.doubted(text) for text in texts):
            return []
        return [
            StageFact(
                rid,
                kind,
                "stage in doubt",
                group=DOUBT,
                when=when,
                focus=focus,
                how="words beside the stage",
            )
        ]

    def _summary(
        self, concept: Any, basis: str | None, rid: str, when: date | None, focus: str | None
    ) -> list[StageFact]:
        """A coded or written stage value (Condition.stage.summary, an Observation's value)."""
        pairs = coding_pairs(concept)
        values = self.codes.lookup_all(pairs)
        found: list[StageFact] = []
        if values:
            code = next(f"{s}|{c}" for s, c in pairs if self.codes.lookup(s, c))
            label = _short(concept_label(concept))
            found.append(StageFact(rid, "", label, basis, None, concepts=values, how=code))
        text = as_str(as_dict(concept).get("text"))  # words only: a code's display is not read
        if text:
            group = self.words.summary_group(text)
            if group is not None:
                found.append(StageFact(rid, "", f"stage {group}", basis, group, how="stage words"))
            else:
                found += self._from_words(text, "", rid, when, focus)
        return [replace(f, when=when, focus=focus, basis=f.basis or basis) for f in found]

    def condition(self, raw: Mapping[str, Any], when: date | None) -> list[StageFact]:
        """A Condition's stage entries and the stage words of its own title and notes."""
        rid = as_str(raw.get("id")) or ""
        found: list[StageFact] = []
        for entry in as_list(raw.get("stage")):
            stage = as_dict(entry)
            type_words = " ".join(concept_texts(stage.get("type")))
            basis = self.words.basis(type_words) if type_words else None
            found += self._summary(stage.get("summary"), basis, rid, when, rid)
            for assessment in as_list(stage.get("assessment")):
                if target := _target(assessment, "Observation"):
                    self.assessed[target] = rid
        texts = concept_texts(raw.get("code"))[:1] + note_texts(raw)
        for text in texts:
            found += self._from_words(text, "Condition", rid, when, rid)
        if found:
            found += self._doubt(texts, "Condition", rid, when, rid)
        return [replace(f, kind="Condition") for f in found]

    def observation(self, raw: Mapping[str, Any], names: frozenset[str]) -> list[StageFact]:
        """A stage-group or T/N/M Observation (``names``: the concepts of its code)."""
        if not names & STAGE_OBSERVATIONS:
            return []
        if as_str(raw.get("status")) not in RESULTED:
            return []  # registered, preliminary, unknown: not yet a stage; void ones never
        rid = as_str(raw.get("id")) or ""
        when = first_date(raw, "effectiveDateTime", "effectivePeriod.start", "issued")
        focus = next((t for f in as_list(raw.get("focus")) if (t := _target(f, "Condition"))), None)
        for member in as_list(raw.get("hasMember")):
            if target := _target(member, "Observation"):
                self.member_of[target] = rid
        basis = self.words.basis(" ".join(concept_texts(raw.get("code"))))
        found = self._summary(raw.get("valueCodeableConcept"), basis, rid, when, focus)
        texts = [v for v in [as_str(raw.get("valueString"))] if v] + note_texts(raw)
        for text in texts:
            found += self._from_words(text, "Observation", rid, when, focus)
        if found:
            found += self._doubt(
                [*concept_texts(raw.get("valueCodeableConcept")), *texts],
                "Observation",
                rid,
                when,
                focus,
            )
        return [replace(f, kind="Observation") for f in found]

    def report(self, raw: Mapping[str, Any]) -> list[StageFact]:
        """Stage words in the conclusion of a report about the breast (a pathology report's
        "pT1c pN0(sn)")."""
        conclusion = as_str(raw.get("conclusion"))
        if not conclusion or as_str(raw.get("status")) in VOID:
            return []
        rid = as_str(raw.get("id")) or ""
        when = first_date(raw, "effectiveDateTime", "effectivePeriod.start", "issued")
        about = " ".join([*concept_texts(raw.get("code"))[:1], conclusion])
        side = self.words.side(about)
        if not self.words.about_breast(about):
            # Another organ's report: its stage is not this cancer's. A breast report whose
            # words put things in doubt ("lymphoma, no carcinoma", "suspicious nodes") places
            # nothing for the diagnosis either.
            doubt = self._doubt([about], "DiagnosticReport", rid, when, None)
            return [replace(f, side=side) for f in doubt] if self.words.names_breast(about) else []
        found = self._from_words(conclusion, "DiagnosticReport", rid, when, None)
        return [replace(f, side=side) for f in found]

    def linked(self, stages: Iterable[StageFact]) -> tuple[StageFact, ...]:
        """Unfocused Observations assessed by a Condition's stage, or members of a focused
        stage-group Observation, take that Condition as their focus."""
        stages = list(stages)
        focus_of = {s.id: s.focus for s in stages if s.kind == "Observation" and s.focus}
        out = []
        for s in stages:
            if s.kind == "Observation" and s.focus is None:
                focus = self.assessed.get(s.id) or focus_of.get(self.member_of.get(s.id, ""))
                s = replace(s, focus=focus) if focus else s
            out.append(s)
        return tuple(out)
