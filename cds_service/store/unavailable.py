"""How a database failure is reported: StoreUnavailable, and what is logged of an error."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any, NoReturn

logger = logging.getLogger("cds_service.store")


class StoreUnavailable(Exception):
    """The database did not answer in time or failed; the caller decides what that means
    (snooze unknown, 503 for feedback and for the JWT replay check)."""


def unavailable(what: str, fields: Mapping[str, Any], cause: BaseException) -> NoReturn:
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
