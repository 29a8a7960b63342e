"""``cds-service serve``: real gunicorn answering, the package run from anywhere, models loaded
at start-up, a busy port, JSON logs, metrics summed over workers, the metrics folder."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from cds_service.cli import main

from .conftest import FIXTURES, ROOT, TODAY
from .deployment import free_port

SEED = FIXTURES / "requests" / "seed-pet-ct.json"

CLI = [sys.executable, "-m", "cds_service.cli"]


def test_serve_runs_gunicorn_and_answers_discovery(tmp_path: Path) -> None:
    port = free_port()
    env = {**os.environ, "CDS_TODAY": "2026-11-25"}
    proc = subprocess.Popen(
        [*CLI, "serve", "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 30
        body = None
        while time.monotonic() < deadline and body is None:
            try:
                with urllib.request.urlopen(
                    f"http://127.0.0.1:{port}/cds-services", timeout=2
                ) as r:
                    body = json.load(r)
            except (urllib.error.URLError, ConnectionError):
                assert proc.poll() is None, proc.stdout.read().decode() if proc.stdout else ""
                time.sleep(0.2)
        assert body is not None, "the server did not answer discovery in time"
        assert len(body["services"]) == 2
        seed = (FIXTURES / "requests" / "seed-pet-ct.json").read_bytes()
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/cds-services/breast-surveillance-order-select",
            data=seed,
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=10) as r:
            cards = json.load(r)["cards"]
        assert [c["indicator"] for c in cards] == ["warning"]
    finally:
        proc.terminate()
        try:
            out = proc.communicate(timeout=15)[0].decode()
        except subprocess.TimeoutExpired:
            proc.kill()
            out = proc.communicate()[0].decode()
    assert "gunicorn" in out.lower() or "Booting worker" in out
    assert "access_token" not in out


def test_the_package_runs_from_any_directory() -> None:
    """Mappings are found next to the package, not in the working directory."""
    result = subprocess.run(
        [*CLI, "check-mappings"], cwd="/", capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    assert ROOT.exists()


WARM_UP_PROBE = """
import json, sys
from pathlib import Path
from cds_service import create_app
app = create_app({"today": sys.argv[1]})
before = set(sys.modules)
client = app.test_client()
statuses = set()
for case in json.loads(Path(sys.argv[2], "cases.json").read_text())["cases"]:
    body = Path(sys.argv[2], case["request"]).read_bytes()
    hook = json.loads(body)["hook"]
    service = {"order-select": "breast-surveillance-order-select"}.get(
        hook, "breast-surveillance-order-sign")
    statuses.add(client.post("/cds-services/" + service, data=body,
                             content_type="application/json").status_code)
late = sorted(m for m in set(sys.modules) - before if m.startswith(("fhir", "pydantic")))
print(json.dumps({"late": late, "statuses": sorted(statuses)}))
"""


def test_fhir_models_load_at_start_up_not_in_a_first_hook_call(tmp_path: Path) -> None:
    """A fresh process (as a gunicorn worker is): every fixture case is answered without
    importing a fhir.resources (or pydantic) module after create_app()."""
    env = dict(os.environ, CDS_INSTANCE_DIR=str(tmp_path))
    out = subprocess.run(
        [sys.executable, "-c", WARM_UP_PROBE, TODAY, str(FIXTURES)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    found = json.loads(out.stdout.strip().splitlines()[-1])
    assert found["statuses"] == [200]
    assert found["late"] == []


def test_a_busy_port_says_which_and_how_to_choose_another(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        assert main(["serve", "--port", str(port)]) == 2
    err = capsys.readouterr().err
    assert f"port {port} on 127.0.0.1 is already in use" in err
    assert "--port N" in err and "PORT=N" in err


def test_the_metrics_folder_serve_makes_and_one_given(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from cds_service.cli.serve import _metrics_dir

    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    monkeypatch.setattr("tempfile.tempdir", None)
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    stale = tmp_path / f"cds-metrics-{dead}-abc123"  # a server killed with SIGKILL left it
    stale.mkdir()
    mine = tmp_path / f"cds-metrics-{os.getpid()}-def456"  # a live server's
    mine.mkdir()
    with _metrics_dir():
        made = Path(os.environ["PROMETHEUS_MULTIPROC_DIR"])
        assert made.parent == tmp_path and made.is_dir()
        assert not stale.exists() and mine.exists()
    mine.rmdir()
    assert not made.exists() and "PROMETHEUS_MULTIPROC_DIR" not in os.environ
    given = tmp_path / "given"
    given.mkdir()
    (given / "counter_123.db").write_bytes(b"stale")
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(given))
    with _metrics_dir():
        assert list(given.iterdir()) == []  # an earlier run's counts are not added again
    assert given.is_dir()
