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


def external(name: str) -> Path:
    """A file of ../shared/external/, or a skip saying why it is absent."""
    path = EXTERNAL / name
    if not path.exists():
        pytest.skip(f"{path} is absent: the shared interoperability data is not on this machine")
    return path


@pytest.fixture(scope="session")
def app() -> Flask:
    return create_app({"today": TODAY})


@pytest.fixture()
def client(app: Flask) -> Iterator[FlaskClient]:
    with app.test_client() as c:
        yield c


from .databases import db_url, postgres_server  # noqa: E402,F401  (fixtures)
