"""The only module doing HTTP to a FHIR server: reads and searches on ``fhirServer``.

One ``FhirClient`` serves one hook call: it carries the call's bearer token (sent to the FHIR
base and nowhere else, never logged) and the call's deadline, so that every connect and read
timeout fits inside the one time budget of the call. The queries go through urllib3 directly
(one pool per worker, ``fhir_pool``): a call without prefetch makes seven of them, and
requests' own layer cost about 0.6 ms of CPU each on top of urllib3's (bench/, ``--fhir``).
"""

from __future__ import annotations

import heapq
import http.client
import itertools
import logging
import os
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import SplitResult, urljoin, urlsplit

import certifi
import orjson
import requests
import urllib3

from .. import metrics
from ..errors import PrefetchUnavailable
from .prefetch import next_link

logger = logging.getLogger("cds_service.fhir_client")

RETRY_STATUSES = frozenset({429, 503})
MIN_ATTEMPT_SECONDS = 0.05


class FhirUnavailable(PrefetchUnavailable):
    """A query to the EHR's FHIR server failed (timeout, refused, HTTP error, not FHIR)."""


class QueryFailed(FhirUnavailable):
    """The query for one prefetch key failed: ``key`` names the key as data; the message says
    why (for the log only: the client learns which keys are missing, never why)."""

    def __init__(self, key: str, reason: str) -> None:
        super().__init__(f"{key}: {reason}", [f"prefetch.{key}"])
        self.key = key


class _Watchdog:
    """Makes the FHIR budget a wall clock. urllib3's read timeout bounds each wait for a byte,
    so a server trickling one byte a second would hold a query (and a thread of the call's
    pool) for as long as it likes. One thread per process shuts down the socket of any query
    still reading at its call's deadline; the reader then fails at once."""

    def __init__(self) -> None:
        self.cond = threading.Condition()
        self.heap: list[tuple[float, int, list[Any]]] = []
        self.order = itertools.count()
        self.pid = -1

    @contextmanager
    def guard(self, sock: Any, deadline: float) -> Iterator[None]:
        entry: list[Any] = [sock]
        with self.cond:
            if self.pid != os.getpid():  # threads do not survive gunicorn's fork
                self.heap = []
                threading.Thread(target=self._run, name="fhir-deadline", daemon=True).start()
                self.pid = os.getpid()
            heapq.heappush(self.heap, (deadline, next(self.order), entry))
            self.cond.notify()
        try:
            yield
        finally:
            entry[0] = None  # done in time: nothing to shut down

    def _run(self) -> None:
        while True:
            with self.cond:
                while not self.heap:
                    self.cond.wait()
                deadline, _, entry = self.heap[0]
                wait = deadline - time.monotonic()
                if wait > 0:
                    self.cond.wait(wait)
                    continue
                heapq.heappop(self.heap)
                sock = entry[0]
            if sock is not None:
                try:
                    # The plain socket's shutdown (an SSLSocket's own would drop its TLS state
                    # under the reading thread): the reader sees the connection end.
                    socket.socket.shutdown(sock, socket.SHUT_RDWR)
                except OSError:
                    pass


_WATCHDOG = _Watchdog()
_CURRENT = threading.local()  # the deadline of the query this thread is making


class _Guarded:
    """A urllib3 connection whose response (headers and body, read in ``getresponse``) must
    arrive by the deadline of the query on this thread."""

    sock: Any

    def getresponse(self, *args: Any, **kwargs: Any) -> Any:
        deadline = getattr(_CURRENT, "deadline", None)
        if deadline is None or self.sock is None:
            return super().getresponse(*args, **kwargs)  # type: ignore[misc]
        with _WATCHDOG.guard(self.sock, deadline):
            return super().getresponse(*args, **kwargs)  # type: ignore[misc]


class _HTTPConnection(_Guarded, urllib3.connection.HTTPConnection):
    pass


class _HTTPSConnection(_Guarded, urllib3.connection.HTTPSConnection):
    pass


class _HTTPPool(urllib3.HTTPConnectionPool):
    ConnectionCls = _HTTPConnection


class _HTTPSPool(urllib3.HTTPSConnectionPool):
    ConnectionCls = _HTTPSConnection


def fhir_pool() -> urllib3.PoolManager:
    """The connections of one worker's FHIR queries (kept alive, up to 32 per server): TLS
    verified against certifi's bundle, as requests does; no proxy from the environment; no
    retries or redirects of urllib3's own (``FhirClient.get`` decides); every response must
    be complete by its call's deadline (``_Watchdog``)."""
    pool = urllib3.PoolManager(num_pools=8, maxsize=32, retries=False, ca_certs=certifi.where())
    pool.pool_classes_by_scheme = {"http": _HTTPPool, "https": _HTTPSPool}
    return pool


class FhirClient:
    """Reads from one FHIR base with the call's bearer token; the pool is the caller's."""

    def __init__(
        self,
        http: urllib3.PoolManager,
        base: str,
        token: str | None,
        deadline: float,
        max_pages: int = 10,
        connect_timeout: float = 2.0,
    ) -> None:
        self.http = http
        self.base = base.rstrip("/") + "/"
        parts = urlsplit(self.base)
        self._origin, self._path = _origin(parts), parts.path  # the path ends with "/"
        self.deadline = deadline  # time.monotonic() value by which every query must be done
        self.max_pages = max_pages
        self.connect_timeout = connect_timeout
        self.headers = {"Accept": "application/fhir+json"}
        if token:
            self.headers["Authorization"] = f"Bearer {token}"

    def _remaining(self) -> float:
        return self.deadline - time.monotonic()

    def inside_base(self, url: str) -> bool:
        """Same scheme, host and port as the base, and a path that is the base's or under it.
        HAPI's paging links address the base itself (``{base}?_getpages=...``). A URL that
        parsers could read differently (userinfo, backslashes, spaces or control characters)
        is never inside: urllib3 must connect to the host this check saw."""
        if not unambiguous_url(url):
            return False
        there = urlsplit(url)
        return _origin(there) == self._origin and (
            there.path == self._path.rstrip("/") or there.path.startswith(self._path)
        )

    def get(self, url: str, what: str) -> Any:
        """One query (a read, or a page of a search) for prefetch key ``what``; counted and
        timed in the metrics."""
        started = time.perf_counter()
        result = "error"
        try:
            found = self._get(url, what)
            result = "ok"
            return found
        finally:
            metrics.FHIR_QUERIES.labels(what, result).inc()
            metrics.FHIR_LATENCY.labels(what).observe(time.perf_counter() - started)

    def _get(self, url: str, what: str) -> Any:
        absolute = urljoin(self.base, url)
        if not plain_characters(url) or not self.inside_base(absolute):
            # A next link that leaves the FHIR base would take the token elsewhere.
            raise QueryFailed(what, "the FHIR server linked outside its base")
        for attempt in (1, 2):
            remaining = self._remaining()
            if remaining < MIN_ATTEMPT_SECONDS:
                raise QueryFailed(what, "no time left in the FHIR budget")
            _CURRENT.deadline = self.deadline
            try:
                response = self.http.request(
                    "GET",
                    absolute,
                    headers=self.headers,
                    timeout=urllib3.Timeout(
                        connect=min(self.connect_timeout, remaining), read=remaining
                    ),
                    redirect=False,
                    retries=False,
                )
            except (urllib3.exceptions.HTTPError, http.client.HTTPException, OSError) as exc:
                raise QueryFailed(
                    what, f"FHIR server not reachable in time ({type(exc).__name__})"
                ) from exc
            finally:
                _CURRENT.deadline = None
            if response.status in RETRY_STATUSES and attempt == 1:
                pause = _retry_after(response.headers.get("Retry-After"))
                if self._remaining() - pause > MIN_ATTEMPT_SECONDS * 2:
                    time.sleep(pause)
                    continue
            break
        if response.status == 404 and "?" not in url:
            return None  # a read of a resource that does not exist: no data
        if response.status >= 300:
            raise QueryFailed(what, f"FHIR server answered HTTP {response.status}")
        try:
            return orjson.loads(response.data)
        except orjson.JSONDecodeError as exc:
            raise QueryFailed(what, "FHIR server sent no JSON") from exc

    def fetch(self, url: str, what: str) -> tuple[list[Any], bool]:
        """A read or a search, and whether it is complete: searches follow ``next`` links up
        to ``max_pages``; one more page left unread makes the result partial (False)."""
        pages = [self.get(url, what)]
        page = pages[0]
        while isinstance(page, dict) and page.get("resourceType") == "Bundle":
            link = next_link(page)
            if link is None:
                break
            if len(pages) >= self.max_pages:
                return pages, False
            page = self.get(link, what)
            pages.append(page)
        return pages, True


_DEFAULT_PORTS = {"http": 80, "https": 443}


def plain_characters(url: str) -> bool:
    """No backslash, whitespace or control character (``urlsplit`` silently drops tabs and
    newlines; other parsers do not)."""
    return not any(c == "\\" or c.isspace() or ord(c) < 0x20 or ord(c) == 0x7F for c in url)


def unambiguous_url(url: str) -> bool:
    """An absolute http(s) URL that every parser reads the same way: no userinfo (``@`` in the
    authority), no backslash, whitespace or control character anywhere, a host and a numeric
    port if any. ``http://127.0.0.1:1\\@127.0.0.1:2/`` is read as host 127.0.0.1:2 by
    ``urlsplit`` but connected to 127.0.0.1:1 by urllib3."""
    if not plain_characters(url):
        return False
    parts = urlsplit(url)
    if parts.scheme.lower() not in _DEFAULT_PORTS or "@" in parts.netloc or not parts.hostname:
        return False
    try:
        parts.port  # noqa: B018 - raises on a port that is not a number
    except ValueError:
        return False
    return True


def _origin(parts: SplitResult) -> tuple[str, str, int | None]:
    scheme = parts.scheme.lower()
    try:
        port = parts.port or _DEFAULT_PORTS.get(scheme)
    except ValueError:  # a port that is not a number: matches nothing
        return ("", "", None)
    return scheme, (parts.hostname or "").lower(), port


def _retry_after(header: str | None) -> float:
    """A short pause before the one retry: Retry-After seconds, capped at half a second."""
    try:
        return min(max(float(header or 0.1), 0.0), 0.5)
    except ValueError:
        return 0.1


def put_resources(
    session: requests.Session,
    base: str,
    resources: list[dict[str, Any]],
    token: str | None = None,
    timeout: float = 30.0,
) -> int:
    """Create or update resources with their own ids (``PUT Type/id``), Patients first, as one
    batch Bundle (HAPI, Medplum and most servers accept it). Returns the number written."""
    headers = {"Accept": "application/fhir+json", "Content-Type": "application/fhir+json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    ordered = sorted(resources, key=lambda r: r.get("resourceType") != "Patient")
    patients = [r for r in ordered if r.get("resourceType") == "Patient"]
    others = [r for r in ordered if r.get("resourceType") != "Patient"]
    written = 0
    for group in (patients, others):
        if not group:
            continue
        bundle = {
            "resourceType": "Bundle",
            "type": "batch",
            "entry": [
                {
                    "resource": r,
                    "request": {"method": "PUT", "url": f"{r['resourceType']}/{r['id']}"},
                }
                for r in group
            ],
        }
        response = session.post(
            base.rstrip("/"), data=orjson.dumps(bundle), headers=headers, timeout=timeout
        )
        if response.status_code >= 300:
            raise FhirUnavailable(f"FHIR server answered HTTP {response.status_code} to the batch")
        result = orjson.loads(response.content)
        failed = [
            e
            for e in result.get("entry", [])
            if not str(e.get("response", {}).get("status", "")).startswith("2")
        ]
        if failed:
            raise FhirUnavailable(f"{len(failed)} of {len(group)} resources were refused")
        written += len(group)
    return written
