"""The Store: sessions and the few reads and writes the service makes (audit, feedback,
snoozes, repeat suppression, JWT replay), each bounded in time."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from contextlib import contextmanager
from datetime import UTC, date, datetime, timedelta
from typing import Any, TypeVar

from sqlalchemy import delete, func, insert, select
from sqlalchemy import exc as sa_exc
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

from ..memo import Memo
from .audit import AuditWriter, SqliteCallInserter
from .engine import create_store_engine
from .schema import AuditedVerdict, Base, Call, Feedback, FeedbackItem, SeenToken, Snooze
from .unavailable import StoreUnavailable, error_fields, unavailable

SNOOZE_CACHE_SECONDS = 10.0
# Bounds on the store so that a database that is down or frozen never holds a call: the hook's
# reads (snoozes, the JWT replay check) wait this long, feedback writes FEEDBACK_SECONDS; the
# work runs on a small pool of threads, so a frozen connection holds a thread, not the caller.
READ_SECONDS = 1.0
FEEDBACK_SECONDS = 5.0
T = TypeVar("T")


def now() -> datetime:
    return datetime.now(UTC)


class Store:
    """Engine, sessions and the few queries the service makes."""

    def __init__(self, url: str, audit_key: bytes) -> None:
        self.url = url
        self.audit_key = audit_key
        self.writer = AuditWriter(self.write_calls)
        self._snooze_cache: Memo[tuple[str, date], tuple[float, frozenset[str]]] = Memo(10_000)
        self.engine: Engine = create_store_engine(url)
        self._sqlite_calls: SqliteCallInserter | None = None
        if self.engine.dialect.name == "sqlite":
            self._sqlite_calls = SqliteCallInserter(self.engine)
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
            unavailable(what, {"error": "timeout", "seconds": seconds}, exc)
        except sa_exc.SQLAlchemyError as exc:
            unavailable(what, error_fields(exc), exc)

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
        from the cursor on SQLite (``SqliteCallInserter``), else from one multi-row INSERT ...
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
                connection.execute(insert(AuditedVerdict), verdicts)

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
                select(AuditedVerdict.study, Call.patient_hash, Call.received_at)
                .join(Call, AuditedVerdict.call_id == Call.id)
                .where(AuditedVerdict.card_uuid == card_uuid)
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
                select(AuditedVerdict.order_ref, AuditedVerdict.study)
                .join(Call, AuditedVerdict.call_id == Call.id)
                .where(
                    Call.patient_hash == self.patient_hash(patient_id),
                    Call.hook == "order-select",
                    Call.received_at >= since,
                    Call.silent.is_(False),
                    AuditedVerdict.verdict == "warn",
                    AuditedVerdict.card_uuid.is_not(None),
                    AuditedVerdict.order_ref.in_([ref[:200] for ref in order_refs]),
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
