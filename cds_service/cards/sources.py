"""The parts cards share: the card's source, its links (guideline links chosen by role, the
guidance page, the handout) and the override reasons offered."""

from __future__ import annotations

from collections.abc import Iterable

from ..mappings import Knowledge, LinkRole
from ..memo import Memo
from .models import Coding, Link, OverrideReason, Source
from .presentation import Presentation

TOPIC = Coding(system="http://snomed.info/sct", code="363679005", display="Imaging (procedure)")


def acr_source(knowledge: Knowledge, variant: int | None = None) -> Source:
    """The ACR criteria as a card's source: the file's variant unless another is named."""
    ref = knowledge.guideline.guideline
    label = knowledge.wording.card.source_label.format(variant=variant or ref.variant)
    return Source(label=label, url=ref.url, topic=TOPIC)


def absolute_link(label: str, url: str) -> Link:
    return Link(label=label, url=url, type="absolute")


def guideline_links(knowledge: Knowledge, roles: Iterable[LinkRole]) -> list[Link]:
    """The guideline file's links of these roles, in the file's order."""
    wanted = frozenset(roles)
    return [
        absolute_link(link.label, link.url)
        for link in knowledge.guideline.links
        if link.role in wanted
    ]


def handout_link(knowledge: Knowledge, where: Presentation) -> Link:
    return absolute_link(knowledge.wording.card.handout_link, where.handout_url)


# One entry per base URL and snooze setting: a handful.
_REASONS: Memo[tuple[int, str, tuple[int, ...]], tuple[OverrideReason, ...]] = Memo(64)


def override_reasons(knowledge: Knowledge, where: Presentation) -> tuple[OverrideReason, ...]:
    """The override reasons a warning offers: the snoozes only for the months offered."""
    system = where.override_system
    key = (id(knowledge.override_reasons), system, where.snooze_months)
    offered = _REASONS.get(key)
    if offered is None:
        days = {round(m * 365 / 12) for m in where.snooze_months}
        reasons = knowledge.override_reasons
        offered = _REASONS.remember(
            key,
            tuple(
                OverrideReason(code=c.code, system=system, display=c.display)
                for c in reasons.concept
                if reasons.snooze_days(c.code) in (None, *days)
            ),
        )
    return offered
