"""ACR Appropriateness Criteria "Imaging of Invasive Breast Cancer", Variants 10 and 11.

Pure functions: nothing here reads the clock or does I/O (``today`` is passed in).

Variant 10: surveillance of a survivor of invasive breast cancer, regardless of stage at
presentation, evaluation for distant metastatic disease: FDG-PET/CT, CT chest/abdomen/pelvis,
whole-body bone scan and US axilla are *Usually Not Appropriate*. The variant has no
"asymptomatic" in its text: it is implied by Variant 11 (suspected distant recurrence from
symptoms, examination or a laboratory value), which these rules treat as the exclusion. So do
known metastatic disease, recurrence, initial staging of a recent diagnosis, active systemic
treatment and another active cancer: none of those is routine surveillance.

The guiding asymmetry: a false warning on a symptomatic patient is worse than no card. Any
doubt about the scenario (a symptom of unknown date, an order reason we cannot read, a
provisional diagnosis) silences the warning.

Modules: ``concepts`` (the concept ids read), ``findings`` (what the rules return),
``records`` (statuses and dates of one record), ``diagnosis``, ``exclusions`` and ``variant11``
(the patient's side, gathered by ``patient``), ``orders`` (the order's side), ``mammogram``
(the suggestion), ``evaluate`` (one hook call). A new variant is a module of its own here,
called from ``patient`` or ``orders``, plus its data in ``mappings/``.
"""

from __future__ import annotations

from ..concepts import LABS, SYMPTOMS
from .concepts import (
    CHEMOTHERAPY,
    DISEASE_STATUS,
    ENDOCRINE,
    FULVESTRANT,
    M_CATEGORY,
    MAMMOGRAPHY,
    REQUIRED_CONCEPTS,
    STAGE_GROUP,
    STAGE_OBSERVATIONS,
    SURGERY,
    SYSTEMIC_THERAPY,
    WARNING_ENABLERS,
)
from .evaluate import cited, evaluate
from .findings import Assessment, Evidence, Exclusion, Finding, Verdict, Windows
from .mammogram import mammogram_due
from .orders import classify_order, judge_order, judge_without_record, needs_record
from .patient import assess_patient

__all__ = [
    "CHEMOTHERAPY",
    "DISEASE_STATUS",
    "ENDOCRINE",
    "FULVESTRANT",
    "LABS",
    "MAMMOGRAPHY",
    "M_CATEGORY",
    "REQUIRED_CONCEPTS",
    "STAGE_GROUP",
    "STAGE_OBSERVATIONS",
    "SURGERY",
    "SYMPTOMS",
    "SYSTEMIC_THERAPY",
    "WARNING_ENABLERS",
    "Assessment",
    "Evidence",
    "Exclusion",
    "Finding",
    "Verdict",
    "Windows",
    "assess_patient",
    "cited",
    "classify_order",
    "evaluate",
    "judge_order",
    "judge_without_record",
    "mammogram_due",
    "needs_record",
]
