"""Issue 15 (fail safe): replay on both databases, hostile input at the door, URLs that could
take the EHR's token elsewhere, a store that is down or slow. Fault injection across processes
(a stopped database, a trickling FHIR server, slow clients, a killed worker) is in
``test_faults.py``."""

from __future__ import annotations

import copy
import threading
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from flask import Flask

from cds_service import create_app
from cds_service.hooks import MAX_DRAFT_ORDERS
from cds_service.store import Feedback, Store, upgrade

from .conftest import FIXTURES, TODAY, load_json

SELECT = "/cds-services/breast-surveillance-order-select"
SIGN = "/cds-services/breast-surveillance-order-sign"
FEEDBACK = SELECT + "/feedback"
MakeApp = Callable[..., Flask]


@pytest.fixture()
def store(db_url: str, tmp_path: Path) -> Iterator[Store]:
    upgrade(db_url, tmp_path)
    opened = Store(db_url, b"k" * 32)
    yield opened
    opened.close()


def seed(hook_instance: str | None = None) -> dict[str, Any]:
    body: dict[str, Any] = load_json(FIXTURES / "requests" / "seed-pet-ct.json")
    body["hookInstance"] = hook_instance or str(uuid.uuid4())
    return body


def is_operation_outcome(body: Any) -> bool:
    return isinstance(body, dict) and body.get("resourceType") == "OperationOutcome"


# --- 1. JWT replay on both databases ---------------------------------------------------------


def test_a_jti_is_accepted_once(store: Store) -> None:
    expires = datetime.now(UTC) + timedelta(minutes=5)
    assert store.remember_token("iss", "jti-1", expires) is True
    assert store.remember_token("iss", "jti-1", expires) is False
    assert store.remember_token("iss", "jti-2", expires) is True


def test_concurrent_uses_of_one_jti_accept_exactly_one(store: Store, db_url: str) -> None:
    expires = datetime.now(UTC) + timedelta(minutes=5)
    others = [Store(db_url, b"k" * 32) for _ in range(2)]  # as other worker processes would
    results: list[bool] = []
    barrier = threading.Barrier(6)

    def use(target: Store) -> None:
        barrier.wait(timeout=30)
        results.append(target.remember_token("iss", "same", expires))

    threads = [threading.Thread(target=use, args=(s,)) for s in [store, *others] * 2]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
    finally:
        for other in others:
            other.close()
    assert sorted(results) == [False] * 5 + [True]


def test_feedback_stored_count_is_true_on_both_databases(make_app: MakeApp) -> None:
    client = make_app().test_client()
    item = {"card": str(uuid.uuid4()), "outcome": "accepted", "acceptedSuggestions": []}
    first = client.post(FEEDBACK, json={"feedback": [item]})
    again = client.post(FEEDBACK, json={"feedback": [item]})
    assert (first.get_json()["stored"], again.get_json()["stored"]) == (1, 0)


# --- 5, 9, 13. input checked against what the store and the rules can take ------------------


def _override(**reason: Any) -> dict[str, Any]:
    return {
        "card": str(uuid.uuid4()),
        "outcome": "overridden",
        "overrideReason": {
            "reason": {"code": "shared-decision", "system": "https://x/cs", **reason}
        },
    }


@pytest.mark.parametrize(
    ("item", "where"),
    [
        ({"card": "c" * 65, "outcome": "accepted"}, "feedback[0].card"),
        (_override(code="x" * 101), "feedback[0].overrideReason.reason.code"),
        (_override(system="https://" + "s" * 300), "feedback[0].overrideReason.reason.system"),
        (_override(display="d" * 301), "feedback[0].overrideReason.reason.display"),
        (
            {"card": "c", "outcome": "accepted", "acceptedSuggestions": [{"id": "i" * 201}]},
            "feedback[0].acceptedSuggestions[0].id",
        ),
    ],
)
def test_feedback_longer_than_the_columns_is_400(
    make_app: MakeApp, item: dict[str, Any], where: str
) -> None:
    app = make_app()
    response = app.test_client().post(FEEDBACK, json={"feedback": [item]})
    assert response.status_code == 400
    body = response.get_json()
    assert is_operation_outcome(body)
    assert body["issue"][0]["expression"] == [where]
    assert app.extensions["cds_service"].store.count(Feedback) == 0


def test_feedback_at_the_column_sizes_is_stored(make_app: MakeApp) -> None:
    app = make_app()
    item = _override(code="x" * 100, system="https://" + "s" * 292, display="d" * 300)
    item["card"] = "c" * 64
    response = app.test_client().post(FEEDBACK, json={"feedback": [item]})
    assert response.status_code == 200
    assert response.get_json()["stored"] == 1


def test_a_hook_instance_longer_than_the_audit_column_is_400(client: Any) -> None:
    response = client.post(SELECT, json=seed("h" * 101))
    assert response.status_code == 400
    assert response.get_json()["issue"][0]["expression"] == ["hookInstance"]


def test_draft_orders_past_the_limit_are_refused_naming_it(client: Any) -> None:
    body = seed()
    entry = body["context"]["draftOrders"]["entry"][0]
    body["hook"] = "order-sign"
    body["context"].pop("selections", None)
    body["context"]["draftOrders"]["entry"] = []
    for index in range(MAX_DRAFT_ORDERS + 1):
        copied = copy.deepcopy(entry)
        copied["resource"]["id"] = f"order-{index}"
        body["context"]["draftOrders"]["entry"].append(copied)
    response = client.post(SIGN, json=body)
    assert response.status_code == 400
    assert str(MAX_DRAFT_ORDERS) in response.get_json()["issue"][0]["diagnostics"]
    body["context"]["draftOrders"]["entry"].pop()
    assert client.post(SIGN, json=body).status_code == 200


# --- 3, 12. URLs that could take the EHR's token (or our key fetches) elsewhere --------------


@pytest.mark.parametrize(
    "link",
    [
        "http://127.0.0.1:{evil}\\@127.0.0.1:{good}/fhir/Condition?page=2",
        "http://127.0.0.1:{evil}@127.0.0.1:{good}/fhir/Condition?page=2",
        "http://user@127.0.0.1:{good}/fhir/Condition?page=2",
        "http://127.0.0.1:{good}/fhir/Condition?page=2\\",
        "http://127.0.0.1:{good}/fhir/Condition ?page=2",
        "http://127.0.0.1:{good}/fhir/Cond\tition",
    ],
)
def test_a_next_link_parsers_could_read_differently_is_never_followed(link: str) -> None:
    import time

    from cds_service.fhir.client import FhirClient, FhirUnavailable, fhir_pool

    client = FhirClient(fhir_pool(), "http://127.0.0.1:8001/fhir", "tok", time.monotonic() + 5)
    url = link.format(evil=8002, good=8001)
    assert not client.inside_base(url)
    with pytest.raises(FhirUnavailable, match="outside its base"):
        client.get(url, "conditions")  # refused before any connection is made


def test_the_link_check_still_allows_the_base_and_below() -> None:
    import time

    from cds_service.fhir.client import FhirClient, fhir_pool

    client = FhirClient(fhir_pool(), "http://127.0.0.1:8001/fhir", None, time.monotonic() + 5)
    assert client.inside_base("http://127.0.0.1:8001/fhir/Condition?_page=2")
    assert client.inside_base("http://127.0.0.1:8001/fhir?_getpages=x")
    assert not client.inside_base("http://127.0.0.1:8002/fhir/Condition")


@pytest.mark.parametrize(
    "server", ["http://u:p@127.0.0.1:9/fhir", "http://127.0.0.1:9\\@example.org/fhir"]
)
def test_a_fhir_server_with_userinfo_or_backslash_is_400(client: Any, server: str) -> None:
    body = seed()
    body["fhirServer"] = server
    response = client.post(SELECT, json=body)
    assert response.status_code == 400
    assert response.get_json()["issue"][0]["expression"] == ["fhirServer"]


@pytest.mark.parametrize(
    ("jku", "allowed"),
    [
        ("https://ehr.example.org/jwks.json", True),
        ("http://127.0.0.1:8080/jwks.json", True),
        ("http://[::1]:8080/jwks.json", True),
        ("http://127.0.0.1.evil.example/jwks.json", False),
        ("http://localhost.evil.example/jwks.json", False),
        ("http://localhost/jwks.json", False),  # a name, not a literal: resolved elsewhere
        ("http://ehr.example.org/jwks.json", False),
        ("https://x@ehr.example.org/jwks.json", False),
        ("https://evil.example\\@ehr.example.org/jwks.json", False),
    ],
)
def test_jku_is_parsed_https_only_except_loopback_literals(jku: str, allowed: bool) -> None:
    from cds_service.auth import IssuerConfig

    if allowed:
        assert IssuerConfig(iss="x", jku=jku).jku == jku
    else:
        with pytest.raises(ValueError, match="jku must be an https URL"):
            IssuerConfig(iss="x", jku=jku)


# --- 6. order-text patterns run in linear time ---------------------------------------------


def test_every_order_text_pattern_runs_on_100_kib_of_adversarial_text() -> None:
    """In a subprocess with a generous timeout: a backtracking pattern (13.8 s on 101 KiB for
    one of them before RE2) ends the test instead of hanging the suite. The timings are
    printed, not asserted (README, Security)."""
    import subprocess
    import sys

    from .conftest import ROOT

    result = subprocess.run(
        [sys.executable, "-m", "tests.regex_worst_case"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "linear=True" in result.stdout


def test_a_pattern_re2_cannot_run_is_a_mapping_error(tmp_path: Path) -> None:
    import shutil

    from cds_service.errors import MappingError
    from cds_service.mappings import load_dir
    from cds_service.rules import REQUIRED_CONCEPTS

    from .conftest import MAPPINGS

    copy_dir = tmp_path / "mappings"
    shutil.copytree(MAPPINGS, copy_dir)
    path = copy_dir / "order-text-patterns.json"
    text = path.read_text(encoding="utf-8")
    marker = '"\\\\bPET\\\\b'
    assert marker in text
    path.write_text(text.replace(marker, '"(\\\\bPET\\\\b)\\\\1?', 1), encoding="utf-8")
    with pytest.raises(MappingError, match="not linear-time"):
        load_dir(copy_dir, REQUIRED_CONCEPTS)


# --- 4, 14. timeouts set on the store; the FHIR failure's reason kept in the log -------------


def test_the_store_connections_have_timeouts(store: Store) -> None:
    with store.engine.connect() as connection:
        if store.engine.dialect.name == "postgresql":
            assert connection.exec_driver_sql("SHOW statement_timeout").scalar() == "5s"
            assert connection.exec_driver_sql("SHOW lock_timeout").scalar() == "5s"
        else:
            assert connection.exec_driver_sql("PRAGMA busy_timeout").scalar() == 5000


def test_a_refused_fhir_server_is_told_generically_and_logged_in_detail(
    caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    import logging
    import socket

    from .test_fhir_access import without_prefetch

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    app = create_app({"today": TODAY, "fhir_timeout": "1", "instance_dir": str(tmp_path)})
    try:
        with caplog.at_level(logging.WARNING, logger="cds_service"):
            response = app.test_client().post(
                SELECT, json=without_prefetch(seed(), f"http://127.0.0.1:{port}/fhir")
            )
    finally:
        app.extensions["cds_service"].store.close()
    assert response.status_code == 412
    diagnostics = response.get_json()["issue"][0]["diagnostics"]
    assert "Connection" not in diagnostics and "reachable" not in diagnostics
    logged = [
        r for r in caplog.records if getattr(r, "fields", {}).get("event") == "fhir-unavailable"
    ]
    assert logged and "NewConnectionError" in str(logged[0].fields["failed"])
