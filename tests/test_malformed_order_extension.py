"""A draft order whose extension has the wrong shape is answered, never a 500."""

from __future__ import annotations

from typing import Any

import pytest
from flask.testing import FlaskClient

from .conftest import FIXTURES, load_json

SELECT = "/cds-services/breast-surveillance-order-select"


@pytest.mark.parametrize("extension", [["oops"], {"url": "x"}, "x", [{"url": 5}]])
def test_malformed_order_extension_is_not_a_500(client: FlaskClient, extension: Any) -> None:
    body = load_json(FIXTURES / "requests" / "seed-pet-ct.json")
    body["context"]["draftOrders"]["entry"][0]["resource"]["extension"] = extension
    response = client.post(SELECT, json=body)
    assert response.status_code < 500
