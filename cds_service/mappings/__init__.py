"""The service's clinical knowledge: ``mappings/*.json`` loaded and validated once at start-up
into an immutable ``Knowledge`` (``load_dir``).

Modules: ``loader`` (``load_dir``, ``Knowledge``), ``schema`` (the shape of the code, order-text,
override and words files), ``codes`` (``CodeMap``), ``patterns`` (linear-time regular
expressions), ``text`` (``TextMatcher``), ``words`` (``WordMatcher``), ``guideline`` and
``wording`` (what the cards and pages say). Each file's loader, called by ``load_dir`` alone,
sits with what it builds; a leading underscore marks a name internal to the package.
"""

from .codes import CodeMap
from .guideline import LinkRole, StudyInfo
from .loader import Knowledge, load_dir
from .patterns import LINEAR_TIME
from .schema import USABLE, USABLE_STRICT
from .text import TextMatcher
from .wording import GUIDANCE_KINDS, CardWording
from .words import WordMatcher

__all__ = [
    "GUIDANCE_KINDS",
    "LINEAR_TIME",
    "USABLE",
    "USABLE_STRICT",
    "CardWording",
    "CodeMap",
    "Knowledge",
    "LinkRole",
    "StudyInfo",
    "TextMatcher",
    "WordMatcher",
    "load_dir",
]
