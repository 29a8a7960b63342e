"""The cards' response parts: ids, and the JSON the parts are sent as."""

from __future__ import annotations

import os
import uuid

from cds_service.cards import new_uuid
from cds_service.cards.models import (
    Action,
    Card,
    CardMarks,
    Coding,
    Link,
    OverrideReason,
    Source,
    Suggestion,
    to_json,
)


def test_card_uuids_are_version_4_and_differ_across_forked_workers() -> None:
    """A forked gunicorn worker must not hand out the ids its parent (or a sibling) will."""
    first = new_uuid()
    assert uuid.UUID(first).version == 4
    read, write = os.pipe()
    child = os.fork()
    if child == 0:  # the child: its next id, through the pipe
        try:
            os.write(write, new_uuid().encode())
        finally:
            os._exit(0)
    os.close(write)
    os.waitpid(child, 0)
    from_child = os.read(read, 64).decode()
    os.close(read)
    ours = new_uuid()
    assert from_child and from_child != ours
    assert len({first, ours, from_child}) == 3


def test_parts_are_sent_with_their_keys_in_order_and_without_empty_fields() -> None:
    topic = Coding(system="http://snomed.info/sct", code="363679005")
    card = Card(
        uuid="u",
        summary="s",
        indicator="info",
        detail="d",
        source=Source(label="l", url="https://x.example", topic=topic),
        links=[Link(label="a", url="https://a.example", type="absolute")],
        extension={"ns": CardMarks(order="ServiceRequest/1", study=None, verdict="v", rule="r")},
    )
    sent = to_json(card)
    assert list(sent) == ["uuid", "summary", "indicator", "detail", "source", "links", "extension"]
    assert sent["source"]["topic"] == {"system": "http://snomed.info/sct", "code": "363679005"}
    # The card's own data names the study even when there is none; no consult id, no key.
    assert sent["extension"] == {
        "ns": {"order": "ServiceRequest/1", "study": None, "verdict": "v", "rule": "r"}
    }


def test_suggestions_and_actions_use_the_cds_hooks_names() -> None:
    remove = Action(type="delete", description="Remove", resource_id="ServiceRequest/1")
    offer = Suggestion(label="Remove it", uuid="u", is_recommended=True, actions=[remove])
    reason = OverrideReason(code="c", system="https://s.example", display="d")
    card = Card(
        uuid="u",
        summary="s",
        indicator="warning",
        detail="d",
        source=Source(label="l", url="https://x.example", topic=Coding(system="s", code="c")),
        links=[],
        override_reasons=[reason],
        suggestions=[offer],
        selection_behavior="at-most-one",
    )
    sent = to_json(card)
    assert list(sent)[-3:] == ["overrideReasons", "suggestions", "selectionBehavior"]
    assert list(sent["overrideReasons"][0]) == ["code", "system", "display"]
    assert sent["suggestions"] == [
        {
            "label": "Remove it",
            "uuid": "u",
            "isRecommended": True,
            "actions": [
                {"type": "delete", "description": "Remove", "resourceId": "ServiceRequest/1"}
            ],
        }
    ]
