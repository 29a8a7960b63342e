"""How ``cds-service serve`` holds slow and hostile clients: an asynchronous front in every
gunicorn worker that reads each whole request before the app sees it.

Gunicorn's sync workers read requests themselves, so as many clients as workers trickling
headers or a body (slowloris) stopped the service. Here each worker runs uvicorn's event loop
(``uvicorn-worker``): headers and body are read as they come, at the cost of a socket, and only
a complete request, at most ``max_body`` bytes (413 past it, chunked or not), is handed to the
WSGI app (a2wsgi's ``WSGIMiddleware``, which runs it on ``threads`` threads per worker: one
by default, one call at a time, as the sync workers did). A malformed request (a bad chunk,
a bad header) is answered 400 by the HTTP parser. The WSGI app itself,
``cds_service:create_app()``, is unchanged.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import orjson
from a2wsgi import WSGIMiddleware
from uvicorn_worker import UvicornWorker

from .errors import operation_outcome

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


class BufferedFront:
    """ASGI in front of the WSGI app: the whole body first, bounded, then the app."""

    def __init__(self, wsgi_app: Any, max_body: int, threads: int = 1) -> None:
        self.wsgi_app = wsgi_app
        self.max_body = max_body
        self.threads = threads
        self._bridge: WSGIMiddleware | None = None
        self._pid = -1

    @property
    def app(self) -> WSGIMiddleware:
        """The WSGI bridge of this process (its threads are the worker's, after the fork)."""
        if self._bridge is None or self._pid != os.getpid():
            self._bridge = WSGIMiddleware(self.wsgi_app, workers=self.threads)
            self._pid = os.getpid()
        return self._bridge

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return  # no lifespan or websocket (the worker runs with lifespan off)
        declared = _header(scope, b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_body:
            await _too_large(send)
            return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return  # the client left before its request was complete
            body = message.get("body", b"")
            size += len(body)
            if size > self.max_body:
                await _too_large(send)
                return
            chunks.append(body)
            if not message.get("more_body"):
                break
        whole = b"".join(chunks)
        sent = False
        # The body is whole now: the app sees its length, not how it was framed (a chunked
        # body has no Content-Length, and WSGI apps read none without it).
        scope = dict(scope)
        scope["headers"] = [
            (key, value)
            for key, value in scope.get("headers", ())
            if key.lower() not in (b"content-length", b"transfer-encoding")
        ] + [(b"content-length", str(len(whole)).encode())]

        async def replay() -> Message:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": whole, "more_body": False}
            return await receive()  # after the body: the client's disconnect, if any

        started = time.perf_counter()
        status = 0
        sent_bytes = 0

        async def counted(message: Message) -> None:
            nonlocal status, sent_bytes
            if message["type"] == "http.response.start":
                status = int(message.get("status", 0))
            elif message["type"] == "http.response.body":
                sent_bytes += len(message.get("body", b""))
            await send(message)

        try:
            await self.app(scope, replay, counted)  # type: ignore[arg-type]
        finally:
            _access(scope, status, sent_bytes, time.perf_counter() - started)


_ACCESS = logging.getLogger("gunicorn.access")


def _access(scope: Scope, status: int, sent: int, seconds: float) -> None:
    """One access line through gunicorn's access log (JSON, ``logs.GunicornJsonFormatter``),
    when ``--access-log`` gave it a handler: method, path without query string, status, bytes,
    duration. uvicorn's own access line is off (it has no duration)."""
    if not _ACCESS.handlers:
        return
    client = scope.get("client") or ("", 0)
    _ACCESS.info(
        "request",
        {
            "m": scope.get("method"),
            "U": scope.get("path"),
            "s": status,
            "B": sent,
            "D": int(seconds * 1_000_000),
            "h": client[0],
        },
    )


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key.lower() == name:
            return bytes(value).decode("latin-1").strip()
    return None


async def _too_large(send: Send) -> None:
    body = orjson.dumps(
        operation_outcome("too-costly", "Request body is larger than this service accepts")
    )
    await send(
        {
            "type": "http.response.start",
            "status": 413,
            "headers": [
                (b"content-type", b"application/fhir+json"),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


class Worker(UvicornWorker):  # type: ignore[misc]
    """uvicorn's gunicorn worker, with no server banner, no lifespan, and X-Forwarded-*
    left to the app (``CDS_TRUST_PROXY``)."""

    CONFIG_KWARGS = {
        "loop": "asyncio",
        "http": "httptools",
        "lifespan": "off",
        "server_header": False,
        "proxy_headers": False,
        "access_log": False,  # the front writes its own (with the duration)
    }
