"""Writing the audit off the hook's path: the background batch writer, and SQLite's fast
insert of call rows."""

from __future__ import annotations

import atexit
import logging
import os
import queue
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import Engine

from .. import metrics
from .schema import Call
from .unavailable import error_fields

logger = logging.getLogger("cds_service.store")
# How long the audit thread gathers calls before writing them in one transaction (a reader,
# ``flush()``, cuts the wait short). A commit costs ~1.4 ms of CPU on SQLite whatever its size.
AUDIT_BATCH_SECONDS = 0.2
# Audit: calls queued per process at most (beyond: counted as lost and logged), the pause
# between attempts at a batch the database refused (doubling up to the cap).
AUDIT_QUEUE = 10_000
AUDIT_RETRY_SECONDS = (0.2, 5.0)


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


class SqliteCallInserter:
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
