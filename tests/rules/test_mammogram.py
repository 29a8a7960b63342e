"""The annual mammogram suggestion, through the app."""

from __future__ import annotations

from flask.testing import FlaskClient

from ..conftest import FIXTURES, load_json
from .conftest import SELECT


def test_no_bilateral_mammogram_suggested_for_a_man(client: FlaskClient) -> None:
    body = load_json(FIXTURES / "requests" / "male-breast-cancer.json")
    body["prefetch"]["procedures"]["entry"] = [
        e for e in body["prefetch"]["procedures"].get("entry", []) if "ammogra" not in str(e)
    ]
    [card] = client.post(SELECT, json=body).get_json()["cards"]
    assert [s for s in card["suggestions"] if "mammogram" in s["label"]] == []
