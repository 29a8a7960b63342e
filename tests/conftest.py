"""Shared fixtures: the app (built once), its client, the clinical cases and the shared/ folder."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

# Every app the tests build keeps its SQLite store and audit key out of the work tree.
os.environ.setdefault("CDS_INSTANCE_DIR", tempfile.mkdtemp(prefix="cds-test-instance-"))

from cds_service import create_app  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "fixtures"
MAPPINGS = ROOT / "mappings"
SHARED = ROOT.parent / "shared"
EXTERNAL = SHARED / "external"
CASES_DOC = json.loads((FIXTURES / "cases.json").read_text(encoding="utf-8"))
TODAY = CASES_DOC["today"]
SERVICE_FOR_HOOK = {
    "order-select": "breast-surveillance-order-select",
    "order-sign": "breast-surveillance-order-sign",
}


def load_json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


def case_request(case: dict[str, Any]) -> dict[str, Any]:
    body: dict[str, Any] = load_json(FIXTURES / case["request"])
    return body


def add_condition(body: dict[str, Any], text: str) -> None:
    """Adds to the request's prefetch a Condition with no code, only these words (a local
    problem-list entry), recorded 2026-10-01."""
    body["prefetch"]["conditions"]["entry"].append(
        {
            "resource": {
                "resourceType": "Condition",
                "id": "local-mets",
                "code": {"text": text},
                "recordedDate": "2026-10-01",
            }
        }
    )


def external(name: str) -> Path:
    """A file of ../shared/external/, or a skip saying why it is absent."""
    path = EXTERNAL / name
    if not path.exists():
        pytest.skip(f"{path} is absent: the shared interoperability data is not on this machine")
    return path


@pytest.fixture(scope="session")
def app(tmp_path_factory: pytest.TempPathFactory) -> Flask:
    # One app for the whole run: repeat suppression (which remembers earlier calls) is off
    # here, so that no test's answer depends on which tests ran before it; test_interop.py
    # tests it on apps of its own.
    site = tmp_path_factory.mktemp("site") / "site.toml"
    site.write_text("repeat_window_minutes = 0\n")
    return create_app({"today": TODAY, "config_file": str(site)})


@pytest.fixture()
def client(app: Flask) -> Iterator[FlaskClient]:
    with app.test_client() as c:
        yield c


@pytest.fixture(scope="module")
def fuzz_app(tmp_path_factory: pytest.TempPathFactory) -> Flask:
    # No outbound FHIR queries: generated fhirServer values are refused by the allow-list.
    return create_app(
        {
            "today": TODAY,
            "instance_dir": str(tmp_path_factory.mktemp("fuzz")),
            "fhir_server_allowlist": "http://127.0.0.1:9/none",
        }
    )


from .databases import (  # noqa: E402,F401  (fixtures)
    db_url,
    make_app,
    postgres_db,
    postgres_server,
)

# --- the JSON log of the whole run must hold no PHI, token or JWT ---------------------------

RUN_LOG = Path(tempfile.mkdtemp(prefix="cds-test-log-")) / "run.jsonl"


def _sentinels() -> set[str]:
    """Patient ids and names of every fixture, and the tokens the tests send."""
    return {"SECRET-TOKEN-123", "sentinel-access-token-7f3a", *fixture_patient_words()}


def fixture_patient_words() -> set[str]:
    """The ids and names of every fixture patient (none may appear in a log or a page)."""
    found: set[str] = set()
    for path in (FIXTURES / "patients").glob("*.json"):
        for entry in load_json(path)["entry"]:
            resource = entry["resource"]
            if resource["resourceType"] == "Patient":
                found.add(resource["id"])
                for name in resource.get("name", []):
                    found.update(n for n in [name.get("family"), *name.get("given", [])] if n)
    return found


def pytest_configure(config: pytest.Config) -> None:
    import logging

    from cds_service.logs import JsonFormatter

    handler = logging.FileHandler(RUN_LOG, encoding="utf-8")
    handler.setFormatter(JsonFormatter())
    logging.getLogger("cds_service").addHandler(handler)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if not RUN_LOG.exists():
        return
    text = RUN_LOG.read_text(encoding="utf-8")
    lines = [line for line in text.split("\n") if line.strip()]  # JSON Lines: "\n" only
    problems = []
    for number, line in enumerate(lines, 1):
        try:
            json.loads(line)
        except json.JSONDecodeError:
            problems.append(f"line {number} is not JSON")
    leaked = sorted(s for s in _sentinels() if s in text)
    if "eyJ" in text:
        leaked.append("a JWT (eyJ...)")
    if leaked:
        problems.append(f"sentinels in the log: {leaked}")
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if problems:
        if reporter:
            reporter.write_line(
                f"JSON log check FAILED ({RUN_LOG}): {'; '.join(problems)}", red=True
            )
        session.exitstatus = 1
    elif reporter:
        reporter.write_line(f"JSON log check: {len(lines)} lines, no PHI, token or JWT ({RUN_LOG})")
