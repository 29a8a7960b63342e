"""The cards' response parts: ids, and the JSON the parts are sent as."""

from __future__ import annotations

import os
import uuid

from cds_service.cards import new_uuid


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
