"""``cds-service db upgrade`` and ``cds-service report``: the commands on the audit database."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from ..config import Settings, load_settings
from .options import iso_date


def _settings_and_instance() -> tuple[Settings, Path]:
    """The settings, and the instance folder the app uses (Flask's unless CDS_INSTANCE_DIR)."""
    from flask import Flask

    settings = load_settings()
    return settings, Path(settings.instance_dir or Flask("cds_service").instance_path)


def _db(args: argparse.Namespace) -> int:
    from ..store import database_url, upgrade

    settings, instance = _settings_and_instance()
    upgrade(database_url(settings, instance), instance)
    print("database schema is up to date")
    return 0


def _report(args: argparse.Namespace) -> int:
    from ..report import build_report, render_html, render_text
    from ..store import open_store

    since = iso_date("--since", args.since)
    until = iso_date("--until", args.until)
    settings, instance = _settings_and_instance()
    store = open_store(settings, instance, migrate=True)
    try:
        report = build_report(store, since, until)
    finally:
        store.close()
    if args.html:
        Path(args.html).write_text(render_html(report), encoding="utf-8")
    if args.json:
        print(json.dumps(report, indent=2))
    elif not args.html:
        print(render_text(report))
    return 0


def register(sub: Any) -> None:
    """Add ``db`` and ``report`` to the parser."""
    db = sub.add_parser("db", help="database schema (Alembic migrations)")
    db.add_argument("action", choices=["upgrade"])
    db.set_defaults(func=_db)
    report = sub.add_parser(
        "report", help="the pilot's report: calls, cards, feedback, override reasons, weekly chart"
    )
    report.add_argument("--since", help="calls from this date (YYYY-MM-DD)")
    report.add_argument("--until", help="calls up to this date, inclusive (YYYY-MM-DD)")
    report.add_argument("--json", action="store_true", help="machine-readable output")
    report.add_argument("--html", metavar="FILE", help="write a self-contained HTML page")
    report.set_defaults(func=_report)
