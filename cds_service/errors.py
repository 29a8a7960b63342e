"""Errors and their FHIR OperationOutcome bodies.

    CdsServiceError              base: status_code, issue_code, to_operation_outcome()
     ├─ InvalidRequest           400  "invalid"     malformed JSON, request or FHIR resource
     ├─ Unauthorized             401  "login"
     ├─ UnknownService           404  "not-found"
     ├─ PayloadTooLarge          413  "too-costly"
     ├─ PrefetchUnavailable      412  "processing"  required data neither prefetched nor retrievable
     └─ ServiceUnavailable       503  "transient"   the store did not answer in time (feedback,
                                                    the JWT replay check); the client may retry
    MappingError                 start-up only: a mapping file is invalid (never reaches HTTP)

Every non-2xx body is an OperationOutcome; 500s carry a generic text and the exception is
logged, never sent to the caller.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from flask import Flask, Response, g, jsonify, request
from werkzeug.exceptions import HTTPException

logger = logging.getLogger("cds_service")


# The OperationOutcome issue code of each HTTP status the service answers with.
ISSUE_CODES = {
    400: "invalid",
    401: "login",
    403: "forbidden",
    404: "not-found",
    405: "not-supported",
    406: "not-supported",
    412: "processing",
    413: "too-costly",
    415: "not-supported",
    429: "throttled",
    503: "transient",
}


class CdsServiceError(Exception):
    """An error the caller is told about: a status (the class's) and an OperationOutcome."""

    status_code = 500
    issue_code = "exception"

    def __init_subclass__(cls, *, status: int | None = None) -> None:
        """``class X(CdsServiceError, status=400)``: the status and its issue code."""
        super().__init_subclass__()
        if status is not None:
            cls.status_code = status
            cls.issue_code = ISSUE_CODES[status]

    def __init__(self, diagnostics: str, expression: Sequence[str] = ()) -> None:
        super().__init__(diagnostics)
        self.diagnostics = diagnostics
        self.expression = tuple(expression)

    def to_operation_outcome(self) -> dict[str, Any]:
        return operation_outcome(self.issue_code, self.diagnostics, self.expression)


class InvalidRequest(CdsServiceError, status=400):
    """Malformed JSON, request or FHIR resource."""


class Unauthorized(CdsServiceError, status=401):
    """No valid client JWT (the caller is told no more)."""


class UnknownService(CdsServiceError, status=404):
    """No CDS service with that id."""


class PrefetchUnavailable(CdsServiceError, status=412):
    """Required data neither prefetched nor retrievable."""


class PayloadTooLarge(CdsServiceError, status=413):
    """The request body is larger than the service accepts."""


class ServiceUnavailable(CdsServiceError, status=503):
    """The store did not answer in time (feedback, the JWT replay check); retry later."""


class MappingError(Exception):
    """A mapping file is invalid: names the file and the entry."""

    def __init__(self, path: str, location: str, message: str) -> None:
        super().__init__(f"{path}: {location}: {message}" if location else f"{path}: {message}")
        self.path = path
        self.location = location
        self.message = message


def first_problem(exc: Any) -> tuple[str, str]:
    """(dotted location, message) of a pydantic ValidationError's first error, for start-up
    messages that name the entry at fault."""
    first = exc.errors()[0]
    return ".".join(str(part) for part in first["loc"]), str(first["msg"])


def operation_outcome(
    code: str, diagnostics: str, expression: Sequence[str] = (), severity: str = "error"
) -> dict[str, Any]:
    issue: dict[str, Any] = {"severity": severity, "code": code, "diagnostics": diagnostics}
    if expression:
        issue["expression"] = list(expression)
    return {"resourceType": "OperationOutcome", "issue": [issue]}


def _respond(status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> Response:
    response = jsonify(body)
    response.status_code = status
    response.mimetype = "application/fhir+json"
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response


def register_error_handlers(app: Flask) -> None:
    @app.errorhandler(CdsServiceError)
    def _cds_error(exc: CdsServiceError) -> Response:
        if exc.status_code == 401:
            # Bare 401: no reason is given to the caller (CDS Hooks security best practice).
            return _respond(
                401,
                operation_outcome("login", "Unauthorized"),
                {"WWW-Authenticate": "Bearer"},
            )
        return _respond(exc.status_code, exc.to_operation_outcome())

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException) -> Response:
        status = exc.code or 500
        code = ISSUE_CODES.get(status, "exception")
        headers: dict[str, str] = {}
        valid_methods = getattr(exc, "valid_methods", None)
        if status == 405 and valid_methods:
            headers["Allow"] = ", ".join(valid_methods)
        text = exc.description or exc.name
        if status == 413:
            text = "Request body is larger than this service accepts"
        return _respond(status, operation_outcome(code, f"{exc.name}: {text}"), headers)

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception) -> Response:
        original = getattr(exc, "original_exception", None) or exc
        # A database error is logged by class and code only: its message and traceback can
        # carry SQL parameters (a clinician's comment).
        database = type(original).__module__.startswith(("sqlalchemy", "psycopg", "sqlite3"))
        logger.error(
            "unhandled error",
            exc_info=None if database else original,
            extra={
                "fields": {
                    "event": "error",
                    "method": request.method,
                    "path": request.path,
                    "hookInstance": g.get("hook_instance"),
                    "error": type(original).__name__,
                    "code": getattr(original, "code", None) if database else None,
                }
            },
        )
        return _respond(
            500, operation_outcome("exception", "Internal error; the service logged the details")
        )
