"""Issue 16: the image and the compose files, tested without a Docker daemon.

The wheel is built and installed (with the image's pinned constraints) into a fresh virtual
environment outside the checkout; the image's command, user and environment are read from
``Dockerfile`` and ``docker-compose.yml`` (never copied here) and run as a non-root user; then
health, readiness, a hook call, the image's healthcheck command and the database are checked.
What only Docker can show (the base image, COPY paths, volume ownership at run time, the
compose network) is not covered: README says so.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from sqlalchemy import create_engine, func, select

from cds_service.store import Call

from .conftest import FIXTURES, ROOT, TODAY
from .deployment import (
    Server,
    free_port,
    get_json,
    post_json,
    read_compose,
    read_dockerfile,
    wait_for,
)

SEED = FIXTURES / "requests" / "seed-pet-ct.json"
IMAGE = read_dockerfile()
COMPOSE = read_compose()
PRODUCTION = read_compose(ROOT / "deploy" / "compose.production.yml")


# --- who runs the command, and with which Python -------------------------------------------


def _as_user_prefix() -> list[str]:
    """The command prefix that runs a process as the image's user (its uid, no groups, no home)
    when the tests run as root; nothing when they already run as a non-root user."""
    if os.geteuid() != 0:
        return []
    uid = IMAGE.uid
    assert uid is not None, "the Dockerfile's USER has no useradd --uid in the final stage"
    if shutil.which("setpriv") is None:
        pytest.skip("running as root without setpriv: cannot run the image's command as its user")
    return ["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups", "--"]


def _python_for(prefix: list[str]) -> str:
    """A Python >= 3.11 the image's user can run (a venv's interpreter must be reachable by that
    user: a pyenv build under /root is not)."""
    candidates = ["/usr/local/bin/python3", "/usr/bin/python3", sys._base_executable]
    for candidate in candidates:
        if not Path(candidate).exists():
            continue
        probe = subprocess.run(
            [*prefix, candidate, "-c", "import sys, ensurepip; print(sys.version_info >= (3, 11))"],
            capture_output=True,
            text=True,
            check=False,
        )
        if probe.returncode == 0 and probe.stdout.strip() == "True":
            return candidate
    pytest.skip(
        f"no Python >= 3.11 with ensurepip that the image's user can run among {candidates} "
        "(.ci/run installs Debian's python3-venv)"
    )


@dataclass(frozen=True)
class Installed:
    root: Path  # outside the checkout, readable by the image's user
    bin: Path
    prefix: list[str]  # runs a command as the image's user

    def command(self, argv: list[str]) -> list[str]:
        """``argv`` as the image runs it: its program from the venv's bin (the image's PATH)."""
        program = self.bin / argv[0]
        return [*self.prefix, str(program if program.exists() else argv[0]), *argv[1:]]

    def scratch(self, name: str) -> Path:
        """A folder the image's user owns (the instance volume, the working directory)."""
        folder = self.root / name
        folder.mkdir()
        if os.geteuid() == 0 and IMAGE.uid is not None:
            os.chown(folder, IMAGE.uid, IMAGE.uid)
        return folder


@pytest.fixture(scope="module")
def installed() -> Iterator[Installed]:
    """The wheel, built from this checkout, installed with constraints.txt into a fresh venv."""
    prefix = _as_user_prefix()
    python = _python_for(prefix)
    root = Path(tempfile.mkdtemp(prefix="cds-image-"))
    try:
        root.chmod(0o755)
        wheels = root / "wheels"
        subprocess.run(
            [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "-w", str(wheels), "."],
            cwd=ROOT,
            check=True,
            capture_output=True,
        )
        [wheel] = wheels.glob("*.whl")
        venv = root / "venv"
        subprocess.run([python, "-m", "venv", str(venv)], check=True, capture_output=True)
        subprocess.run(
            [
                str(venv / "bin" / "python"),
                "-m",
                "pip",
                "install",
                "--quiet",
                "--constraint",
                str(ROOT / "constraints.txt"),
                str(wheel),
            ],
            cwd=root,
            check=True,
            capture_output=True,
        )
        yield Installed(root=root, bin=venv / "bin", prefix=prefix)
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _image_env(installed: Installed, service: dict[str, Any], **changes: str) -> dict[str, str]:
    """The container's environment: the image's PATH and ENV, then the compose service's
    environment, then what this machine must change (the database, the volume's path)."""
    env = {
        "PATH": f"{installed.bin}:/usr/local/bin:/usr/bin:/bin",
        "HOME": "/nonexistent",  # the image's user has no home
        "LANG": "C.UTF-8",
        **IMAGE.env,
        **{k: str(v) for k, v in (service.get("environment") or {}).items()},
        **changes,
    }
    return env


def _with_port(argv: list[str], port: int) -> list[str]:
    """The command with its --port value replaced (tests never use fixed ports)."""
    index = argv.index("--port")
    assert argv[index + 1] == str(IMAGE.expose[0]), "the command serves the EXPOSEd port"
    return [*argv[: index + 1], str(port), *argv[index + 2 :]]


def _start(installed: Installed, argv: list[str], env: dict[str, str], cwd: Path) -> Server:
    return Server.start(
        lambda port: installed.command(_with_port(argv, port)), env, cwd, installed.root
    )


def _run(
    installed: Installed, argv: list[str], env: dict[str, str], cwd: Path
) -> subprocess.CompletedProcess[str]:
    """The installed command run to its end (a server that refuses to start), its output kept."""
    return subprocess.run(
        installed.command(argv),
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


# --- the image runs -----------------------------------------------------------------------


def test_the_compose_command_runs_from_the_wheel_as_the_image_user(
    installed: Installed, postgres_db: str
) -> None:
    service = COMPOSE["services"]["cds"]
    volume = installed.scratch("instance")
    scratch = installed.scratch("tmp")  # the container's /tmp: serve's metrics folder goes here
    workdir = volume if IMAGE.workdir == IMAGE.env.get("CDS_INSTANCE_DIR") else installed.root
    env = _image_env(
        installed,
        service,
        CDS_DATABASE_URL=postgres_db,  # compose's db:5432, here the test's PostgreSQL
        CDS_INSTANCE_DIR=str(volume),  # the image's volume, mounted here
        CDS_TODAY=TODAY,  # the fixtures' reference date
        TMPDIR=str(scratch),
    )
    server = _start(installed, service["command"], env, workdir)
    try:
        assert wait_for(server.base + "/health", server.alive) == 200, server.output()
        status, ready = get_json(server.base + "/ready")
        assert status == 200, ready
        assert ready == {
            "status": "ready",
            "checks": {"mappings": "ok", "database": "ok", "migrations": "ok"},
        }
        status, body = post_json(
            server.base + "/cds-services/breast-surveillance-order-select", SEED.read_bytes()
        )
        assert status == 200, body
        assert [card["indicator"] for card in body["cards"]] == ["warning"]
        # The image's HEALTHCHECK and compose's, run as the container would (same user, env).
        for probe in (["CMD", *IMAGE.healthcheck], service["healthcheck"]["test"]):
            assert probe[0] == "CMD"
            argv = [part.replace(":8000/", f":{server.port}/") for part in probe[1:]]
            result = subprocess.run(
                installed.command(argv), env=env, capture_output=True, text=True, check=False
            )
            assert result.returncode == 0, result.stderr
        # The hook call is in the database (written by the audit thread, shortly).
        engine = create_engine(postgres_db)
        try:
            calls = 0
            for _ in range(100):
                with engine.connect() as connection:
                    calls = connection.execute(select(func.count()).select_from(Call)).scalar_one()
                if calls:
                    break
                time.sleep(0.1)
            assert calls == 1
        finally:
            engine.dispose()
    finally:
        out = server.stop()
    assert server.proc.returncode == 0, out
    assert "UNAUTHENTICATED" in out  # the development profile says what it is
    # The volume holds what the service keeps there, owned by the image's user.
    kept = {p.name: p.stat().st_uid for p in volume.iterdir()}
    assert "audit.key" in kept
    if os.geteuid() == 0:
        assert set(kept.values()) == {IMAGE.uid}
    assert list(scratch.iterdir()) == []  # the workers' metric files removed on the way out


def test_the_image_command_refuses_to_serve_unauthenticated(installed: Installed) -> None:
    """The Dockerfile's own CMD (the production path) needs CDS_JWT_ISSUERS_FILE: without it,
    one clear line and exit 2 (compose's development profile adds --allow-unauthenticated)."""
    volume = installed.scratch("refuse")
    env = _image_env(installed, {}, CDS_INSTANCE_DIR=str(volume))
    port = free_port()
    result = _run(installed, _with_port(IMAGE.cmd, port), env, volume)
    assert result.returncode == 2
    assert "refusing to serve on 0.0.0.0 without client authentication" in result.stderr


def test_an_unwritable_instance_folder_is_one_clear_line(installed: Installed) -> None:
    if not installed.prefix:
        pytest.skip("needs root to make a folder the image's user cannot write")
    locked = installed.root / "root-only"
    locked.mkdir(mode=0o700)
    env = _image_env(installed, {}, CDS_INSTANCE_DIR=str(locked / "instance"))
    argv = [*_with_port(IMAGE.cmd, free_port()), "--allow-unauthenticated"]
    result = _run(installed, argv, env, installed.root)
    assert result.returncode == 2
    assert "set CDS_INSTANCE_DIR to a folder this user can write" in result.stderr
    assert "Traceback" not in result.stderr


def test_the_installed_package(installed: Installed) -> None:
    """From the wheel: version, LICENSE, py.typed, python -m, and the fixture patients that
    load-fixtures reads by default."""
    python = str(installed.bin / "python")
    probe = subprocess.run(
        [
            python,
            "-c",
            "import importlib.metadata as m, cds_service, pathlib, json;"
            "from cds_service.cli import default_fixtures_dir;"
            "d = m.distribution('breast-surveillance-cds');"
            "print(json.dumps({'version': d.version, 'own': cds_service.__version__,"
            " 'files': [str(f) for f in d.files or []],"
            " 'fixtures': str(default_fixtures_dir()),"
            " 'bundles': sorted(p.name for p in default_fixtures_dir().glob('*.json'))}))",
        ],
        cwd=installed.root,
        capture_output=True,
        text=True,
        check=True,
    )
    found = json.loads(probe.stdout)
    assert found["version"] == found["own"]
    assert any(f.endswith("licenses/LICENSE") for f in found["files"])
    assert "cds_service/py.typed" in found["files"]
    assert str(installed.root) in found["fixtures"]
    assert found["bundles"] == sorted(p.name for p in (FIXTURES / "patients").glob("*.json"))
    version = subprocess.run(
        [python, "-m", "cds_service", "--version"], capture_output=True, text=True, check=True
    )
    assert version.stdout.strip() == f"cds-service {found['version']}"
    # load-fixtures from the wheel reads the packaged patients: the first one fails to load
    # against a closed port (non-zero, naming the file), instead of "loaded 0 patients".
    result = subprocess.run(
        [str(installed.bin / "cds-service"), "load-fixtures", "--fhir", "http://127.0.0.1:9/fhir"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 1
    assert result.stderr.startswith(f"cds-service: {found['bundles'][0]}:")


# --- the compose files -----------------------------------------------------------------------


def _compose_cli() -> list[str] | None:
    for command in (["docker", "compose"], ["docker-compose"]):
        if shutil.which(command[0]) is None:
            continue
        probe = subprocess.run([*command, "version"], capture_output=True, check=False)
        if probe.returncode == 0:
            return command
    return None


@pytest.mark.parametrize("path", ["docker-compose.yml", "deploy/compose.production.yml"])
def test_docker_compose_config_accepts_the_file(path: str) -> None:
    command = _compose_cli()
    if command is None:
        pytest.skip("no docker compose CLI here: the files are checked as YAML by the tests below")
    env = {**os.environ, "CDS_DB_PASSWORD": "x", "CDS_AUDIT_KEY": "x", "CDS_METRICS_TOKEN": "x"}
    result = subprocess.run(
        [*command, "-f", str(ROOT / path), "config", "--quiet"],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    assert result.returncode == 0, result.stderr


def _named_volumes(document: dict[str, Any]) -> set[str]:
    used = set()
    for service in document["services"].values():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if not source.startswith((".", "/")):
                used.add(source)
    return used


def test_the_development_compose_file() -> None:
    services = COMPOSE["services"]
    assert set(services) == {"cds", "db", "hapi", "fixtures"}
    cds, db, hapi, loader = services["cds"], services["db"], services["hapi"], services["fixtures"]
    # The service: the image's command plus the honest development flag, the EXPOSEd port on
    # loopback, the image's volume, PostgreSQL of the db service, HAPI by its compose name.
    assert cds["build"] == "."
    assert cds["command"] == [*IMAGE.cmd, "--allow-unauthenticated"]
    assert cds["ports"] == [f"127.0.0.1:{IMAGE.expose[0]}:{IMAGE.expose[0]}"]
    assert f"cds-instance:{IMAGE.env['CDS_INSTANCE_DIR']}" in cds["volumes"]
    assert IMAGE.env["CDS_INSTANCE_DIR"] in IMAGE.volumes
    env = cds["environment"]
    credentials = db["environment"]
    assert env["CDS_DATABASE_URL"] == (
        f"postgresql+psycopg://{credentials['POSTGRES_USER']}:{credentials['POSTGRES_PASSWORD']}"
        f"@db:5432/{credentials['POSTGRES_DB']}"
    )
    assert env["CDS_FHIR_SERVER_ALLOWLIST"] == "http://hapi:8080/fhir"
    assert "localhost" not in env["CDS_FHIR_SERVER_ALLOWLIST"]  # would be the container itself
    assert "/ready" in " ".join(cds["healthcheck"]["test"])
    assert cds["depends_on"] == {"db": {"condition": "service_healthy"}}
    assert db["healthcheck"]["test"][0] in ("CMD", "CMD-SHELL")
    # HAPI, and the one-shot loader: same image, waits for HAPI itself, never restarted.
    assert hapi["image"].startswith("hapiproject/hapi:")
    assert hapi["ports"] == ["127.0.0.1:8080:8080"]
    assert loader["image"] == cds["image"]
    command = loader["command"]
    assert command[:2] == ["cds-service", "load-fixtures"]
    assert command[command.index("--fhir") + 1] == "http://hapi:8080/fhir"
    assert float(command[command.index("--wait") + 1]) >= 60
    assert loader["depends_on"] == {"hapi": {"condition": "service_started"}}
    assert loader["restart"] == "no"
    assert _named_volumes(COMPOSE) <= set(COMPOSE["volumes"])


def test_the_production_compose_example() -> None:
    services = PRODUCTION["services"]
    assert set(services) == {"cds", "db"}
    cds = services["cds"]
    assert "command" not in cds  # the image's CMD: refuses to serve without issuers
    env = cds["environment"]
    assert env["CDS_PUBLIC_BASE_URL"].startswith("https://")
    assert env["CDS_DATABASE_URL"].startswith("postgresql+psycopg://")
    issuers = env["CDS_JWT_ISSUERS_FILE"]
    assert any(v.split(":")[1] == issuers for v in cds["volumes"] if v.startswith("./"))
    for secret in ("CDS_AUDIT_KEY", "CDS_METRICS_TOKEN"):
        assert re.fullmatch(r"\$\{" + secret + r":\?[^}]+\}", env[secret]), secret
    assert ":?" in env["CDS_DATABASE_URL"]
    assert f"cds-instance:{IMAGE.env['CDS_INSTANCE_DIR']}" in cds["volumes"]
    assert cds["depends_on"] == {"db": {"condition": "service_healthy"}}
    assert "/ready" in " ".join(cds["healthcheck"]["test"])
    assert _named_volumes(PRODUCTION) <= set(PRODUCTION["volumes"])
    example = ROOT / "deploy" / "issuers.example.json"
    from cds_service.auth import load_issuers

    assert load_issuers(example)


# --- pinned dependencies ---------------------------------------------------------------------


def _pins() -> dict[str, str]:
    pins = {}
    for line in (ROOT / "constraints.txt").read_text(encoding="utf-8").splitlines():
        line = line.split("#")[0].strip()
        if line:
            name, sep, version = line.partition("==")
            assert sep, f"constraints.txt: {line!r} is not pinned with =="
            pins[canonicalize_name(name)] = version
    return pins


def _runtime_closure() -> set[str]:
    """Every distribution the project's runtime dependencies need (extras and markers
    evaluated), from the installed metadata."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    todo = [Requirement(r) for r in project["dependencies"]]
    seen: set[str] = set()
    while todo:
        requirement = todo.pop()
        name = canonicalize_name(requirement.name)
        key = name + "[" + ",".join(sorted(requirement.extras)) + "]"
        if key in seen:
            continue
        seen.add(key)
        seen.add(name)
        for raw in metadata.requires(requirement.name) or []:
            child = Requirement(raw)
            if child.marker is None:
                todo.append(child)
            elif any(child.marker.evaluate({"extra": e}) for e in requirement.extras or {""}):
                todo.append(child)
    return {n for n in seen if "[" not in n}


def test_constraints_pin_every_runtime_dependency() -> None:
    pins = _pins()
    missing = _runtime_closure() - set(pins)
    assert not missing, f"not pinned in constraints.txt (run make lock): {sorted(missing)}"
    dockerfile = (ROOT / "Dockerfile").read_text(encoding="utf-8")
    assert re.search(r"pip install [^\n]*--constraint \S*constraints\.txt", dockerfile)


def test_readme_names_what_the_compose_files_have() -> None:
    """The Docker and sandbox sections' commands name services, files and settings that exist."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    named = set(
        re.findall(r"docker compose (?:logs -f|run --rm|up -d) ?(?:--build )?(\w+)", readme)
    )
    assert named and named <= set(COMPOSE["services"])
    for path in re.findall(r"`(deploy/[\w.-]+)`", readme):
        assert (ROOT / path).exists(), path
    assert "CDS_TODAY" in (ROOT / "docker-compose.yml").read_text(encoding="utf-8")
    for path in re.findall(r"-d @(fixtures/requests/[\w.-]+\.json)", readme):
        assert (ROOT / path).exists(), path


def test_the_image_command_serves_the_production_example(
    installed: Installed, postgres_db: str
) -> None:
    """The Dockerfile's own CMD with deploy/compose.production.yml's environment (its secrets
    given, its issuers file and database provided here): operations endpoints open, the hook
    needs a client JWT (audience: the public base URL), /metrics needs its token."""
    from .test_auth import EC_KEY, ISS, SELECT, public_jwk, token, write_issuers

    service = PRODUCTION["services"]["cds"]
    env_spec = service["environment"]
    volume = installed.scratch("production")
    issuers = write_issuers(
        installed.root / "issuers.json",
        [{"iss": ISS, "jwks": {"keys": [public_jwk(EC_KEY, "ec-1", "ES384")]}}],
    )
    issuers.chmod(0o644)
    env = _image_env(
        installed,
        {"environment": {k: v for k, v in env_spec.items() if "${" not in v}},
        CDS_JWT_ISSUERS_FILE=str(issuers),  # mounted at env_spec's path in the container
        CDS_DATABASE_URL=postgres_db,
        CDS_AUDIT_KEY="a-secret-audit-key",
        CDS_METRICS_TOKEN="a-metrics-token",
        CDS_INSTANCE_DIR=str(volume),
        CDS_TODAY=TODAY,
        TMPDIR=str(volume),
    )
    base_url = env["CDS_PUBLIC_BASE_URL"]
    server = _start(installed, IMAGE.cmd, env, volume)
    try:
        assert wait_for(server.base + "/ready", server.alive) == 200, server.output()
        assert get_json(server.base + "/health")[0] == 200
        assert get_json(server.base + "/cds-services")[0] == 401
        assert post_json(server.base + SELECT, SEED.read_bytes())[0] == 401
        assert base_url.startswith("https://")
        # The JWT's audience is the configured public URL + path, whatever the proxy sends.
        bearer = {"Authorization": f"Bearer {token()}"}
        status, body = post_json(server.base + SELECT, SEED.read_bytes(), bearer)
        assert status == 200, body
        assert [card["indicator"] for card in body["cards"]] == ["warning"]
        assert get_json(server.base + "/metrics")[0] == 401
        status, _ = get_json(server.base + "/metrics", {"Authorization": "Bearer a-metrics-token"})
        assert status == 200
    finally:
        out = server.stop()
    assert server.proc.returncode == 0, out
    assert "UNAUTHENTICATED" not in out
    assert "audit.key" not in {p.name for p in volume.iterdir()}  # CDS_AUDIT_KEY is used
