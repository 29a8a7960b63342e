"""``cds-service load-fixtures``: an empty folder refused; a FHIR server that never answers
given up on, saying so."""

from __future__ import annotations

from pathlib import Path

import pytest

from cds_service.cli import main

from .deployment import free_port


def test_load_fixtures_refuses_an_empty_folder(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["load-fixtures", "--fhir", "http://127.0.0.1:9/fhir", "--fixtures", str(tmp_path)])
    assert "no patient Bundles" in capsys.readouterr().err


def test_load_fixtures_waits_then_gives_up_clearly(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["load-fixtures", "--fhir", f"http://127.0.0.1:{free_port()}/fhir", "--wait", "0.1"]
    assert main(argv) == 1
    assert "did not answer within 0.1 s" in capsys.readouterr().err
