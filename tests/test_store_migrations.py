"""The Alembic migrations bring an empty database (SQLite, PostgreSQL) to the schema."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import create_engine, inspect, text

from cds_service.store import upgrade


def test_migrations_up_from_empty(db_url: str, tmp_path: Path) -> None:
    upgrade(db_url, tmp_path)
    upgrade(db_url, tmp_path)  # idempotent
    engine = create_engine(db_url)
    tables = set(inspect(engine).get_table_names())
    assert {"calls", "verdicts", "feedback", "snoozes", "seen_tokens", "alembic_version"} <= tables
    with engine.connect() as c:
        assert c.execute(text("SELECT version_num FROM alembic_version")).scalar_one() == "0002"
    engine.dispose()
