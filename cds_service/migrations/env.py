"""Alembic environment: runs the migrations of cds_service.store on the configured URL."""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine, text

from cds_service.store import Base

config = context.config
target_metadata = Base.metadata
ADVISORY_LOCK = 7_310_010  # any constant: serialises migrators across machines on PostgreSQL


def run_migrations_online() -> None:
    url = config.get_main_option("sqlalchemy.url")
    assert url is not None
    engine = create_engine(url)
    with engine.connect() as connection:
        if connection.dialect.name == "postgresql":
            connection.execute(text("SELECT pg_advisory_lock(:key)"), {"key": ADVISORY_LOCK})
            connection.commit()
        try:
            context.configure(
                connection=connection,
                target_metadata=target_metadata,
                render_as_batch=connection.dialect.name == "sqlite",
            )
            with context.begin_transaction():
                context.run_migrations()
        finally:
            if connection.dialect.name == "postgresql":
                connection.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": ADVISORY_LOCK})
                connection.commit()
    engine.dispose()


if context.is_offline_mode():
    raise SystemExit("offline SQL generation is not supported; run cds-service db upgrade")
run_migrations_online()
