"""Findings → CDS Hooks cards and rating system actions. Pure: the words come from
``mappings/wording.json`` and ``mappings/acr-variant-10.json``.

Modules: ``models`` (typed response parts, their JSON), ``presentation`` (what the cards
know of the call), ``text`` (markdown helpers), ``sources`` (source, links, override
reasons), ``warning`` and ``info`` (the card kinds), ``pama`` (the rating on the order),
``advice`` (findings → advice).
"""

from .advice import CARD_EXTENSION_KEY, Advice, build_advice
from .models import new_uuid
from .presentation import GUIDANCE_PATH, HANDOUT_PATH, OVERRIDE_PATH, Presentation
from .text import visible_words

__all__ = [
    "CARD_EXTENSION_KEY",
    "GUIDANCE_PATH",
    "HANDOUT_PATH",
    "OVERRIDE_PATH",
    "Advice",
    "Presentation",
    "build_advice",
    "new_uuid",
    "visible_words",
]
