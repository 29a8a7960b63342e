"""The bounded memo behind every remembered answer (codes, dates, order texts, base URLs,
override reasons, snoozes)."""

from __future__ import annotations

from cds_service.memo import Memo


def test_a_memo_never_holds_more_than_its_limit_plus_the_newest() -> None:
    memo: Memo[int, str] = Memo(3)
    sizes = [len(memo) for n in range(10) if memo.remember(n, str(n)) == str(n)]
    assert max(sizes) == 4  # emptied when over 3, before the next answer is kept
    assert memo[9] == "9"
    assert memo.get(0) is None  # forgotten


def test_a_remembered_none_is_an_answer() -> None:
    memo: Memo[str, str | None] = Memo(10)
    assert memo.remember("no date", None) is None
    assert "no date" in memo


def test_recall_computes_once_and_remembers_none() -> None:
    memo: Memo[str, str | None] = Memo(10)
    calls: list[tuple[str, ...]] = []

    def answer(*args: str) -> str | None:
        calls.append(args)
        return None if args == ("nothing",) else "-".join(args)

    assert memo.recall("k", answer, "a", "b") == "a-b"
    assert memo.recall("k", answer, "x") == "a-b"  # remembered: not computed again
    assert memo.recall("n", answer, "nothing") is None
    assert memo.recall("n", answer, "nothing") is None
    assert calls == [("a", "b"), ("nothing",)]
