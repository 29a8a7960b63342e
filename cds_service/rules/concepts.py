"""The concept ids the rules read, and the concept sets the mapping loader checks at start-up
(``REQUIRED_CONCEPTS`` must all be defined; words may never name ``WARNING_ENABLERS``)."""

from __future__ import annotations

from ..concepts import LABS, SYMPTOMS

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
# The other staging observations (mappings/stage-codes.json), fetched with the stage group.
STAGE_OBSERVATIONS = (
    "t-category-observation",
    "n-category-observation",
    "m-category-other-observation",
)
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
# Stage values (mappings/stage-codes.json, staging.json) read by the Variant 1-2 rule.
EARLY_GROUP = "stage-group-early-value"  # AJCC stage I, IA, IB, IIA
LATE_GROUP = "stage-group-late-value"  # IIB-III
T1, T2, T_LATE = "t1-value", "t2-value", "t-late-value"
N0, N1, N_LATE = "n0-value", "n1-value", "n2-n3-value"
M0, M_UNKNOWN = "m0-value", "m-unknown-value"
# Values that cannot place a stage on either side of the IIA/IIB line, or say in situ.
STAGE_UNPLACED = frozenset(
    {
        "stage-group-indeterminate-value",
        "non-metastatic-stage-value",  # Synthea generic values and IIB/IIIC mixed: not placed
        "stage-group-0-value",
        "t-in-situ-or-none-value",
        "t-unknown-value",
        "n-unknown-value",
    }
)
STAGE_CONCEPTS = frozenset(
    {EARLY_GROUP, LATE_GROUP, T1, T2, T_LATE, N0, N1, N_LATE, M0, M_UNKNOWN, *STAGE_UNPLACED}
)
EARLY_STAGE_ENABLERS = frozenset({EARLY_GROUP, T1, T2, N0, N1})  # strict: V/V2 codes only

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
        *STAGE_CONCEPTS,
        *STAGE_OBSERVATIONS,
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
        *EARLY_STAGE_ENABLERS,
    }
)
