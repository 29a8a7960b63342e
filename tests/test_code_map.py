"""The code index: every usable code in the concept files maps to its concept (and no other
code does), lookups normalise codes and systems, a representative code of every code system a
US chart uses maps to its concept, codes that must stay apart do, and every ICD-10-CM code in
mappings/ exists in the FY2026 tabular (when simple-icd-10-cm is installed)."""

from __future__ import annotations

from typing import Any

import pytest

from cds_service.mappings import USABLE, USABLE_STRICT, load_dir
from cds_service.rules import REQUIRED_CONCEPTS, WARNING_ENABLERS

from .conftest import MAPPINGS, load_json

KNOWLEDGE = load_dir(MAPPINGS, REQUIRED_CONCEPTS, WARNING_ENABLERS)

ICD10 = "http://hl7.org/fhir/sid/icd-10-cm"
ICD9 = "http://hl7.org/fhir/sid/icd-9-cm"
ICD9_OID = "urn:oid:2.16.840.1.113883.6.103"
SCT = "http://snomed.info/sct"
LOINC = "http://loinc.org"
CPT = "http://www.ama-assn.org/go/cpt"
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"

# (system, code as a chart may carry it, concept it must map to)
MAPS_TO = [
    # ICD-9-CM, migrated records (dots and case as charts write them)
    (ICD9, "174.9", "invasive-breast-cancer"),
    (ICD9, "1744", "invasive-breast-cancer"),
    (ICD9_OID, "174.1", "invasive-breast-cancer"),
    (ICD9, "175.9", "invasive-breast-cancer"),
    (ICD9, "V10.3", "personal-history-breast-cancer"),
    (ICD9, "v103", "invasive-breast-cancer"),
    (ICD9, "233.0", "dcis"),
    (ICD9, "V16.3", "family-history-breast-cancer"),
    (ICD9, "V86.0", "receptor-status-codes"),
    (ICD9, "198.5", "metastatic-disease"),
    (ICD9, "197.7", "metastatic-disease"),
    (ICD9, "197.0", "metastatic-disease"),
    (ICD9, "198.3", "metastatic-disease"),
    (ICD9, "199.0", "metastatic-disease"),
    (ICD9, "196.2", "metastatic-disease"),
    (ICD9, "209.73", "metastatic-disease"),
    (ICD9, "511.81", "metastatic-disease"),
    (ICD9, "196.3", "regional-nodal-disease"),
    (ICD9, "196.1", "regional-nodal-disease"),
    (ICD9, "196.0", "regional-nodal-disease"),
    (ICD9, "162.9", "other-primary-malignancy"),
    (ICD9, "153.9", "other-primary-malignancy"),
    (ICD9, "185", "other-primary-malignancy"),
    (ICD9, "172.5", "other-primary-malignancy"),
    (ICD9, "202.80", "other-primary-malignancy"),
    (ICD9, "204.10", "other-primary-malignancy"),
    (ICD9, "209.31", "other-primary-malignancy"),
    (ICD9, "199.1", "other-primary-malignancy"),
    (ICD9, "786.2", "cough"),
    (ICD9, "786.05", "dyspnea"),
    (ICD9, "783.21", "weight-loss"),
    (ICD9, "782.4", "jaundice"),
    (ICD9, "789.01", "abdominal-pain"),
    (ICD9, "789.1", "hepatomegaly"),
    (ICD9, "784.0", "headache"),
    (ICD9, "780.39", "seizure"),
    (ICD9, "733.90", "bone-pain"),
    (ICD9, "724.2", "back-pain"),
    (ICD9, "733.13", "pathological-fracture"),
    (ICD9, "790.5", "abnormal-liver-or-bone-labs-diagnosis"),
    (ICD9, "275.42", "abnormal-liver-or-bone-labs-diagnosis"),
    (ICD9, "511.9", "other-sign-or-finding"),
    (ICD9, "342.90", "neurological-deficit"),
    (ICD9, "V58.11", "chemotherapy"),
    (ICD9, "V58.0", "radiotherapy-encounter"),
    (ICD9, "V87.41", "completed-treatment-history"),
    (ICD9, "V07.51", "endocrine-therapy"),
    (ICD9, "V45.71", "mastectomy"),
    (ICD9, "V45.71", "breast-surgery"),
    # personal history of other cancers (fallback prefixes) and of non-melanoma skin cancer
    (ICD10, "Z85.038", "history-of-other-cancer"),
    (ICD10, "Z85.820", "history-of-other-cancer"),
    (ICD10, "Z85.828", "history-of-non-melanoma-skin-cancer"),
    (ICD9, "V10.11", "history-of-other-cancer"),
    (ICD9, "V10.83", "history-of-non-melanoma-skin-cancer"),
    (ICD10, "Z85.3", "personal-history-breast-cancer"),
    # SNOMED CT other primaries, distant and regional disease (VSAC Cancer)
    (SCT, "254637007", "other-primary-malignancy"),  # non-small cell lung cancer
    (SCT, "363406005", "other-primary-malignancy"),  # colon
    (SCT, "399068003", "other-primary-malignancy"),  # prostate
    (SCT, "118601006", "other-primary-malignancy"),  # non-Hodgkin lymphoma
    (SCT, "93655004", "other-primary-malignancy"),  # melanoma of skin
    (SCT, "363443007", "other-primary-malignancy"),  # ovary
    (SCT, "254878006", "other-primary-malignancy"),  # endometrial carcinoma
    (SCT, "363418001", "other-primary-malignancy"),  # pancreas
    (SCT, "93143009", "other-primary-malignancy"),  # leukemia
    (SCT, "94627008", "metastatic-disease"),  # peritoneum
    (SCT, "94161006", "metastatic-disease"),  # adrenal gland
    (SCT, "1155991005", "metastatic-disease"),  # leptomeninges
    (SCT, "307593001", "metastatic-disease"),  # carcinomatosis
    (SCT, "94181007", "regional-nodal-disease"),  # axillary nodes
    (SCT, "94614009", "regional-nodal-disease"),  # supraclavicular nodes
    # mastectomy and breast-conserving surgery
    (CPT, "19301", "breast-conserving-surgery"),
    (CPT, "19301", "breast-surgery"),
    (CPT, "19302", "breast-surgery"),
    (CPT, "19303", "mastectomy"),
    (CPT, "19307", "mastectomy"),
    (CPT, "19307", "breast-surgery"),
    (SCT, "726437009", "mastectomy"),  # modified radical mastectomy of left breast
    (SCT, "22418005", "mastectomy"),  # simple mastectomy of bilateral breasts
    (SCT, "429242008", "mastectomy"),  # history of right mastectomy
    # labs by analyte, every common LOINC
    (LOINC, "1779-8", "alkaline-phosphatase"),
    (LOINC, "30239-8", "aspartate-aminotransferase"),  # with P-5'-P
    (LOINC, "88112-8", "aspartate-aminotransferase"),  # no addition of P-5'-P
    (LOINC, "1743-4", "alanine-aminotransferase"),
    (LOINC, "1744-2", "alanine-aminotransferase"),
    (LOINC, "14631-6", "bilirubin-total"),  # molar
    (LOINC, "14804-9", "lactate-dehydrogenase"),
    (LOINC, "2000-8", "calcium"),  # molar
    (LOINC, "2000-8", "calcium-other-loinc"),
    (LOINC, "17861-6", "calcium"),  # mass
    (LOINC, "1995-0", "calcium-ionized"),
    (LOINC, "17842-6", "tumor-marker"),
    # systemic therapy by class (RxNorm ingredients and clinical drugs)
    (RXNORM, "72962", "cytotoxic-chemotherapy"),  # docetaxel
    (RXNORM, "72962", "chemotherapy"),
    (RXNORM, "40048", "cytotoxic-chemotherapy"),  # carboplatin
    (RXNORM, "194000", "chemotherapy"),  # capecitabine
    (RXNORM, "1045456", "cytotoxic-chemotherapy"),  # eribulin 0.5 MG/ML injection
    (RXNORM, "1860480", "chemotherapy"),  # docetaxel 20 MG/ML injection
    (ICD10, "Z79.631", "cytotoxic-chemotherapy"),
    (RXNORM, "224905", "her2-directed-therapy"),  # trastuzumab
    (RXNORM, "1371041", "her2-directed-therapy"),  # ado-trastuzumab emtansine
    (RXNORM, "101306", "her2-directed-therapy"),  # Herceptin (Synthea)
    (RXNORM, "1601374", "cdk46-inhibitor"),  # palbociclib
    (RXNORM, "845507", "other-targeted-antineoplastic"),  # everolimus 10 MG
    (ICD10, "Z51.12", "immunotherapy"),
    (ICD10, "Z51.12", "chemotherapy"),
    (ICD9, "V58.12", "immunotherapy"),
    (ICD10, "Z92.26", "completed-treatment-history"),
    # SNOMED CT symptoms and findings
    (SCT, "11833005", "cough"),  # dry cough
    (SCT, "66931009", "abnormal-liver-or-bone-labs-diagnosis"),  # hypercalcaemia
    (SCT, "60046008", "other-sign-or-finding"),  # pleural effusion
    (SCT, "389026000", "other-sign-or-finding"),  # ascites
]

# (system, code, concept it must NOT map to): the distinctions the rules rely on
MUST_NOT_MAP_TO = [
    (ICD9, "196.3", "metastatic-disease"),  # axillary nodes are regional for breast cancer
    (ICD9, "196.1", "metastatic-disease"),  # internal mammary (intrathoracic) nodes: regional
    (ICD9, "173.3", "other-primary-malignancy"),  # non-melanoma skin cancer, as C44
    (ICD9, "174.9", "other-primary-malignancy"),
    (ICD9, "233.0", "invasive-breast-cancer"),  # in situ
    (ICD9, "V16.3", "invasive-breast-cancer"),  # family, not personal, history
    (ICD9, "198.81", "invasive-breast-cancer"),  # secondary neoplasm OF breast
    (ICD9, "783.22", "weight-loss"),  # underweight is not weight loss
    (ICD10, "174.9", "invasive-breast-cancer"),  # an ICD-9 code under the ICD-10 system
    (ICD10, "Z85.828", "other-primary-malignancy"),  # non-melanoma skin history never excludes
    (ICD9, "V10.83", "other-primary-malignancy"),
    (ICD10, "Z85.3", "history-of-other-cancer"),  # breast history keeps its own concept
    (ICD9, "V10.3", "history-of-other-cancer"),
    (SCT, "94181007", "metastatic-disease"),  # axillary nodes are regional
    (SCT, "94614009", "metastatic-disease"),  # supraclavicular nodes are regional
    (SCT, "254837009", "other-primary-malignancy"),  # breast cancer is not "another" cancer
    (CPT, "19301", "mastectomy"),  # partial mastectomy keeps the breast
    (SCT, "726636007", "mastectomy"),  # purely prophylactic: left out
    (LOINC, "1995-0", "calcium"),  # ionized calcium is its own analyte
    (RXNORM, "10324", "chemotherapy"),  # tamoxifen is adjuvant endocrine therapy
    (RXNORM, "199224", "cytotoxic-chemotherapy"),  # anastrozole
    (RXNORM, "105585", "chemotherapy"),  # methotrexate 2.5 MG tablet: rheumatology dose
    (RXNORM, "977434", "other-targeted-antineoplastic"),  # everolimus 0.5 MG: transplant
    (RXNORM, "224905", "chemotherapy"),  # HER2 therapy is its own class (not wired yet)
]


ADJUVANT_ENDOCRINE = ("endocrine-therapy", "fulvestrant")
SYSTEMIC_CLASSES = (
    "chemotherapy",
    "cytotoxic-chemotherapy",
    "her2-directed-therapy",
    "cdk46-inhibitor",
    "immunotherapy",
    "other-targeted-antineoplastic",
)


def test_endocrine_therapy_never_lands_in_a_systemic_therapy_class() -> None:
    doc = load_json(MAPPINGS / "treatment.json")
    for concept_id in ADJUVANT_ENDOCRINE:
        for entry in doc["concepts"][concept_id]["codes"]:
            found = KNOWLEDGE.codes.lookup(entry["system"], entry["code"])
            assert not found & set(SYSTEMIC_CLASSES), (concept_id, entry["code"], found)


def test_every_lab_code_names_its_unit() -> None:
    doc = load_json(MAPPINGS / "labs.json")
    for concept_id, concept in doc["concepts"].items():
        for entry in concept["codes"]:
            if entry["system"] == LOINC:
                assert entry.get("note"), f"{concept_id}: {entry['code']} has no unit note"


@pytest.mark.parametrize(("system", "code", "concept"), MAPS_TO)
def test_code_maps_to_concept(system: str, code: str, concept: str) -> None:
    assert concept in KNOWLEDGE.codes.lookup(system, code), (system, code)


@pytest.mark.parametrize(("system", "code", "concept"), MUST_NOT_MAP_TO)
def test_code_does_not_map_to_concept(system: str, code: str, concept: str) -> None:
    assert concept not in KNOWLEDGE.codes.lookup(system, code), (system, code)


def _icd10_entries() -> list[tuple[str, str, dict[str, Any]]]:
    rows = []
    for path in sorted(MAPPINGS.glob("*.json")):
        doc = load_json(path)
        for concept_id, concept in doc.get("concepts", {}).items():
            for entry in concept.get("codes", ()):  # words.json has phrases, not codes
                if entry["system"] == ICD10 and not entry.get("fallback"):
                    rows.append((path.name, concept_id, entry))
    return rows


ICD10_ENTRIES = _icd10_entries()


@pytest.mark.parametrize(
    ("file", "concept", "entry"),
    ICD10_ENTRIES,
    ids=[f"{c}:{e['code']}" for _, c, e in ICD10_ENTRIES],
)
def test_icd10cm_code_exists_in_fy2026_tabular(
    file: str, concept: str, entry: dict[str, Any]
) -> None:
    icd = pytest.importorskip(
        "simple_icd_10_cm", reason="simple-icd-10-cm (dev extra) is not installed"
    )
    code = entry["code"]
    assert icd.is_valid_item(code), f"{file}: {concept}: {code} is not in ICD-10-CM FY2026"
    assert icd.get_description(code) == entry["display"], f"{file}: {concept}: {code}"


CONCEPT_FILES = [
    p
    for p in sorted(MAPPINGS.glob("*.json"))
    if "concepts" in load_json(p) and "group" in load_json(p)
]


def _entries() -> list[tuple[str, str, dict[str, Any], bool]]:
    rows = []
    for path in CONCEPT_FILES:
        for concept_id, concept in load_json(path)["concepts"].items():
            for entry in concept["codes"]:
                rows.append((path.name, concept_id, entry, concept.get("strict", False)))
    return rows


ENTRIES = _entries()


@pytest.mark.parametrize(
    ("file", "concept", "entry", "strict"),
    ENTRIES,
    ids=[f"{c}:{e['code']}" for _, c, e, _ in ENTRIES],
)
def test_each_code_maps_to_its_concept(
    file: str, concept: str, entry: dict[str, Any], strict: bool
) -> None:
    found = KNOWLEDGE.codes.lookup(entry["system"], entry["code"])
    usable = USABLE_STRICT if strict else USABLE
    if entry["verified"] in usable:
        assert concept in found, f"{file}: {entry}"
        if entry.get("match") == "prefix":
            # A family matches its members whatever the dots and case.
            member = entry["code"] + "9"
            assert concept in KNOWLEDGE.codes.lookup(entry["system"], member.lower())
    else:
        assert concept not in found, f"{entry['verified']} code must not be used: {entry}"
    assert entry["source"].strip() and entry["display"].strip()


@pytest.mark.parametrize(
    ("system", "code", "concept"),
    [
        ("http://hl7.org/fhir/sid/icd-10-cm", "C50.A1", "invasive-breast-cancer"),
        ("http://hl7.org/fhir/sid/icd-10-cm", "C50912", "invasive-breast-cancer"),
        ("urn:oid:2.16.840.1.113883.6.90", "C50.921", "invasive-breast-cancer"),
        ("http://hl7.org/fhir/sid/icd-10-cm", "Z85.3", "invasive-breast-cancer"),
        ("http://hl7.org/fhir/sid/icd-10-cm", "C79.51", "metastatic-disease"),
        ("http://hl7.org/fhir/sid/icd-10-cm", "D05.11", "dcis"),
        ("http://hl7.org/fhir/sid/icd-10-cm", "R05.3", "cough"),
        ("http://hl7.org/fhir/sid/icd-10-cm", "C34.90", "other-primary-malignancy"),
        ("http://www.radlex.org", "rpid5083", "bone-scan-whole-body"),
    ],
)
def test_lookup_normalises_codes_and_systems(system: str, code: str, concept: str) -> None:
    assert concept in KNOWLEDGE.codes.lookup(system, code)


@pytest.mark.parametrize(
    ("system", "code", "concept"),
    [
        ("http://hl7.org/fhir/sid/icd-10-cm", "Z80.3", "invasive-breast-cancer"),
        ("http://snomed.info/sct", "429740004", "invasive-breast-cancer"),
        ("http://hl7.org/fhir/sid/icd-10-cm", "C77.3", "metastatic-disease"),
        ("http://hl7.org/fhir/sid/icd-10-cm", "D05.11", "invasive-breast-cancer"),
        ("http://snomed.info/sct", "109889007", "invasive-breast-cancer"),
        ("http://hl7.org/fhir/sid/icd-10-cm", "C44.91", "other-primary-malignancy"),
        ("http://www.ama-assn.org/go/cpt", "78811", "pet-ct"),
        ("http://snomed.info/sct", "241615005", "brain-mri"),
    ],
)
def test_pitfalls_do_not_map(system: str, code: str, concept: str) -> None:
    assert concept not in KNOWLEDGE.codes.lookup(system, code)
