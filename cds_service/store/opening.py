"""Opening the service's store from its settings: the database URL, the audit key, the Alembic
upgrade, and ``open_store``, the one way the app and the CLI build a Store."""

from __future__ import annotations

import fcntl
import os
import secrets
from pathlib import Path

from ..config import Settings
from .queries import Store

MIGRATIONS = Path(__file__).resolve().parent.parent / "migrations"


def default_url(instance_dir: Path) -> str:
    instance_dir.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{instance_dir / 'cds.sqlite3'}"


def audit_key(configured: str | None, instance_dir: Path) -> bytes:
    """The HMAC key for patient hashes: CDS_AUDIT_KEY, else a random key kept in the instance
    folder (created once, readable by the owner only)."""
    if configured:
        return configured.encode()
    path = instance_dir / "audit.key"
    instance_dir.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_bytes().strip()
    with os.fdopen(fd, "w") as handle:
        handle.write(secrets.token_hex(32))
    return path.read_bytes().strip()


def upgrade(url: str, lock_dir: Path | None = None) -> None:
    """Apply the Alembic migrations up to head; several workers may call it at once."""
    from alembic import command
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    config.attributes["configure_logger"] = False
    if lock_dir is None:
        command.upgrade(config, "head")
        return
    lock_dir.mkdir(parents=True, exist_ok=True)
    with open(lock_dir / "migrate.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one migrator at a time on this machine
        command.upgrade(config, "head")


def database_url(settings: Settings, instance_dir: Path) -> str:
    """CDS_DATABASE_URL, else a SQLite file in the instance folder."""
    return settings.database_url or default_url(instance_dir)


def open_store(settings: Settings, instance_dir: Path, *, migrate: bool) -> Store:
    """The store the settings name, its schema first brought up to date when ``migrate``."""
    url = database_url(settings, instance_dir)
    if migrate:
        upgrade(url, instance_dir)
    return Store(url, audit_key(settings.audit_key, instance_dir))
