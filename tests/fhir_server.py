"""A real FHIR R4 server for tests: starts ``tests/fhir_server/server.mjs`` (Medplum's FHIR router
over an in-memory store) as a subprocess and talks to its ``/_control`` endpoints.

    reason = node_available()          # None, or why the server cannot run here
    with FhirTestServer(load=[path]) as server:
        requests.get(f"{server.base}/Patient/123")

Needs ``node`` on PATH and ``npm ci`` run once in ``tests/fhir_server``.
"""

from __future__ import annotations

import queue
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterable
from pathlib import Path
from types import TracebackType
from typing import IO, Any
from urllib.parse import urlsplit

import requests

SERVER_DIR = Path(__file__).resolve().parent / "fhir_server"
SCRIPT = SERVER_DIR / "server.mjs"
READY_TIMEOUT = 60.0


def node_available() -> str | None:
    """Why the test FHIR server cannot run on this machine, or None when it can."""
    if shutil.which("node") is None:
        return "no `node` on PATH: the test FHIR server needs Node.js 20.19+"
    if not (SERVER_DIR / "node_modules" / "@medplum" / "fhir-router").is_dir():
        return f"run `npm ci` in {SERVER_DIR.relative_to(SERVER_DIR.parents[1])}"
    return None


def _pump(stream: IO[str], lines: queue.Queue[str | None]) -> None:
    """Reads the server's stdout so its pipe never fills; the first line is READY."""
    for line in stream:
        lines.put(line)
    lines.put(None)


class FhirTestServer:
    """One server process with its own in-memory store; ``stop()`` (or ``with``) ends it."""

    def __init__(
        self,
        load: Iterable[str | Path] = (),
        base: str = "/fhir",
        extra_args: Iterable[str] = (),
        timeout: float = READY_TIMEOUT,
    ) -> None:
        reason = node_available()
        if reason is not None:
            raise RuntimeError(reason)
        args = ["node", str(SCRIPT), "--port", "0", "--base", base, *extra_args]
        for path in load:
            args += ["--load", str(path)]
        # stderr goes to a file, not a pipe: nobody reads it while the tests run, but a start-up
        # failure is reported with its text.
        self._stderr = tempfile.TemporaryFile(mode="w+", encoding="utf-8")
        self._process = subprocess.Popen(
            args,
            cwd=SERVER_DIR,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            text=True,
            encoding="utf-8",
        )
        assert self._process.stdout is not None
        lines: queue.Queue[str | None] = queue.Queue()
        self._reader = threading.Thread(
            target=_pump, args=(self._process.stdout, lines), daemon=True
        )
        self._reader.start()
        self.session = requests.Session()
        try:
            self.base = self._wait_ready(lines, timeout)
        except BaseException:
            self.stop()
            raise
        # The control endpoints live at the server root, outside the FHIR base.
        parts = urlsplit(self.base)
        self.root = f"{parts.scheme}://{parts.netloc}"

    @property
    def pid(self) -> int:
        """The server's process id (the bench reads its CPU time)."""
        return self._process.pid

    def _wait_ready(self, lines: queue.Queue[str | None], timeout: float) -> str:
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            try:
                line = lines.get(timeout=max(remaining, 0.01))
            except queue.Empty:
                raise RuntimeError(
                    f"FHIR test server not ready after {timeout:.0f} s: {self._stderr_text()}"
                ) from None
            if line is None:
                self._process.wait(timeout=5)
                raise RuntimeError(
                    f"FHIR test server exited with {self._process.returncode}: "
                    f"{self._stderr_text()}"
                )
            if line.startswith("READY "):
                return line.split(" ", 1)[1].strip().rstrip("/")

    def _stderr_text(self) -> str:
        self._stderr.seek(0)
        return self._stderr.read()[-4000:].strip() or "(no output on stderr)"

    def load(self, bundle: dict[str, Any]) -> dict[str, Any]:
        """Posts a Bundle (collection, batch or transaction) to the base; ids stay those of the
        bundle. Returns the batch-response; raises if the request or any entry failed."""
        response = self.session.post(
            self.base, json=bundle, headers={"Content-Type": "application/fhir+json"}
        )
        response.raise_for_status()
        result: dict[str, Any] = response.json()
        failed = [
            e for e in result.get("entry", []) if not str(e["response"]["status"]).startswith("2")
        ]
        if failed:
            raise RuntimeError(f"{len(failed)} bundle entries failed, e.g. {failed[0]['response']}")
        return result

    def require_token(self, token: str | None) -> None:
        """From now on every FHIR request needs ``Authorization: Bearer <token>``; None: no more."""
        self._control("POST", "require-token", {"token": token})

    def requests(self) -> list[dict[str, Any]]:
        """The last 200 FHIR requests seen: ``{method, url, authorization, status}``."""
        log: list[dict[str, Any]] = self._control("GET", "requests")
        return log

    def set_latency(self, ms: float) -> None:
        """From now on every FHIR answer waits ``ms`` milliseconds (a timer in the server: no
        CPU spent, other requests served meanwhile), as a remote FHIR server would; 0: none."""
        self._control("POST", "latency", {"ms": ms})

    def reset_log(self) -> None:
        self._control("POST", "reset-log", {})

    def _control(self, method: str, name: str, body: dict[str, Any] | None = None) -> Any:
        response = self.session.request(method, f"{self.root}/_control/{name}", json=body)
        response.raise_for_status()
        return response.json()

    def stop(self) -> None:
        if self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        self._reader.join(timeout=5)
        if self._process.stdout is not None:
            self._process.stdout.close()
        self._stderr.close()
        self.session.close()

    def __enter__(self) -> FhirTestServer:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
