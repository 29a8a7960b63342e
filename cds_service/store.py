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
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any, NoReturn, TypeVar

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
from sqlalchemy import exc as sa_exc
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
# Bounds on the store so that a database that is down or frozen never holds a call: the hook's
# reads (snoozes, the JWT replay check) wait this long, feedback writes FEEDBACK_SECONDS; the
# work runs on a small pool of threads, so a frozen connection holds a thread, not the caller.
READ_SECONDS = 1.0
FEEDBACK_SECONDS = 5.0
# PostgreSQL: connect and statement timeouts; SQLite: its busy timeout.
CONNECT_SECONDS = 2
STATEMENT_MS = 5000
SQLITE_BUSY_SECONDS = 5.0
# Audit: calls queued per process at most (beyond: counted as lost and logged), the pause
# between attempts at a batch the database refused (doubling up to the cap).
AUDIT_QUEUE = 10_000
AUDIT_RETRY_SECONDS = (0.2, 5.0)
T = TypeVar("T")


class StoreUnavailable(Exception):
    """The database did not answer in time or failed; the caller decides what that means
    (snooze unknown, 503 for feedback and for the JWT replay check)."""


def _unavailable(what: str, fields: Mapping[str, Any], cause: BaseException) -> NoReturn:
    logger.warning(
        "store unavailable: %s",
        what,
        extra={"fields": {"event": "store-unavailable", "what": what, **fields}},
    )
    raise StoreUnavailable(what) from cause


def error_fields(exc: BaseException) -> dict[str, Any]:
    """What is logged of a database error: its class and codes, never its message (which
    can hold SQL parameters such as a clinician's comment)."""
    original = getattr(exc, "orig", None)
    return {
        "error": type(exc).__name__,
        "code": getattr(exc, "code", None),
        "driver_error": type(original).__name__ if original is not None else None,
        "sqlstate": getattr(original, "sqlstate", None),
    }


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
    # What decided a verdict that is not a warning: the record's type and the code or our
    # phrase that named the concept ("Condition words 'METASTA'"); never the chart's words.
    evidence: Mapped[str | None] = mapped_column(String(200))


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


def column_length(column: Any) -> int:
    """The declared length of a String column (what PostgreSQL enforces and SQLite does not)."""
    length: int = column.property.columns[0].type.length
    return length


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
    evidence: str | None = None


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
    threads do not survive a fork). The hook call never waits for it: a full queue counts the
    call as lost (logged, ``lost``). A batch the database refuses for being down or busy is
    retried, with growing pauses, until it is written; while it waits, new calls queue (up to
    AUDIT_QUEUE). A batch refused for its data is written row by row, and a row that still
    fails is logged and counted as lost, never silently dropped.
    """

    def __init__(self, write: Callable[[Sequence[Mapping[str, Any]]], None]) -> None:
        self.write = write
        self.queue: queue.Queue[Mapping[str, Any]] = queue.Queue(maxsize=AUDIT_QUEUE)
        self.pid = -1
        self.lock = threading.Lock()
        self.wake = threading.Event()
        self.lost = 0  # calls acknowledged to the client whose audit row will never be written
        self.writing_since: float | None = None  # monotonic start of the batch in hand

    def _ensure_thread(self) -> None:
        if self.pid == os.getpid():
            return
        with self.lock:
            if self.pid != os.getpid():
                self.queue = queue.Queue(maxsize=AUDIT_QUEUE)
                self.wake = threading.Event()
                self.lost = 0
                threading.Thread(target=self._run, name="audit-writer", daemon=True).start()
                self.pid = os.getpid()
                atexit.register(self._at_exit)

    def depth(self) -> int:
        """Calls queued or in the batch being written (or retried) in this process."""
        return self.queue.unfinished_tasks if self.pid == os.getpid() else 0

    def waiting(self) -> float:
        """Seconds the batch in hand has been waiting for the database (0: none)."""
        since = self.writing_since
        return 0.0 if since is None or self.pid != os.getpid() else time.monotonic() - since

    def submit(self, item: Mapping[str, Any]) -> None:
        self._ensure_thread()
        try:
            self.queue.put_nowait(item)
            metrics.AUDIT_QUEUE.set(self.queue.qsize())
        except queue.Full:
            self._lose(1, "audit queue full")

    def _lose(self, count: int, why: str, **fields: Any) -> None:
        self.lost += count
        reason = "queue-full" if "full" in why else "exit" if "exiting" in why else "write-failed"
        metrics.AUDIT_LOST.labels(reason).inc(count)
        logger.error(
            "%s: %d call(s) not audited",
            why,
            count,
            extra={"fields": {"event": "audit-lost", "calls": count, "lost": self.lost, **fields}},
        )

    def _at_exit(self) -> None:
        self.flush(5.0)
        left = self.depth()
        if left:
            self._lose(left, "process exiting with audit queued")

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
                self._write_until_done(batch)
            finally:
                metrics.AUDIT_QUEUE.set(source.qsize())
                for _ in batch:
                    source.task_done()

    def _write_until_done(self, batch: list[Mapping[str, Any]]) -> None:
        self.writing_since = time.monotonic()
        try:
            self._retry(batch)
        finally:
            self.writing_since = None

    def _retry(self, batch: list[Mapping[str, Any]]) -> None:
        pause = AUDIT_RETRY_SECONDS[0]
        while True:
            try:
                self.write(batch)
                return
            except (sa_exc.OperationalError, sa_exc.InterfaceError, sa_exc.TimeoutError) as exc:
                # Down, unreachable or busy: the same batch again later.
                logger.warning(
                    "audit batch not written; will retry",
                    extra={
                        "fields": {
                            "event": "audit-retry",
                            "calls": len(batch),
                            "queued": self.depth(),
                            **error_fields(exc),
                        }
                    },
                )
            except Exception as exc:  # noqa: BLE001 - a row the database refuses: one by one
                self._write_one_by_one(batch, exc)
                return
            time.sleep(pause)
            pause = min(pause * 2, AUDIT_RETRY_SECONDS[1])

    def _write_one_by_one(self, batch: list[Mapping[str, Any]], first: BaseException) -> None:
        for item in batch:
            try:
                self.write([item])
            except Exception as exc:  # noqa: BLE001 - counted and logged, never silent
                self._lose(1, "audit row refused by the database", **error_fields(exc))
        logger.warning(
            "audit batch written row by row",
            extra={"fields": {"event": "audit-split", "calls": len(batch), **error_fields(first)}},
        )


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
            _sqlite_wal_once(self.engine)
            self._sqlite_calls = _CallInserter(self.engine)
        self.sessions = sessionmaker(self.engine, expire_on_commit=False)
        self._pool_pid = -1
        self._pool: ThreadPoolExecutor | None = None
        self._pool_lock = threading.Lock()

    def _bounded(self, seconds: float, what: str, work: Callable[[], T]) -> T:
        """``work()`` on the store's threads, waited for at most ``seconds``; a database error
        or the wait running out is StoreUnavailable (logged by class and code)."""
        with self._pool_lock:
            if self._pool is None or self._pool_pid != os.getpid():  # threads: per process
                self._pool = ThreadPoolExecutor(max_workers=8, thread_name_prefix="store")
                self._pool_pid = os.getpid()
            future = self._pool.submit(work)
        try:
            return future.result(timeout=seconds)
        except FutureTimeout as exc:
            future.cancel()  # if it has not started; else it ends when the database answers
            _unavailable(what, {"error": "timeout", "seconds": seconds}, exc)
        except sa_exc.SQLAlchemyError as exc:
            _unavailable(what, error_fields(exc), exc)

    def audit_status(self) -> dict[str, Any]:
        """This process's audit: calls not yet written (queued or in the batch in hand), how
        long that batch has waited for the database (seconds), calls lost for good."""
        writer = self.writer
        return {
            "queued": writer.depth(),
            "waiting_s": round(writer.waiting(), 1),
            "lost": writer.lost,
        }

    def _insert_or_skip(self, model: type[Base]) -> Any:
        """The dialect's INSERT, which has ``on_conflict_do_nothing`` (PostgreSQL, SQLite)."""
        return (pg_insert if self.engine.dialect.name == "postgresql" else sqlite_insert)(model)

    def close(self) -> None:
        """Write what is queued, then close every pooled connection (tests, CLI commands)."""
        self.flush()
        if self._pool is not None and self._pool_pid == os.getpid():
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None
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
                    "evidence": v.evidence[:200] if v.evidence else None,
                }
                for call_id, call in zip(ids, calls, strict=True)
                for v in call["verdicts"]
            ]
            if verdicts:
                connection.execute(insert(Verdict), verdicts)

    # --- feedback ------------------------------------------------------------------------

    def add_feedback(self, service_id: str, items: Sequence[FeedbackItem]) -> int:
        """Store each item once per (card, outcome), safely under concurrency; returns how
        many were new, or StoreUnavailable (nothing acknowledged) within FEEDBACK_SECONDS."""
        return self._bounded(
            FEEDBACK_SECONDS, "feedback", lambda: self._add_feedback(service_id, items)
        )

    def _add_feedback(self, service_id: str, items: Sequence[FeedbackItem]) -> int:
        new = 0
        with self.sessions.begin() as s:  # no wait for the audit queue
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
                statement = statement.on_conflict_do_nothing(
                    index_elements=["dedup_key"]
                ).returning(Feedback.id)
                # RETURNING, not rowcount: psycopg 3 reports -1 for INSERT ... ON CONFLICT.
                new += s.execute(statement).first() is not None
        return new

    def snooze_from_feedback(self, card_uuid: str, days: int) -> bool:
        """Turn an override with a snooze reason into a snooze for the card's patient and study
        (StoreUnavailable within FEEDBACK_SECONDS)."""
        self.flush(FEEDBACK_SECONDS / 2)  # the card's verdict row may still be queued
        return self._bounded(
            FEEDBACK_SECONDS / 2, "snooze", lambda: self._snooze_from_feedback(card_uuid, days)
        )

    def _snooze_from_feedback(self, card_uuid: str, days: int) -> bool:
        with self.sessions.begin() as s:
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

    def snoozed_studies(self, patient_id: str, today: date) -> frozenset[str] | None:
        """Studies snoozed for this patient, or None when the store cannot say within
        READ_SECONDS (the caller warns as if nothing were snoozed). Cached per process for
        SNOOZE_CACHE_SECONDS (a snooze set through another worker takes effect within that
        time; through this one, at once)."""
        key = (self.patient_hash(patient_id), today)
        cached = self._snooze_cache.get(key)
        if cached is not None and cached[0] > time.monotonic():
            return cached[1]

        def read() -> frozenset[str]:
            with self.engine.connect() as connection:
                rows = connection.execute(
                    select(Snooze.study).where(Snooze.patient_hash == key[0], Snooze.until >= today)
                ).scalars()
                return frozenset(rows)

        try:
            found = self._bounded(READ_SECONDS, "snooze look-up", read)
        except StoreUnavailable:
            return None
        self._snooze_cache.remember(key, (time.monotonic() + SNOOZE_CACHE_SECONDS, found))
        return found

    # --- repeat suppression ---------------------------------------------------------------

    def warned_at_select(
        self, patient_id: str, order_refs: Sequence[str], since: datetime
    ) -> frozenset[tuple[str, str]]:
        """(order reference, study) of the warnings shown (a card sent, not silent mode) at
        order-select for this patient (matched by its keyed hash) since ``since``. Reads what
        this process has queued too (``session`` flushes the audit first)."""
        if not order_refs:
            return frozenset()
        with self.session() as s:
            rows = s.execute(
                select(Verdict.order_ref, Verdict.study)
                .join(Call, Verdict.call_id == Call.id)
                .where(
                    Call.patient_hash == self.patient_hash(patient_id),
                    Call.hook == "order-select",
                    Call.received_at >= since,
                    Call.silent.is_(False),
                    Verdict.verdict == "warn",
                    Verdict.card_uuid.is_not(None),
                    Verdict.order_ref.in_([ref[:200] for ref in order_refs]),
                )
            ).all()
        return frozenset((row.order_ref, row.study) for row in rows if row.study)

    # --- JWT replay ----------------------------------------------------------------------

    def remember_token(self, iss: str, jti: str, expires_at: datetime) -> bool:
        """True the first time this (iss, jti) is seen; False for a replay (any worker);
        StoreUnavailable when the store cannot say within READ_SECONDS (the call is refused
        with 503: a replay cannot be ruled out)."""
        key = hashlib.sha256(f"{iss}\n{jti}".encode()).hexdigest()
        return self._bounded(
            READ_SECONDS, "JWT replay check", lambda: self._remember_token(key, expires_at)
        )

    def _remember_token(self, key: str, expires_at: datetime) -> bool:
        with self.engine.begin() as s:  # no flush of the audit queue: this is the hot path
            s.execute(delete(SeenToken).where(SeenToken.expires_at < now()))
            result = s.execute(
                self._insert_or_skip(SeenToken)
                .values(jti_key=key, expires_at=expires_at)
                .on_conflict_do_nothing(index_elements=["jti_key"])
                .returning(SeenToken.jti_key)
            )
            # A row comes back only when this insert made it (rowcount is -1 on psycopg 3).
            return result.first() is not None

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
