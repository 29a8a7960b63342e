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
