"""Population check: the service over a cohort of generated breast-cancer patients (issue 14).

Every patient of the cohort gets the same draft FDG-PET/CT order (CPT 78815) on a fixed day,
with the prefetch an EHR would fill from the service's own discovery templates. The test reports
how many would be warned and how many silenced, by the rule that decided (the finding's reason,
as the service logs it), so that over-silencing is visible; and it asserts what must hold for
any cohort: every patient answered without a server error, no warning for a patient without
breast cancer, no warning for a patient whose record says stage 4 or metastatic disease, and
counts that add up.

Cohort: the PySynthea (``tietai-synthea``) patients that ``python -m bench`` generates and
caches under bench/.cache (see bench/records.py), and the Synthea bundles of
../shared/external/synthea, and any Synthea FHIR bundles in the folder CDS_POPULATION_DIR names
(a larger cohort made by hand). Skipped, saying why, when none is on this machine.
"""

from __future__ import annotations

import logging
import os
import uuid
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import orjson
import pytest
from flask import Flask

from bench import records
from cds_service import create_app

from .conformance import assert_conformant
from .conftest import EXTERNAL, TODAY

SERVICE = "breast-surveillance-order-select"
SCT = "http://snomed.info/sct"
ICD10 = "http://hl7.org/fhir/sid/icd-10-cm"
# Invasive breast cancer as the record codes it (shared/terminology.md §1a-1c): what makes a
# patient a candidate at all, judged here independently of the service's mappings.
BREAST_CANCER_SCT = {
    "254837009", "372064008", "372095001", "372137005", "93796005", "353431000119107",
    "353511000119101", "45221000119105", "713609000", "408643008", "448952004", "278054005",
    "254840009", "706970001", "417181009", "427685000", "431396003", "44721000087109",
    "45061000087102", "1281812003", "1306513001", "1306514007",
}  # fmt: skip
# Known distant disease (§1e) and stage IV values (§1f: Synthea's generic "Stage 4", AJCC IV).
METASTATIC_SCT = {
    "128462008", "94222008", "94602001", "94217008", "94391008", "94493005", "94381002",
    "94225005", "315004001", "767444009", "459391000124109", "399409002", "1287652008",
}  # fmt: skip
STAGE_4_SCT = {"258228008", "1222837003", "1222838008", "1222841004", "1222842006", "1229903009"}
METASTATIC_ICD10_PREFIXES = ("C78", "C79", "C7B", "C80.0")
EXCLUDED_VERIFICATION = {"refuted", "entered-in-error"}


def _codings(concept: Any) -> list[tuple[str, str]]:
    if not isinstance(concept, Mapping):
        return []
    return [
        (str(c.get("system", "")), str(c.get("code", "")))
        for c in concept.get("coding") or []
        if isinstance(c, Mapping)
    ]


def _verified(resource: Mapping[str, Any]) -> bool:
    status = {code for _, code in _codings(resource.get("verificationStatus"))}
    return not status & EXCLUDED_VERIFICATION


def has_breast_cancer(resources: Sequence[Mapping[str, Any]]) -> bool:
    for r in resources:
        if r.get("resourceType") != "Condition" or not _verified(r):
            continue
        for system, code in _codings(r.get("code")):
            if system == SCT and code in BREAST_CANCER_SCT:
                return True
            if system == ICD10 and (code.startswith("C50") or code == "Z85.3"):
                return True
    return False


def has_stage_4_or_metastasis(resources: Sequence[Mapping[str, Any]]) -> bool:
    for r in resources:
        kind = r.get("resourceType")
        if kind == "Condition" and _verified(r):
            for system, code in _codings(r.get("code")):
                if system == SCT and code in METASTATIC_SCT:
                    return True
                if system == ICD10 and code.startswith(METASTATIC_ICD10_PREFIXES):
                    return True
        if kind == "Observation":
            value = _codings(r.get("valueCodeableConcept"))
            if any(s == SCT and c in STAGE_4_SCT | METASTATIC_SCT for s, c in value):
                return True
    return False


def _cohort_files() -> list[tuple[str, Path]]:
    files: list[tuple[str, Path]] = []
    generated = records.tietai_dir()
    if (generated / "DONE").exists():
        files += [("tietai", p) for p in sorted((generated / "fhir").glob("*.json"))]
    shared = EXTERNAL / "synthea"
    if shared.is_dir():
        files += [("shared", p) for p in sorted(shared.glob("*.json"))]
    # A larger cohort made by hand (`synthea -p 150 ... -o DIR`): CDS_POPULATION_DIR=DIR/fhir.
    extra = os.environ.get("CDS_POPULATION_DIR")
    if extra and Path(extra).is_dir():
        files += [("extra", p) for p in sorted(Path(extra).glob("*.json"))]
    return files


class _Outcomes(logging.Handler):
    """The service's own log line of each call: hookInstance -> outcome ("study:verdict:rule")."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.by_call: dict[str, list[str]] = {}

    def emit(self, record: logging.LogRecord) -> None:
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict) and fields.get("event") == "hook":
            self.by_call[str(fields["hookInstance"])] = list(fields["outcome"])


@pytest.fixture(scope="module")
def population_app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Flask]:
    app = create_app({"today": TODAY, "instance_dir": str(tmp_path_factory.mktemp("population"))})
    yield app
    app.extensions["cds_service"].store.close()


def _request(resources: Sequence[Mapping[str, Any]], name: str) -> dict[str, Any]:
    patient_id, prefetch, _ = records.prefetch_for(resources, records.service_templates(SERVICE))
    order = records.pet_ct_order(patient_id)
    order.pop("note", None)  # the seed's note speaks of anxiety about recurrence: keep it neutral
    return {
        "hookInstance": str(uuid.uuid5(uuid.NAMESPACE_URL, f"population:{name}")),
        "hook": "order-select",
        "context": {
            "userId": "Practitioner/population",
            "patientId": patient_id,
            "selections": [f"ServiceRequest/{order['id']}"],
            "draftOrders": {
                "resourceType": "Bundle",
                "type": "collection",
                "entry": [{"resource": order}],
            },
        },
        "prefetch": prefetch,
    }


def test_population_pet_ct(population_app: Flask, capsys: pytest.CaptureFixture[str]) -> None:
    files = _cohort_files()
    if not files:
        pytest.skip(
            f"no cohort: neither {records.tietai_dir()}/DONE (run `python -m bench` once to "
            f"generate the tietai-synthea patients) nor {EXTERNAL / 'synthea'} is present"
        )
    outcomes = _Outcomes()
    logger = logging.getLogger("cds_service.api")
    logger.addHandler(outcomes)
    previous_level = logger.level
    logger.setLevel(logging.INFO)
    rows: list[tuple[str, str, str, str, str]] = []  # source, name, group, verdict, reason
    try:
        with population_app.test_client() as client:
            for source, path in files:
                resources = records.record_resources(orjson.loads(path.read_bytes()))
                if not any(r.get("resourceType") == "Patient" for r in resources):
                    continue  # hospital and practitioner bundles of a Synthea run
                name = f"{source}:{path.stem}"
                request = _request(resources, name)
                response = client.post(f"/cds-services/{SERVICE}", json=request)
                assert response.status_code == 200, (name, response.status_code)
                body = response.get_json()
                assert_conformant(body)
                [outcome] = outcomes.by_call[request["hookInstance"]]
                _, verdict, reason = outcome.split(":", 2)
                warned = any(card["indicator"] == "warning" for card in body["cards"])
                assert warned == (verdict == "warn"), (name, outcome)
                if has_stage_4_or_metastasis(resources):
                    group = "stage-4-or-metastatic"
                elif has_breast_cancer(resources):
                    group = "breast-cancer"
                else:
                    group = "no-breast-cancer"
                rows.append((source, name, group, verdict, reason))
    finally:
        logger.removeHandler(outcomes)
        logger.setLevel(previous_level)

    assert rows, "the cohort files held no patient"
    # Never a warning where the scenario cannot apply.
    for _, name, group, verdict, reason in rows:
        if group in ("no-breast-cancer", "stage-4-or-metastatic"):
            assert verdict != "warn", f"{name} ({group}) warned: {reason}"
    # The counts add up: every patient once, warned or not, each silence under one rule.
    by_verdict = Counter(verdict for *_, verdict, _ in rows)
    by_rule = Counter((group, verdict, reason) for _, _, group, verdict, reason in rows)
    assert sum(by_verdict.values()) == len(rows) == sum(by_rule.values())
    assert by_verdict["warn"] == sum(n for (_, v, _), n in by_rule.items() if v == "warn")

    sources = Counter(source for source, *_ in rows)
    lines = [
        "",
        f"population: FDG-PET/CT (CPT 78815) on {TODAY} for {len(rows)} patients "
        f"({', '.join(f'{s} {n}' for s, n in sorted(sources.items()))})",
        f"{'group':<24} {'verdict':<14} {'rule':<44} {'patients':>8}",
    ]
    for (group, verdict, reason), n in sorted(by_rule.items()):
        lines.append(f"{group:<24} {verdict:<14} {reason:<44} {n:>8}")
    candidates = [r for r in rows if r[2] == "breast-cancer"]
    warned = sum(1 for r in candidates if r[3] == "warn")
    lines.append(
        f"warned {by_verdict['warn']}, not warned {len(rows) - by_verdict['warn']}; "
        f"of {len(candidates)} breast-cancer patients without stage 4 or metastasis, "
        f"{warned} warned and {len(candidates) - warned} silenced"
    )
    with capsys.disabled():
        print("\n".join(lines))
