"""The SQLAlchemy engine: pool and timeout options per database, SQLite's pragmas and WAL."""

from __future__ import annotations

from typing import Any

from sqlalchemy import create_engine, event
from sqlalchemy.engine import Engine

# PostgreSQL: connect and statement timeouts; SQLite: its busy timeout.
CONNECT_SECONDS = 2
STATEMENT_MS = 5000
SQLITE_BUSY_SECONDS = 5.0


def _engine_options(url: str) -> dict[str, Any]:
    # hide_parameters: an error's message never carries the statement's values (a comment).
    if url.startswith("sqlite"):
        return {
            "hide_parameters": True,
            "connect_args": {"timeout": SQLITE_BUSY_SECONDS, "check_same_thread": False},
        }
    options: dict[str, Any] = {
        "hide_parameters": True,
        "pool_pre_ping": True,
        "pool_size": 5,
        "max_overflow": 10,
        "pool_timeout": CONNECT_SECONDS,
    }
    if url.startswith("postgresql"):
        options["connect_args"] = {
            "connect_timeout": CONNECT_SECONDS,
            "options": f"-c statement_timeout={STATEMENT_MS} -c lock_timeout={STATEMENT_MS}",
        }
    return options


def _sqlite_wal_once(engine: Engine) -> None:
    """WAL is a property of the database file: set once, at start-up, not on every new
    connection (changing it takes a lock; a hook call's read must not)."""
    with engine.connect() as connection:
        raw = connection.connection.dbapi_connection
        assert raw is not None
        mode = raw.execute("PRAGMA journal_mode").fetchone()
        if mode is None or str(mode[0]).lower() != "wal":
            raw.execute("PRAGMA journal_mode=WAL")


def _sqlite_pragmas(connection: Any, _record: Any) -> None:
    """Per-connection settings only, none of which writes or locks the file; the busy
    timeout first (sqlite3's ``timeout`` sets it too)."""
    cursor = connection.cursor()
    cursor.execute(f"PRAGMA busy_timeout={int(SQLITE_BUSY_SECONDS * 1000)}")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def create_store_engine(url: str) -> Engine:
    """The engine for ``url``; on SQLite with the per-connection pragmas, the file in WAL mode."""
    engine = create_engine(url, **_engine_options(url))
    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect", _sqlite_pragmas)
        _sqlite_wal_once(engine)
    return engine
