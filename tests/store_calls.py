"""What the store tests send and write: requests, feedback items, weeks of audit rows; and
the store of an app."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, timedelta
from typing import Any

from flask import Flask

from cds_service.store import FeedbackItem, Store, VerdictRow

from .conftest import FIXTURES, load_json

NS = "org.example.breast-surveillance-cds"  # cards' extension key
SELECT = "/cds-services/breast-surveillance-order-select"
SIGN = "/cds-services/breast-surveillance-order-sign"
FEEDBACK = "/cds-services/breast-surveillance-order-select/feedback"


def seed(hook_instance: str | None = None) -> dict[str, Any]:
    body: dict[str, Any] = load_json(FIXTURES / "requests" / "seed-pet-ct.json")
    body["hookInstance"] = hook_instance or str(uuid.uuid4())
    return body


def store_of(app: Flask) -> Store:
    store: Store = app.extensions["cds_service"].store
    return store


def override(card: str, code: str = "shared-decision", **extra: Any) -> dict[str, Any]:
    return {
        "card": card,
        "outcome": "overridden",
        "outcomeTimestamp": "2026-11-25T10:05:31Z",
        "overrideReason": {
            "reason": {"code": code, "system": "https://x/CodeSystem/override-reason", **extra},
            "userComment": "discussed with patient",
        },
    }


def synthetic_weeks(target: Store, weeks: int, start: date) -> list[str]:
    """Audit rows as the service writes them, one week apart: week i has i % 5 + 1 warnings,
    one info card every other week; the first warning of each week is overridden."""
    overridden = []
    for week in range(weeks):
        moment = datetime.combine(start + timedelta(weeks=week), datetime.min.time(), UTC)
        rows = []
        for i in range(week % 5 + 1):
            card = str(uuid.uuid4())
            rows.append(
                VerdictRow(
                    f"ServiceRequest/w{week}-{i}", "ct-chest", "warn", "variant-10", "warning", card
                )
            )
            if i == 0:
                overridden.append(card)
        if week % 2:
            rows.append(
                VerdictRow(
                    f"ServiceRequest/i{week}",
                    "pet-ct",
                    "info-targeted",
                    "symptom:cough",
                    "info",
                    str(uuid.uuid4()),
                )
            )
        target.record_call(
            received_at=moment + timedelta(hours=10),
            service_id="breast-surveillance-order-select",
            hook="order-select",
            hook_instance=str(uuid.uuid4()),
            patient_id=f"p{week}",
            latency_ms=10.0 + week,
            silent=False,
            data_origin="patient:prefetch",
            verdicts=rows,
        )
    target.flush()
    target.add_feedback(
        "breast-surveillance-order-select",
        [
            FeedbackItem(
                card, "overridden", None, (), "shared-decision", None, "Shared decision", None, ()
            )
            for card in overridden
        ],
    )
    return overridden
