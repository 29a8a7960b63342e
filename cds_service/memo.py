"""Bounded memos: answers remembered by key, forgotten all at once when there are too many."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

K = TypeVar("K")
V = TypeVar("V")
_UNSEEN = object()  # "not remembered": None and False are answers too


class Memo(dict[K, V]):
    """A dict that empties itself once it holds more than ``limit`` entries.

    Keys often come from clients (codes, dates, order texts, Host headers), so no memo may grow
    without bound; emptying it at once is cheap, and the next calls refill what is still in
    use. Read it with one ``get`` (another thread may empty it between two lookups).
    """

    def __init__(self, limit: int) -> None:
        super().__init__()
        self.limit = limit

    def remember(self, key: K, value: V) -> V:
        """Keep ``value`` for ``key`` (emptying the memo first when it is over its limit)."""
        if len(self) > self.limit:
            self.clear()
        self[key] = value
        return value

    def recall(self, key: K, compute: Callable[..., V], *args: Any) -> V:
        """The answer remembered for ``key``, else ``compute(*args)``, remembered (one lookup:
        safe when another thread empties the memo)."""
        found = self.get(key, _UNSEEN)
        if found is _UNSEEN:
            return self.remember(key, compute(*args))
        return found  # type: ignore[return-value]
