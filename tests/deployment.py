"""Read the image's recipe and the compose files the way Docker would, for tests without Docker;
start ``cds-service serve`` as a subprocess (``Server``) and talk HTTP to it.

``Dockerfile`` gives the final stage's ENV, USER (and the uid its ``useradd`` gives that user),
WORKDIR, EXPOSE, VOLUME, HEALTHCHECK and CMD; ``docker-compose.yml`` is plain YAML. Only the
forms this repository uses are read (exec-form CMD and HEALTHCHECK, ``ENV K=V ...``); anything
else fails the test that reads it rather than being guessed.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]


@dataclass
class Image:
    env: dict[str, str] = field(default_factory=dict)
    user: str | None = None
    uid: int | None = None
    workdir: str | None = None
    expose: list[int] = field(default_factory=list)
    volumes: list[str] = field(default_factory=list)
    healthcheck: list[str] = field(default_factory=list)
    cmd: list[str] = field(default_factory=list)
    run: list[str] = field(default_factory=list)  # the RUN lines of the final stage


def _instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    lines: list[str] = []
    pending = ""
    for raw in text.splitlines():
        stripped = raw.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        lines.append(pending + stripped)
        pending = ""
    found = []
    for line in lines:
        word, _, rest = line.partition(" ")
        found.append((word.upper(), rest.strip()))
    return found


def read_dockerfile(path: Path = ROOT / "Dockerfile") -> Image:
    instructions = _instructions(path.read_text(encoding="utf-8"))
    last_from = max(i for i, (word, _) in enumerate(instructions) if word == "FROM")
    image = Image()
    for word, rest in instructions[last_from + 1 :]:
        if word == "ENV":
            for item in shlex.split(rest):
                name, sep, value = item.partition("=")
                assert sep, f"ENV {rest!r}: only the K=V form is read"
                image.env[name] = value
        elif word == "USER":
            image.user = rest
        elif word == "WORKDIR":
            image.workdir = rest
        elif word == "EXPOSE":
            image.expose += [int(p.split("/")[0]) for p in rest.split()]
        elif word == "VOLUME":
            image.volumes += json.loads(rest) if rest.startswith("[") else rest.split()
        elif word == "CMD":
            image.cmd = json.loads(rest)  # exec form only
        elif word == "HEALTHCHECK":
            command = rest[rest.index("CMD ") + 4 :]
            image.healthcheck = json.loads(command)
        elif word == "RUN":
            image.run.append(rest)
    if image.user is not None:
        for run in image.run:
            match = re.search(rf"useradd\b[^&;]*--uid\s+(\d+)[^&;]*\b{image.user}\b", run)
            if match:
                image.uid = int(match.group(1))
    return image


def read_compose(path: Path = ROOT / "docker-compose.yml") -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load(path.read_text(encoding="utf-8"))
    return document


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def wait_for(url: str, alive: Any, timeout: float = 60.0) -> int:
    """Poll ``url`` until it answers (any status); ``alive()`` False stops early."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                status: int = response.status
                return status
        except urllib.error.HTTPError as exc:
            exc.close()
            return exc.code
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            if not alive() or time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def _decoded(body: bytes) -> Any:
    """JSON when the body is JSON, else its text (Prometheus), None when empty."""
    if not body.strip():
        return None
    try:
        return json.loads(body)
    except ValueError:
        return body.decode("utf-8", errors="replace")


def get_json(url: str, headers: dict[str, str] | None = None) -> tuple[int, Any]:
    return _exchange(urllib.request.Request(url, headers=headers or {}))


def post_json(url: str, body: Any, headers: dict[str, str] | None = None) -> tuple[int, Any]:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    request = urllib.request.Request(
        url, data=data, headers={"Content-Type": "application/json", **(headers or {})}
    )
    return _exchange(request)


def _exchange(request: urllib.request.Request) -> tuple[int, Any]:
    """The status and decoded body of the answer, errors (4xx, 5xx) included."""
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, _decoded(response.read())
    except urllib.error.HTTPError as exc:
        with exc:
            body = exc.read()
        return exc.code, _decoded(body)


@dataclass
class Server:
    """A server process on a free port, in its own session, its output in a log file."""

    proc: subprocess.Popen[bytes]
    port: int
    log: Path

    @classmethod
    def start(
        cls, command: Callable[[int], list[str]], env: dict[str, str], cwd: Path, logs: Path
    ) -> Server:
        """Run ``command(port)`` in ``cwd``; its output goes to ``logs/serve-PORT.log``."""
        port = free_port()
        log = logs / f"serve-{port}.log"
        with open(log, "wb") as sink:
            proc = subprocess.Popen(
                command(port),
                env=env,
                cwd=cwd,
                stdout=sink,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        return cls(proc, port, log)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def alive(self) -> bool:
        return self.proc.poll() is None

    def output(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace")

    def stop(self) -> str:
        """SIGTERM (a graceful stop), SIGKILL to the session after 30 s; the output."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        return self.output()
