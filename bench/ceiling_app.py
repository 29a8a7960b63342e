"""The shell ceiling: the service's own app with its pipeline answered from memory.

``create_app()`` builds the real app (``cds_service:create_app()``: its request hooks, JWT
check, headers, store and logging) and runs the real pipeline (``pipeline.decide``) once on the
seed request; from then on ``pipeline.decide`` hands back that decision with fresh card uuids
(consult and suggestion ids repeat: no audit column holding them is unique), so every call
still goes through the view's HTTP shell: reading and checking the request, the audit row,
the JSON log line and the response. What this app serves per second is the most the service
could serve with a pipeline that cost nothing; ``python -m bench --ceiling`` loads it against
the bare Flask floor (bench/README.md, "The shell ceiling").

A measuring tool only: it answers every call with the seed's cards, whatever it is sent.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from flask import Flask

from cds_service import create_app as create_service_app
from cds_service import pipeline
from cds_service.cards import new_uuid
from cds_service.hooks import CdsRequest, decode_request, parse_request
from cds_service.policy import ClientOptions
from cds_service.services import Service
from cds_service.state import APP_STATE_KEY

from .records import SERVICE_ID, seed_set

PATH = f"/cds-services/{SERVICE_ID}"
BASE_URL = "http://localhost"  # what the test client's request would have given
REAL_DECIDE = pipeline.decide  # the pipeline, kept before any create_app() here replaces it


def fresh(decision: pipeline.Decision) -> pipeline.Decision:
    """The same decision with new card uuids: the audit stores each card once."""
    renamed: dict[int, dict[str, Any]] = {
        id(card): {**card, "uuid": new_uuid()} for card in decision.advice.cards
    }
    advice = replace(
        decision.advice,
        cards=[renamed[id(c)] for c in decision.advice.cards],
        card_for={ref: renamed[id(c)] for ref, c in decision.advice.card_for.items()},
    )
    cards = [renamed.get(id(c), c) for c in decision.cards]
    return replace(decision, advice=advice, cards=cards)


def create_app() -> Flask:
    app = create_service_app()
    body = seed_set().bodies[0]
    state = app.extensions[APP_STATE_KEY]
    service = state.services[SERVICE_ID]
    req = parse_request(decode_request(body), service.hook)
    pipeline.decide = REAL_DECIDE  # a second app in this process decides for real too
    decided = state.decide(req, service, BASE_URL)
    if not decided.cards:
        raise RuntimeError("the seed request gave no card: the ceiling would not be comparable")

    def remembered(
        req: CdsRequest, service: Service, client_options: ClientOptions, **inputs: Any
    ) -> pipeline.Decision:
        return fresh(decided)

    pipeline.decide = remembered  # this process serves nothing else
    return app
