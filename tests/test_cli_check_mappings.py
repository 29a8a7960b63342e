"""``cds-service check-mappings``: the mapping files validated, the bad one named."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from cds_service.cli import main

from .conftest import MAPPINGS


def test_check_mappings_ok(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check-mappings"]) == 0
    assert capsys.readouterr().out.startswith("ok: ")


def test_check_mappings_names_the_bad_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    copy = tmp_path / "mappings"
    shutil.copytree(MAPPINGS, copy)
    (copy / "labs.json").write_text('{"group": "labs"}')
    assert main(["check-mappings", str(copy)]) == 1
    assert "labs.json" in capsys.readouterr().err
