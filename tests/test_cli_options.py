"""A bad date on the command line is one line on stderr and exit status 2."""

from __future__ import annotations

import pytest

from cds_service.cli import main

from .conftest import FIXTURES

SEED = FIXTURES / "requests" / "seed-pet-ct.json"


@pytest.mark.parametrize(
    ("argv", "option"),
    [
        (["evaluate", str(SEED), "--today", "25/11/2026"], "--today"),
        (["evaluate", str(SEED), "--today", "2026-13-01"], "--today"),
        (["report", "--since", "yesterday"], "--since"),
    ],
)
def test_a_bad_date_is_one_line_and_exit_2(
    argv: list[str], option: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert f"{option}: " in err and "YYYY-MM-DD" in err
