"""Structured JSON logs: one object per line, fields from ``extra={"fields": {...}}``.

Callers put only ids the service mints or receives as correlation ids (hookInstance, service
id, card uuids), rule ids and numbers into a record: never names, patient ids, prefetch bodies,
tokens or JWTs.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import orjson

# Characters JSON leaves raw that many readers (Python's splitlines, JavaScript log viewers) take
# for a line break: escaped, so that a record is always one line whatever a client sent (the
# element names of an invalid resource are the client's own keys).
_LINE_BREAKS = str.maketrans({"\x85": "\\u0085", "\u2028": "\\u2028", "\u2029": "\\u2029"})


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            entry.update(fields)
        if record.exc_info:
            entry["error"] = record.exc_info[0].__name__ if record.exc_info[0] else "error"
            entry["trace"] = self.formatException(record.exc_info)
        try:
            line = orjson.dumps(entry, default=str, option=orjson.OPT_NON_STR_KEYS).decode()
        except TypeError:  # e.g. an integer beyond 64 bits: the slower encoder takes anything
            return json.dumps(entry, default=str)  # ASCII only
        return line if line.isascii() else line.translate(_LINE_BREAKS)


def configure(level: int = logging.INFO) -> None:
    """Give the service's loggers one JSON handler on stderr (once per process)."""
    logger = logging.getLogger("cds_service")
    if any(getattr(h, "_cds_json", False) for h in logger.handlers):
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    handler._cds_json = True  # type: ignore[attr-defined]
    logger.addHandler(handler)
    logger.setLevel(level)


class GunicornJsonFormatter(JsonFormatter):
    """Gunicorn's lines in the service's shape. An access line becomes fields (method, path
    without the query string, status, bytes, duration), never the raw request line or headers."""

    def format(self, record: logging.LogRecord) -> str:
        atoms = record.args
        if record.name == "gunicorn.access" and isinstance(atoms, Mapping):
            fields = {
                "event": "access",
                "method": atoms.get("m"),
                "path": atoms.get("U"),
                "status": _int(atoms.get("s")),
                "bytes": _int(atoms.get("B")),
                "duration_ms": round((_int(atoms.get("D")) or 0) / 1000, 1),
                "remote": atoms.get("h"),
            }
            record = logging.makeLogRecord(
                {**record.__dict__, "msg": "request", "args": None, "fields": fields}
            )
        return super().format(record)


def _int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def gunicorn_logger_class() -> type:
    """gunicorn's Logger with its handlers writing JSON (imported only by ``serve``)."""
    from gunicorn.glogging import Logger

    class GunicornLogger(Logger):  # type: ignore[misc]
        def setup(self, cfg: Any) -> None:
            super().setup(cfg)
            for log in (self.error_log, self.access_log):
                for handler in log.handlers:
                    handler.setFormatter(GunicornJsonFormatter())

    return GunicornLogger
