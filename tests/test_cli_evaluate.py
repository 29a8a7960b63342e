"""``cds-service evaluate``: a request file's response, ``--explain``, a bad request, and no
audit unless asked."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy import create_engine, func, select

from cds_service.cli import main
from cds_service.store import Call

from .conftest import FIXTURES, TODAY, add_condition

SEED = FIXTURES / "requests" / "seed-pet-ct.json"


def test_evaluate_prints_the_seed_warning(capsys: pytest.CaptureFixture[str]) -> None:
    request = FIXTURES / "requests" / "seed-pet-ct.json"
    assert main(["evaluate", str(request), "--today", "2026-11-25"]) == 0
    body = json.loads(capsys.readouterr().out)
    assert [card["indicator"] for card in body["cards"]] == ["warning"]


def test_evaluate_explain_names_the_records_and_phrases(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--explain: each verdict's rule and the record, code or phrase behind it (to stderr,
    so that stdout stays the JSON response)."""
    body = json.loads((FIXTURES / "requests" / "seed-pet-ct.json").read_text())
    add_condition(body, "Breast ca with bony mets")
    request = tmp_path / "request.json"
    request.write_text(json.dumps(body))
    assert main(["evaluate", str(request), "--today", "2026-11-25", "--explain"]) == 0
    out, err = capsys.readouterr()
    assert json.loads(out)["cards"] == []
    assert "pet-ct -> silent (metastatic-disease)" in err
    assert "Condition/local-mets 2026-10-01 metastatic-disease" in err
    assert "[words 'METS']" in err
    # Without --explain, nothing but the response.
    assert main(["evaluate", str(request), "--today", "2026-11-25"]) == 0
    assert "explain:" not in capsys.readouterr().err


def test_evaluate_reports_a_bad_request(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"hook": "order-sign", "context": {}}))
    assert main(["evaluate", str(bad)]) == 1
    assert json.loads(capsys.readouterr().out)["resourceType"] == "OperationOutcome"


def test_evaluate_does_not_audit_unless_asked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    database = tmp_path / "pilot.sqlite3"
    monkeypatch.setenv("CDS_DATABASE_URL", f"sqlite:///{database}")
    monkeypatch.setenv("CDS_INSTANCE_DIR", str(tmp_path))

    def audited() -> int:
        engine = create_engine(f"sqlite:///{database}")
        try:
            with engine.connect() as connection:
                return int(connection.execute(select(func.count()).select_from(Call)).scalar_one())
        finally:
            engine.dispose()

    assert main(["db", "upgrade"]) == 0
    assert main(["evaluate", str(SEED), "--today", TODAY]) == 0
    assert audited() == 0
    assert main(["evaluate", str(SEED), "--today", TODAY, "--audit"]) == 0
    assert audited() == 1
    capsys.readouterr()
