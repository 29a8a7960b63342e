"""Snoozes on real databases: an override with a snooze reason silences that study for the
patient."""

from __future__ import annotations

from sqlalchemy import select

from cds_service.report import build_report
from cds_service.store import AuditedVerdict

from .conformance import ratings
from .conftest import FIXTURES, load_json
from .databases import MakeApp
from .store_calls import FEEDBACK, SELECT, override, seed, store_of


def test_snooze_suppresses_repeat_warnings_for_that_study(make_app: MakeApp) -> None:
    app = make_app()
    client = app.test_client()
    [card] = client.post(SELECT, json=seed()).get_json()["cards"]
    response = client.post(FEEDBACK, json={"feedback": [override(card["uuid"], "snooze-3-months")]})
    assert response.status_code == 200
    again = client.post(SELECT, json=seed()).get_json()
    assert again["cards"] == []
    # The snooze hides the card; the order is still Usually Not Appropriate (the PAMA rating
    # written back is the rules' verdict, not "no-criteria-apply": found in review).
    assert set(ratings(again).values()) == {"not-appropriate"}
    with store_of(app).session() as s:
        assert "snoozed" in s.execute(select(AuditedVerdict.verdict)).scalars().all()
    other = load_json(FIXTURES / "requests" / "ct-chest-loinc-24628-0.json")
    other["context"]["patientId"] = seed()["context"]["patientId"]
    assert [c["indicator"] for c in client.post(SELECT, json=other).get_json()["cards"]] == [
        "warning"
    ]
    assert build_report(store_of(app))["snoozes"] == 1
