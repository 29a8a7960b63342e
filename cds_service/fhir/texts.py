"""The words a resource carries beyond its codes: a CodeableConcept's text and displays, the
displays of references, notes, and the reasons a record was made.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .elements import as_dict, as_list, as_str


def concept_texts(concept: Any) -> list[str]:
    """Every word a CodeableConcept carries: its text and each coding's display."""
    cc = as_dict(concept)
    out = [t] if (t := as_str(cc.get("text"))) else []
    for coding in as_list(cc.get("coding")):
        display = as_str(as_dict(coding).get("display"))
        if display and display not in out:
            out.append(display)
    return out


def reference_displays(references: Any) -> list[str]:
    """The displays of a list of References."""
    return [t for ref in as_list(references) if (t := as_str(as_dict(ref).get("display")))]


def reason_texts(raw: Mapping[str, Any]) -> list[str]:
    """Why a record was made, in words: every ``reasonCode``'s text and displays, and the
    displays of its ``reasonReference``s."""
    return [
        t for r in as_list(raw.get("reasonCode")) for t in concept_texts(r)
    ] + reference_displays(raw.get("reasonReference"))


def note_texts(raw: Mapping[str, Any]) -> list[str]:
    return [t for n in as_list(raw.get("note")) if (t := as_str(as_dict(n).get("text")))]
