"""The appropriateness rating written onto a draft order (Argonaut CDS Hooks for PAMA) as a
system action."""

from __future__ import annotations

from typing import Any

from ..mappings import Knowledge
from ..rules import Finding
from .models import Action
from .presentation import Presentation

PAMA = "http://fhir.org/argonaut/Extension/"
PAMA_RATING_SYSTEM = "http://fhir.org/argonaut/CodeSystem/pama-rating"
_OURS = frozenset(
    PAMA + name for name in ("pama-rating", "pama-rating-consult-id", "pama-rating-auc-applied")
)

# The rules' reasons that say the patient is outside the ACR topic altogether (no invasive
# breast cancer), and the one that says the record was read only in part.
OUTSIDE_TOPIC = frozenset({"no-invasive-breast-cancer", "dcis-only", "family-history-only"})


def rating_action(
    finding: Finding, knowledge: Knowledge, where: Presentation, consult_id: str
) -> Action | None:
    """The verdict written onto the order (Argonaut CDS Hooks for PAMA): an ``update`` of the
    draft ServiceRequest as received, with the rating extensions added and nothing else changed.

    Only orders the criteria speak about are rated: an imaging study the ACR topic (Imaging of
    Invasive Breast Cancer, Variant 10) rates in ``mappings/acr-variant-10.json``, for a
    patient with invasive breast cancer, whose record was read in full. Every other order
    (chest X-ray, head CT, mammography, a study whose codes disagree, a patient without
    invasive breast cancer, a partial record) gets no action: the guide forbids rating on
    insufficient evidence, and a rating there would rewrite orders the criteria never judged.
    ``not-appropriate`` (with ``auc-applied`` = the criteria) for a Variant 10 warning, also
    when a snooze, the site or the client kept its card from being shown;
    ``no-criteria-apply`` (no ``auc-applied``: none was applied) when the topic's patient has
    a reason that takes the order out of Variant 10 (a symptom, a work-up, active treatment).
    The PAMA ``qcdsm-consulted`` G-code is left out: this service is not a CMS-qualified CDS
    mechanism and the PAMA programme is rescinded.
    """
    draft = where.drafts.get(finding.order.reference)
    if draft is None or finding.study not in knowledge.guideline.studies:
        return None
    if finding.reason in OUTSIDE_TOPIC or finding.reason == "partial-record":
        return None
    judged = finding.before_policy or finding.verdict
    rating = "not-appropriate" if judged == "warn" else "no-criteria-apply"
    resource = dict(draft)  # shallow: only "extension" is replaced, nothing nested is changed
    existing = resource.get("extension")
    extensions: list[Any] = [
        e
        for e in (existing if isinstance(existing, list) else [])
        if isinstance(e, dict) and e.get("url") not in _OURS
    ]
    extensions += [
        {
            "url": PAMA + "pama-rating",
            "valueCodeableConcept": {"coding": [{"system": PAMA_RATING_SYSTEM, "code": rating}]},
        },
        {"url": PAMA + "pama-rating-consult-id", "valueUri": consult_id},
    ]
    if rating == "not-appropriate":
        extensions.append(
            {"url": PAMA + "pama-rating-auc-applied", "valueUri": knowledge.guideline.guideline.url}
        )
    resource["extension"] = extensions
    order = finding.order.text or finding.order.reference
    return Action(
        type="update",
        description=knowledge.wording.card.rating_action.format(rating=rating, order=order),
        resource=resource,
    )
