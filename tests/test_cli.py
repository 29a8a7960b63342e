"""The console script: serve (real gunicorn), evaluate, check-mappings."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from cds_service.cli import main

from .conftest import FIXTURES, MAPPINGS, ROOT, TODAY

CLI = [sys.executable, "-m", "cds_service.cli"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def test_check_mappings_ok(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check-mappings"]) == 0
    assert capsys.readouterr().out.startswith("ok: ")


def test_check_mappings_names_the_bad_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    copy = tmp_path / "mappings"
    shutil.copytree(MAPPINGS, copy)
    (copy / "labs.json").write_text('{"group": "labs"}')
    assert main(["check-mappings", str(copy)]) == 1
    assert "labs.json" in capsys.readouterr().err


def test_evaluate_prints_the_seed_warning(capsys: pytest.CaptureFixture[str]) -> None:
    request = FIXTURES / "requests" / "seed-pet-ct.json"
    assert main(["evaluate", str(request), "--today", "2026-11-25"]) == 0
    body = json.loads(capsys.readouterr().out)
    assert [card["indicator"] for card in body["cards"]] == ["warning"]


def test_evaluate_explain_names_the_records_and_phrases(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--explain: each verdict's rule and the record, code or phrase behind it (to stderr,
    so that stdout stays the JSON response)."""
    body = json.loads((FIXTURES / "requests" / "seed-pet-ct.json").read_text())
    body["prefetch"]["conditions"]["entry"].append(
        {
            "resource": {
                "resourceType": "Condition",
                "id": "local-mets",
                "code": {"text": "Breast ca with bony mets"},
                "recordedDate": "2026-10-01",
            }
        }
    )
    request = tmp_path / "request.json"
    request.write_text(json.dumps(body))
    assert main(["evaluate", str(request), "--today", "2026-11-25", "--explain"]) == 0
    out, err = capsys.readouterr()
    assert json.loads(out)["cards"] == []
    assert "pet-ct -> silent (metastatic-disease)" in err
    assert "Condition/local-mets 2026-10-01 metastatic-disease" in err
    assert "[words 'METS']" in err
    # Without --explain, nothing but the response.
    assert main(["evaluate", str(request), "--today", "2026-11-25"]) == 0
    assert "explain:" not in capsys.readouterr().err


def test_evaluate_reports_a_bad_request(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"hook": "order-sign", "context": {}}))
    assert main(["evaluate", str(bad)]) == 1
    assert json.loads(capsys.readouterr().out)["resourceType"] == "OperationOutcome"


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
