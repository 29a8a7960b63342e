"""The service's own database: audit of every hook call, feedback, snoozes, seen JWT ids.

SQLAlchemy 2 with SQLite by default (a file in the instance folder, WAL mode) or PostgreSQL
(``CDS_DATABASE_URL=postgresql+psycopg://...``). The schema is managed by Alembic
(``cds_service/migrations``), applied at start-up or by ``cds-service db upgrade``. Patient ids
are never stored: a keyed hash (HMAC-SHA256 with ``CDS_AUDIT_KEY``) lets repeat alerts and
snoozes be correlated without them. Nothing here imports Flask.
"""

from __future__ import annotations

import atexit
import fcntl
import hashlib
import hmac
import json
import logging
import os
import queue
import secrets
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import (
    Boolean,
    Date,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    create_engine,
    delete,
    event,
    func,
    insert,
    select,
)
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Engine
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, sessionmaker

from . import metrics
from .memo import Memo

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
logger = logging.getLogger("cds_service.store")
SNOOZE_CACHE_SECONDS = 10.0
# How long the audit thread gathers calls before writing them in one transaction (a reader,
# ``flush()``, cuts the wait short). A commit costs ~1.4 ms of CPU on SQLite whatever its size.
AUDIT_BATCH_SECONDS = 0.2


class Base(DeclarativeBase):
    pass


class Call(Base):
    """One hook call (never its body, token or the patient's id)."""

    __tablename__ = "calls"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    received_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
    service_id: Mapped[str] = mapped_column(String(100))
    hook: Mapped[str] = mapped_column(String(40))
    hook_instance: Mapped[str] = mapped_column(String(100), index=True)
    patient_hash: Mapped[str | None] = mapped_column(String(64), index=True)
    latency_ms: Mapped[float] = mapped_column(Float)
    silent: Mapped[bool] = mapped_column(Boolean, default=False)
    data_origin: Mapped[str] = mapped_column(String(400), default="")


class Verdict(Base):
    """One judged order of a call: the study, what the service decided and why."""

    __tablename__ = "verdicts"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    call_id: Mapped[int] = mapped_column(ForeignKey("calls.id", ondelete="CASCADE"), index=True)
    order_ref: Mapped[str] = mapped_column(String(200))
    study: Mapped[str | None] = mapped_column(String(60), index=True)
    verdict: Mapped[str] = mapped_column(String(40))  # warn, info-..., silent, snoozed
    rule: Mapped[str] = mapped_column(String(120))
    indicator: Mapped[str | None] = mapped_column(String(20))  # of the card sent, if any
    card_uuid: Mapped[str | None] = mapped_column(String(64), unique=True)
    consult_id: Mapped[str | None] = mapped_column(String(100))
    suggestions: Mapped[str] = mapped_column(Text, default="[]")  # JSON list of uuids


class Feedback(Base):
    """One CDS Hooks feedback item, stored once per (card, outcome)."""

    __tablename__ = "feedback"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    dedup_key: Mapped[str] = mapped_column(String(200), unique=True)
    service_id: Mapped[str] = mapped_column(String(100))
    card_uuid: Mapped[str | None] = mapped_column(String(64), index=True)
    outcome: Mapped[str] = mapped_column(String(20))
    outcome_timestamp: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    accepted_suggestions: Mapped[str] = mapped_column(Text, default="[]")
    override_code: Mapped[str | None] = mapped_column(String(100))
    override_system: Mapped[str | None] = mapped_column(String(300))
    override_display: Mapped[str | None] = mapped_column(String(300))
    user_comment: Mapped[str | None] = mapped_column(Text)
    missing: Mapped[str] = mapped_column(String(300), default="")  # fields the client left out
    received_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)


class Snooze(Base):
    """No repeat warning for this patient (hash) and study until ``until``."""

    __tablename__ = "snoozes"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    patient_hash: Mapped[str] = mapped_column(String(64))
    study: Mapped[str] = mapped_column(String(60))
    until: Mapped[date] = mapped_column(Date)
    card_uuid: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    __table_args__ = (Index("ix_snoozes_patient_study", "patient_hash", "study"),)


class SeenToken(Base):
    """JWT ids already accepted (replay protection shared by every worker)."""

    __tablename__ = "seen_tokens"
    jti_key: Mapped[str] = mapped_column(String(128), primary_key=True)  # hash of iss + jti
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)


def now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class VerdictRow:
    order_ref: str
    study: str | None
    verdict: str
    rule: str
    indicator: str | None = None
    card_uuid: str | None = None
    consult_id: str | None = None
    suggestions: Sequence[str] = ()


@dataclass(frozen=True)
class FeedbackItem:
    card_uuid: str | None
    outcome: str
    outcome_timestamp: datetime | None
    accepted_suggestions: Sequence[str]
    override_code: str | None
    override_system: str | None
    override_display: str | None
    user_comment: str | None
    missing: Sequence[str]

    def dedup_key(self) -> str:
        if self.card_uuid:
            return f"{self.card_uuid}|{self.outcome}"
        # No card uuid (the sandbox dismissing a card without one): the item itself is the key.
        raw = json.dumps(
            [
                self.outcome,
                self.outcome_timestamp.isoformat() if self.outcome_timestamp else None,
                self.override_code,
                self.user_comment,
            ]
        )
        return "nocard|" + hashlib.sha256(raw.encode()).hexdigest()


class AuditWriter:
    """A per-process background thread that writes queued audit rows in batches.

    Started on first use in each process (gunicorn forks workers after the app is built, and
    threads do not survive a fork). A batch that cannot be written is logged and dropped: the
    audit must never take a hook call down with it.
    """

    def __init__(self, write: Callable[[Sequence[Mapping[str, Any]]], None]) -> None:
        self.write = write
        self.queue: queue.Queue[Mapping[str, Any]] = queue.Queue(maxsize=10_000)
        self.pid = -1
        self.lock = threading.Lock()
        self.wake = threading.Event()

    def _ensure_thread(self) -> None:
        if self.pid == os.getpid():
            return
        with self.lock:
            if self.pid != os.getpid():
                self.queue = queue.Queue(maxsize=10_000)
                self.wake = threading.Event()
                threading.Thread(target=self._run, name="audit-writer", daemon=True).start()
                self.pid = os.getpid()
                atexit.register(self.flush, 5.0)

    def submit(self, item: Mapping[str, Any]) -> None:
        self._ensure_thread()
        try:
            self.queue.put(item, timeout=1.0)
            metrics.AUDIT_QUEUE.set(self.queue.qsize())
        except queue.Full:
            metrics.AUDIT_LOST.labels("queue-full").inc()
            logger.error(
                "audit queue full: one call not audited",
                extra={"fields": {"event": "audit-dropped"}},
            )

    def flush(self, timeout: float = 10.0) -> None:
        if self.pid != os.getpid():
            return
        deadline = time.monotonic() + timeout
        while self.queue.unfinished_tasks and time.monotonic() < deadline:
            self.wake.set()  # write what is queued now, not at the end of the batch's wait
            time.sleep(0.002)

    def _run(self) -> None:
        source, wake = self.queue, self.wake
        while True:
            batch = [source.get()]
            wake.clear()  # a wake left by an earlier flush must not cut this batch short
            # Gather for a moment: one transaction for many calls costs far less than one each.
            # Wait, then take what came: waiting on the queue instead would wake this thread
            # (and take the GIL from the request thread) once per call.
            wake.wait(AUDIT_BATCH_SECONDS)
            while len(batch) < 500:
                try:
                    batch.append(source.get_nowait())
                except queue.Empty:
                    break
            try:
                self.write(batch)
            except Exception:  # noqa: BLE001 - the audit never takes the service down
                metrics.AUDIT_LOST.labels("write-failed").inc(len(batch))
                logger.exception(
                    "audit batch not written",
                    extra={"fields": {"event": "audit-error", "calls": len(batch)}},
                )
            finally:
                metrics.AUDIT_QUEUE.set(source.qsize())
                for _ in batch:
                    source.task_done()


class Store:
    """Engine, sessions and the few queries the service makes."""

    def __init__(self, url: str, audit_key: bytes) -> None:
        self.url = url
        self.audit_key = audit_key
        self.writer = AuditWriter(self.write_calls)
        self._snooze_cache: Memo[tuple[str, date], tuple[float, frozenset[str]]] = Memo(10_000)
        self.engine: Engine = create_engine(url, **_engine_options(url))
        self._sqlite_calls: _CallInserter | None = None
        if self.engine.dialect.name == "sqlite":
            event.listen(self.engine, "connect", _sqlite_pragmas)
            self._sqlite_calls = _CallInserter(self.engine)
        self.sessions = sessionmaker(self.engine, expire_on_commit=False)

    def _insert_or_skip(self, model: type[Base]) -> Any:
        """The dialect's INSERT, which has ``on_conflict_do_nothing`` (PostgreSQL, SQLite)."""
        return (pg_insert if self.engine.dialect.name == "postgresql" else sqlite_insert)(model)

    def close(self) -> None:
        """Write what is queued, then close every pooled connection (tests, CLI commands)."""
        self.flush()
        self.engine.dispose()

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A transaction that sees every audit row queued so far."""
        self.flush()
        with self.sessions.begin() as session:
            yield session

    def patient_hash(self, patient_id: str) -> str:
        return hmac.new(self.audit_key, patient_id.encode(), hashlib.sha256).hexdigest()

    # --- audit ---------------------------------------------------------------------------

    def record_call(self, **call: Any) -> None:
        """Queue one hook call's audit (written by a background thread in batches, so the
        database is not on the hook's critical path; ``flush()`` waits for it)."""
        self.writer.submit(call)

    def flush(self, timeout: float = 10.0) -> None:
        self.writer.flush(timeout)

    def write_calls(self, calls: Sequence[Mapping[str, Any]]) -> None:
        """Write queued calls and their verdicts in one transaction. The call ids come back
        from the cursor on SQLite (``_CallInserter``), else from one multi-row INSERT ...
        RETURNING in parameter order; the verdicts then go in one executemany."""
        rows = [
            {
                "received_at": call["received_at"],
                "service_id": call["service_id"],
                "hook": call["hook"],
                "hook_instance": call["hook_instance"],
                "patient_hash": self.patient_hash(call["patient_id"])
                if call.get("patient_id")
                else None,
                "latency_ms": call["latency_ms"],
                "silent": call["silent"],
                "data_origin": call["data_origin"][:400],
            }
            for call in calls
        ]
        with self.engine.begin() as connection:
            ids: Sequence[int]
            if self._sqlite_calls is not None:
                ids = self._sqlite_calls(connection, rows)
            else:
                ids = (
                    connection.execute(
                        insert(Call).returning(Call.id, sort_by_parameter_order=True), rows
                    )
                    .scalars()
                    .all()
                )
            verdicts = [
                {
                    "call_id": call_id,
                    "order_ref": v.order_ref[:200],
                    "study": v.study,
                    "verdict": v.verdict,
                    "rule": v.rule[:120],
                    "indicator": v.indicator,
                    "card_uuid": v.card_uuid,
                    "consult_id": v.consult_id,
                    "suggestions": json.dumps(list(v.suggestions)),
                }
                for call_id, call in zip(ids, calls, strict=True)
                for v in call["verdicts"]
            ]
            if verdicts:
                connection.execute(insert(Verdict), verdicts)

    # --- feedback ------------------------------------------------------------------------

    def add_feedback(self, service_id: str, items: Sequence[FeedbackItem]) -> int:
        """Store each item once per (card, outcome), safely under concurrency; returns how
        many were new. Snooze override reasons create a snooze for the card's patient and study."""
        new = 0
        with self.session() as s:
            for item in items:
                values = {
                    "dedup_key": item.dedup_key(),
                    "service_id": service_id,
                    "card_uuid": item.card_uuid,
                    "outcome": item.outcome,
                    "outcome_timestamp": item.outcome_timestamp,
                    "accepted_suggestions": json.dumps(list(item.accepted_suggestions)),
                    "override_code": item.override_code,
                    "override_system": item.override_system,
                    "override_display": item.override_display,
                    "user_comment": item.user_comment,
                    "missing": ",".join(item.missing),
                    "received_at": now(),
                }
                statement = self._insert_or_skip(Feedback).values(**values)
                statement = statement.on_conflict_do_nothing(index_elements=["dedup_key"])
                # RETURNING, not rowcount: psycopg 3 reports -1 for INSERT ... ON CONFLICT.
                inserted = s.execute(statement.returning(Feedback.id)).first()
                new += inserted is not None
        return new

    def snooze_from_feedback(self, card_uuid: str, days: int) -> bool:
        """Turn an override with a snooze reason into a snooze for the card's patient and study."""
        with self.session() as s:
            row = s.execute(
                select(Verdict.study, Call.patient_hash, Call.received_at)
                .join(Call, Verdict.call_id == Call.id)
                .where(Verdict.card_uuid == card_uuid)
            ).first()
            if row is None or not row.patient_hash or not row.study:
                return False
            start = row.received_at.date() if row.received_at else now().date()
            values = {
                "patient_hash": row.patient_hash,
                "study": row.study,
                "until": start + timedelta(days=days),
                "card_uuid": card_uuid,
                "created_at": now(),
            }
            s.execute(
                self._insert_or_skip(Snooze)
                .values(**values)
                .on_conflict_do_nothing(index_elements=["card_uuid"])
            )
        self._snooze_cache.clear()
        return True

    def snoozed_studies(self, patient_id: str, today: date) -> frozenset[str]:
        """Studies snoozed for this patient. Cached per process for SNOOZE_CACHE_SECONDS (a
        snooze set through another worker takes effect within that time; through this one, at
        once)."""
        key = (self.patient_hash(patient_id), today)
        cached = self._snooze_cache.get(key)
        if cached is not None and cached[0] > time.monotonic():
            return cached[1]
        with self.engine.connect() as connection:
            rows = connection.execute(
                select(Snooze.study).where(Snooze.patient_hash == key[0], Snooze.until >= today)
            ).scalars()
            found = frozenset(rows)
        self._snooze_cache.remember(key, (time.monotonic() + SNOOZE_CACHE_SECONDS, found))
        return found

    # --- JWT replay ----------------------------------------------------------------------

    def remember_token(self, iss: str, jti: str, expires_at: datetime) -> bool:
        """True the first time this (iss, jti) is seen; False for a replay (any worker)."""
        key = hashlib.sha256(f"{iss}\n{jti}".encode()).hexdigest()
        with self.engine.begin() as s:  # no flush of the audit queue: this is the hot path
            s.execute(delete(SeenToken).where(SeenToken.expires_at < now()))
            inserted = s.execute(
                self._insert_or_skip(SeenToken)
                .values(jti_key=key, expires_at=expires_at)
                .on_conflict_do_nothing(index_elements=["jti_key"])
                .returning(SeenToken.jti_key)  # rowcount is -1 here on psycopg 3 (PostgreSQL)
            ).first()
            return inserted is not None

    def count(self, model: type[Base]) -> int:
        with self.session() as s:
            return int(s.execute(select(func.count()).select_from(model)).scalar_one())


class _CallInserter:
    """Audit call rows into SQLite, each id read back from the cursor.

    SQLAlchemy cannot return the ids of a multi-row SQLite INSERT in parameter order, so it
    inserts one row per statement, through its full execution path (~0.1 ms a row, in the
    background thread that shares the interpreter with the hook calls). This runs the same
    statement on the driver's cursor, with the column types' own converters (so the stored
    values are those SQLAlchemy writes and reads back), in the caller's transaction.
    """

    def __init__(self, engine: Engine) -> None:
        columns = [c for c in Call.__table__.columns if c.name != "id"]
        self.names = [c.name for c in columns]
        # The dialect's own type (SQLite's DATETIME writes "YYYY-MM-DD HH:MM:SS.ffffff"; the
        # generic DateTime has no converter and sqlite3 would write isoformat with an offset).
        self.convert = [
            c.type.dialect_impl(engine.dialect).bind_processor(engine.dialect) for c in columns
        ]
        self.sql = (
            f"INSERT INTO {Call.__tablename__} ({', '.join(self.names)}) "
            f"VALUES ({', '.join('?' for _ in columns)})"
        )

    def __call__(self, connection: Any, rows: Sequence[Mapping[str, Any]]) -> list[int]:
        cursor = connection.connection.cursor()
        ids = []
        try:
            for row in rows:
                values = [
                    row[name] if convert is None else convert(row[name])
                    for name, convert in zip(self.names, self.convert, strict=True)
                ]
                cursor.execute(self.sql, values)
                ids.append(cursor.lastrowid)
        finally:
            cursor.close()
        return ids


def _engine_options(url: str) -> dict[str, Any]:
    if url.startswith("sqlite"):
        return {"connect_args": {"timeout": 30, "check_same_thread": False}}
    return {"pool_pre_ping": True, "pool_size": 5, "max_overflow": 10}


def _sqlite_pragmas(connection: Any, _record: Any) -> None:
    cursor = connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


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
