"""Faults the tests inject: a TCP proxy in front of PostgreSQL that can freeze (stop forwarding,
connections stay open) or go down (close every connection, refuse new ones), a SQLite write
lock held by another connection, and a run-with-a-bound helper. Loopback only; every thread
stops by itself and every socket is closed on ``close()``."""

from __future__ import annotations

import select
import socket
import sqlite3
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

from sqlalchemy.engine import make_url

T = TypeVar("T")


class TcpProxy:
    """Forwards 127.0.0.1:<port> to a target port, until told to freeze or go down."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.mode = "pass"
        self.stopping = threading.Event()
        self.lock = threading.Lock()
        self.sockets: list[socket.socket] = []
        self.threads: list[threading.Thread] = []
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(64)
        self.listener.settimeout(0.1)
        self.port: int = self.listener.getsockname()[1]
        self._start(self._accept)

    def _start(self, target: Callable[..., None], *args: Any) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True)
        with self.lock:
            self.threads.append(thread)
        thread.start()

    def _accept(self) -> None:
        while not self.stopping.is_set():
            try:
                client, _ = self.listener.accept()
            except (TimeoutError, OSError):
                continue
            if self.mode == "down":
                client.close()
                continue
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target_port), timeout=5)
            except OSError:
                client.close()
                continue
            with self.lock:
                self.sockets += [client, upstream]
            self._start(self._pump, client, upstream)
            self._start(self._pump, upstream, client)

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        while not self.stopping.is_set():
            if self.mode == "freeze":
                self.stopping.wait(0.05)  # hold the bytes: the peer waits on its socket
                continue
            if self.mode == "down":
                break
            try:
                ready, _, _ = select.select([source], [], [], 0.1)
                if not ready:
                    continue
                data = source.recv(65536)
                if not data:
                    break
                sink.sendall(data)
            except OSError:
                break
        for sock in (source, sink):
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def freeze(self) -> None:
        self.mode = "freeze"

    def down(self) -> None:
        self.mode = "down"

    def restore(self) -> None:
        self.mode = "pass"

    def close(self) -> None:
        self.stopping.set()
        with self.lock:
            threads = list(self.threads)
        for thread in threads:
            thread.join(timeout=10)
        self.listener.close()
        with self.lock:
            for sock in self.sockets:
                sock.close()


class StoreFault:
    """A database the tests can freeze, take down and restore: PostgreSQL through a TcpProxy;
    SQLite through a write lock held by another connection (its readers are never blocked:
    WAL), released on restore."""

    def __init__(self, db_url: str) -> None:
        self.db_url = db_url
        self.proxy: TcpProxy | None = None
        self.holder: sqlite3.Connection | None = None
        url = make_url(db_url)
        if url.get_backend_name() == "postgresql":
            self.proxy = TcpProxy(url.port or 5432)
            self.url = url.set(port=self.proxy.port).render_as_string(hide_password=False)
        else:
            self.url = db_url

    def freeze(self) -> None:
        if self.proxy is not None:
            self.proxy.freeze()
            return
        path = self.db_url.split("///", 1)[1]
        self.holder = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self.holder.execute("BEGIN IMMEDIATE")

    def down(self) -> None:
        if self.proxy is not None:
            self.proxy.down()
        else:
            self.freeze()

    def restore(self) -> None:
        if self.proxy is not None:
            self.proxy.restore()
        if self.holder is not None:
            self.holder.execute("ROLLBACK")
            self.holder.close()
            self.holder = None

    def close(self) -> None:
        self.restore()
        if self.proxy is not None:
            self.proxy.close()


@contextmanager
def store_fault(db_url: str) -> Iterator[StoreFault]:
    fault = StoreFault(db_url)
    try:
        yield fault
    finally:
        fault.close()


def within(seconds: float, work: Callable[[], T]) -> T:
    """``work()`` in a thread; fails the test (instead of hanging it) when it has not returned
    after ``seconds`` (a generous functional bound, not a performance target)."""
    result: list[T] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            result.append(work())
        except BaseException as exc:  # noqa: BLE001 - handed to the test thread
            errors.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(seconds)
    if thread.is_alive():
        raise AssertionError(f"no answer within {seconds} s: the call hung")
    if errors:
        raise errors[0]
    return result[0]


class TricklingServer:
    """An HTTP server that answers every request one byte at a time (a header line that never
    ends quickly), for at most ``seconds``; it records the connections the client gave up on
    before the trickle ended."""

    HTTP = b"HTTP/1.1 200 OK\r\nContent-Type: application/fhir+json\r\nX-Slow: "
    # A TLS record and ServerHello header announcing 16 KiB, then its bytes one at a time.
    TLS = b"\x16\x03\x03\x40\x00\x02\x00\x3f\xfc\x03\x03"

    def __init__(self, interval: float = 0.05, seconds: float = 30.0, head: bytes = HTTP) -> None:
        self.head = head
        self.interval = interval
        self.seconds = seconds
        self.stopping = threading.Event()
        self.lock = threading.Lock()
        self.connections = 0
        self.abandoned = 0
        self.sockets: list[socket.socket] = []
        self.threads: list[threading.Thread] = []
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(128)
        self.listener.settimeout(0.1)
        self.base = f"http://127.0.0.1:{self.listener.getsockname()[1]}/fhir"
        self._start(self._accept)

    def _start(self, target: Callable[..., None], *args: Any) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True)
        with self.lock:
            self.threads.append(thread)
        thread.start()

    def _accept(self) -> None:
        while not self.stopping.is_set():
            try:
                conn, _ = self.listener.accept()
            except (TimeoutError, OSError):
                continue
            with self.lock:
                self.sockets.append(conn)
                self.connections += 1
            self._start(self._trickle, conn)

    def _trickle(self, conn: socket.socket) -> None:
        conn.settimeout(1.0)
        try:
            conn.recv(65536)  # the request (small GETs)
        except OSError:
            return
        head = self.head
        steps = int(self.seconds / self.interval)
        for index in range(steps):
            if self.stopping.wait(self.interval):
                return
            try:
                conn.sendall(head[index : index + 1] if index < len(head) else b"\x00")
            except OSError:
                with self.lock:
                    self.abandoned += 1
                return
            if index > 2:
                try:  # a peer that shut the connection down reads as EOF here
                    conn.setblocking(False)
                    if conn.recv(1) == b"":
                        with self.lock:
                            self.abandoned += 1
                        return
                except (BlockingIOError, InterruptedError):
                    pass
                except OSError:
                    with self.lock:
                        self.abandoned += 1
                    return
                finally:
                    conn.settimeout(1.0)

    def close(self) -> None:
        self.stopping.set()
        with self.lock:
            threads = list(self.threads)
        for thread in threads:
            thread.join(timeout=10)
        self.listener.close()
        with self.lock:
            for sock in self.sockets:
                sock.close()


class HealthyFhirServer:
    """Answers every read with a Patient and every search with an empty Bundle, at once."""

    def __init__(self) -> None:
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's name)
                if "?" in self.path:
                    body = b'{"resourceType": "Bundle", "type": "searchset", "entry": []}'
                else:
                    body = (
                        b'{"resourceType": "Patient", "id": "seed-patient", '
                        b'"gender": "female", "birthDate": "1968-03-14"}'
                    )
                self.send_response(200)
                self.send_header("Content-Type", "application/fhir+json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()
        self.base = f"http://127.0.0.1:{self.httpd.server_address[1]}/fhir"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=10)


class SlowClients:
    """``count`` connections that trickle a request and never finish it: half send their
    headers a byte at a time, half send complete headers and then a body a byte at a time.
    A thread keeps them trickling (one byte each per ``interval``) until ``close()``, for at
    most ``seconds``."""

    def __init__(
        self, port: int, path: str, count: int = 50, interval: float = 0.5, seconds: float = 120
    ) -> None:
        self.sockets: list[socket.socket] = []
        self.stopping = threading.Event()
        self.opened = 0
        try:
            for index in range(count):
                sock = socket.create_connection(("127.0.0.1", port), timeout=5)
                self.sockets.append(sock)
                if index % 2:
                    sock.sendall(
                        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                        "Content-Type: application/json\r\nContent-Length: 100000\r\n\r\n{".encode()
                    )
                else:
                    sock.sendall(f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ".encode())
                self.opened += 1
        except OSError:
            for sock in self.sockets:
                sock.close()
            raise
        self.steps = int(seconds / interval)
        self.interval = interval
        self.thread = threading.Thread(target=self._trickle, daemon=True)
        self.thread.start()

    def _trickle(self) -> None:
        for _ in range(self.steps):
            if self.stopping.wait(self.interval):
                return
            for sock in self.sockets:
                try:
                    sock.send(b" ")
                except OSError:
                    pass

    def still_open(self) -> int:
        """Connections the server has not closed (a closed one reads as EOF or an error)."""
        count = 0
        for sock in self.sockets:
            try:
                sock.setblocking(False)
                data = sock.recv(1, socket.MSG_PEEK)
                count += data != b""
            except (BlockingIOError, InterruptedError):
                count += 1
            except OSError:
                pass
            finally:
                sock.setblocking(True)
        return count

    def close(self) -> None:
        self.stopping.set()
        self.thread.join(timeout=10)
        for sock in self.sockets:
            sock.close()
