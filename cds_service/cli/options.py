"""Command-line values shared by several commands: dates, and the error a bad value raises."""

from __future__ import annotations

from datetime import date


class BadOption(ValueError):
    """A command-line value the command cannot use: one line on stderr, exit status 2."""


def iso_date(option: str, value: str | None) -> date | None:
    """The date an option gives, or BadOption with one line saying what is wrong."""
    if value is None:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise BadOption(
            f"{option}: {value!r} is not a date (YYYY-MM-DD, e.g. 2026-11-25)"
        ) from None
