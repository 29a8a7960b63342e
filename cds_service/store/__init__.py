"""The service's own database: audit of every hook call, feedback, snoozes, seen JWT ids.

SQLAlchemy 2 with SQLite by default (a file in the instance folder, WAL mode) or PostgreSQL
(``CDS_DATABASE_URL=postgresql+psycopg://...``). The schema is managed by Alembic
(``cds_service/migrations``), applied at start-up or by ``cds-service db upgrade``. Patient ids
are never stored: a keyed hash (HMAC-SHA256 with ``CDS_AUDIT_KEY``) lets repeat alerts and
snoozes be correlated without them. Nothing here imports Flask.

Modules: ``schema`` (tables and the values written to them), ``queries`` (the Store),
``audit`` (the background audit writer), ``engine`` (engine options, SQLite pragmas),
``opening`` (URL, audit key, migrations, ``open_store``), ``unavailable`` (database failures).
"""

from .opening import MIGRATIONS, audit_key, database_url, default_url, open_store, upgrade
from .queries import Store, now
from .schema import (
    AuditedVerdict,
    Base,
    Call,
    Feedback,
    FeedbackItem,
    SeenToken,
    Snooze,
    VerdictRow,
    column_length,
)
from .unavailable import StoreUnavailable

__all__ = [
    "MIGRATIONS",
    "AuditedVerdict",
    "Base",
    "Call",
    "Feedback",
    "FeedbackItem",
    "SeenToken",
    "Snooze",
    "Store",
    "StoreUnavailable",
    "VerdictRow",
    "audit_key",
    "column_length",
    "database_url",
    "default_url",
    "now",
    "open_store",
    "upgrade",
]
