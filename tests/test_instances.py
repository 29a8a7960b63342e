"""Issue 16: two ``cds-service serve`` instances sharing one PostgreSQL behave as one service.

Each instance has its own instance folder (as on its own host) and the same database, audit
key, issuers and public base URL (as behind one load balancer). They start together (the
migrations serialise themselves), then: a JWT accepted by one is refused by the other, feedback
sent to both is stored once, and a snooze set through one silences the other.
"""

from __future__ import annotations

import os
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import create_engine, func, select

from cds_service.store import Base, Call, Feedback, FeedbackItem, Snooze, Store

from .conftest import FIXTURES, TODAY
from .deployment import Server, get_json, post_json, wait_for
from .store_calls import override
from .test_auth import BASE, EC_KEY, ISS, SELECT, public_jwk, token, write_issuers

FEEDBACK = SELECT + "/feedback"


def test_replay_and_new_feedback_are_told_apart_on_each_database(db_url: str) -> None:
    """INSERT ... ON CONFLICT DO NOTHING: whether a row went in comes from RETURNING (psycopg 3
    gives rowcount -1 there, which once let every replay through on PostgreSQL)."""
    from cds_service.store import upgrade

    upgrade(db_url)
    store = Store(db_url, b"k")
    try:
        expires = datetime.now(UTC) + timedelta(minutes=5)
        jti = str(uuid.uuid4())
        assert store.remember_token("iss", jti, expires) is True
        assert store.remember_token("iss", jti, expires) is False
        item = FeedbackItem(str(uuid.uuid4()), "accepted", None, (), None, None, None, None, ())
        assert store.add_feedback("svc", [item]) == 1
        assert store.add_feedback("svc", [item]) == 0
    finally:
        store.close()


def _serve(env: dict[str, str], folder: Path) -> Server:
    """One instance, with its own instance folder, serving two workers."""
    return Server.start(
        lambda port: [sys.executable, "-m", "cds_service", "serve", "--port", str(port)],
        {**env, "CDS_INSTANCE_DIR": str(folder), "CDS_WORKERS": "2"},
        folder,
        folder,
    )


def _post(instance: Server, path: str, body: object, bearer: str) -> tuple[int, object]:
    return post_json(instance.base + path, body, {"Authorization": f"Bearer {bearer}"})


@pytest.fixture()
def two_instances(postgres_db: str, tmp_path: Path) -> Iterator[tuple[Server, Server]]:
    issuers_file = write_issuers(
        tmp_path / "issuers.json",
        [{"iss": ISS, "jwks": {"keys": [public_jwk(EC_KEY, "ec-1", "ES384")]}}],
    )
    env = {
        **os.environ,
        "CDS_DATABASE_URL": postgres_db,
        "CDS_AUDIT_KEY": "shared-secret-of-the-deployment",
        "CDS_JWT_ISSUERS_FILE": str(issuers_file),
        "CDS_PUBLIC_BASE_URL": BASE,
        "CDS_TODAY": TODAY,
    }
    instances: list[Server] = []
    try:
        for name in ("a", "b"):
            folder = tmp_path / name
            folder.mkdir()
            instances.append(_serve(env, folder))
        for instance in instances:
            status = wait_for(instance.base + "/ready", instance.alive, timeout=120)
            assert status == 200, instance.log.read_text()
        yield instances[0], instances[1]
    finally:
        for instance in instances:
            instance.stop()


def test_two_instances_on_one_database_act_as_one_service(
    two_instances: tuple[Server, Server], postgres_db: str
) -> None:
    a, b = two_instances
    seed = (FIXTURES / "requests" / "seed-pet-ct.json").read_bytes()
    # One JWT, two instances: the second use is a replay wherever it arrives.
    bearer = token()
    status, body = _post(a, SELECT, seed, bearer)
    assert status == 200, body
    assert isinstance(body, dict)
    [card] = body["cards"]
    assert card["indicator"] == "warning"
    assert _post(b, SELECT, seed, bearer)[0] == 401
    # The call's audit row (which ties the card to its patient and study) is written by the
    # worker's audit thread within AUDIT_BATCH_SECONDS; feedback naming the card in that moment,
    # through another worker or instance, finds no card to snooze (README, Operations).
    assert _count(postgres_db, Call, 1) == 1
    # The same feedback to both: one row, one snooze.
    item = {"feedback": [override(card["uuid"], "snooze-3-months")]}
    assert _post(a, FEEDBACK, item, token(FEEDBACK)) == (200, {"received": 1, "stored": 1})
    status, answer = _post(b, FEEDBACK, item, token(FEEDBACK))
    assert status == 200
    assert answer == {"received": 1, "stored": 0}
    # The snooze set through a silences b (b has not looked this patient up before).
    status, body = _post(b, SELECT, seed, token())
    assert status == 200
    assert isinstance(body, dict)
    assert [c["indicator"] for c in body["cards"]] == []
    assert (_count(postgres_db, Feedback), _count(postgres_db, Snooze)) == (1, 1)
    # Both answer the operations endpoints; the calls of both reach the shared audit.
    for instance in (a, b):
        assert get_json(instance.base + "/ready")[0] == 200
    assert _count(postgres_db, Call, 2) == 2


def _count(url: str, model: type[Base], wait_for_count: int | None = None) -> int:
    """Rows of ``model``; with ``wait_for_count``, polls (up to 10 s) until there are that many
    (rows the audit thread writes shortly after the answer)."""
    engine = create_engine(url)
    try:
        for _ in range(100):
            with engine.connect() as connection:
                found = int(
                    connection.execute(select(func.count()).select_from(model)).scalar_one()
                )
            if wait_for_count is None or found >= wait_for_count:
                return found
            time.sleep(0.1)
        return found
    finally:
        engine.dispose()
