"""Requests and posting shared by the card tests: fixture requests by case name, a request
without mammograms on record, a conformant post to order-select, a mappings folder with one
file edited."""

from __future__ import annotations

import copy
import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from flask.testing import FlaskClient

from .conformance import assert_conformant
from .conftest import CASES_DOC, FIXTURES, MAPPINGS, load_json

NS = "org.example.breast-surveillance-cds"  # cards' extension key
SELECT = "/cds-services/breast-surveillance-order-select"
PAMA = "http://fhir.org/argonaut/Extension/"


def request_of(name: str) -> dict[str, Any]:
    case = next(c for c in CASES_DOC["cases"] if c["name"] == name)
    body: dict[str, Any] = load_json(FIXTURES / case["request"])
    return body


def without_mammograms(body: dict[str, Any]) -> dict[str, Any]:
    body = copy.deepcopy(body)
    entries = body["prefetch"]["procedures"].get("entry", [])
    body["prefetch"]["procedures"]["entry"] = [
        e for e in entries if "ammogra" not in str(e["resource"].get("code"))
    ]
    return body


def post(client: FlaskClient, body: dict[str, Any]) -> dict[str, Any]:
    response = client.post(SELECT, json=body, base_url="https://cds.example.org")
    assert response.status_code == 200, response.get_data(as_text=True)
    result: dict[str, Any] = response.get_json()
    assert_conformant(result)
    return result


def mappings_with(tmp_path: Path, file_name: str, edit: Callable[[dict[str, Any]], Any]) -> Path:
    """A copy of mappings/ whose ``file_name`` is changed by ``edit``."""
    folder = tmp_path / "mappings"
    shutil.copytree(MAPPINGS, folder)
    doc = load_json(folder / file_name)
    edit(doc)
    (folder / file_name).write_text(json.dumps(doc), encoding="utf-8")
    return folder
