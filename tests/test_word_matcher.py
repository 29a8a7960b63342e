"""The word matcher reads any note in time linear in its length."""

from __future__ import annotations

from pathlib import Path


def test_words_read_a_hostile_note_in_linear_time() -> None:
    """A 100 KiB note of repeated, negated or unmatched words is read in one pass per scope
    (Aho-Corasick, bounded negation windows): a child process with a generous limit, so a
    quadratic reader fails the test instead of hanging the suite."""
    import subprocess
    import sys
    import textwrap

    script = textwrap.dedent(
        """
        from cds_service.mappings import load_dir
        from cds_service.rules import REQUIRED_CONCEPTS, WARNING_ENABLERS
        from cds_service.mappings.words import SCOPES
        words = load_dir("mappings", REQUIRED_CONCEPTS, WARNING_ENABLERS).words
        notes = {
            "negated": "no cough " * 12_000,
            "repeated": "metastatic, " * 9_000,
            "one-clause": "x " * 50_000 + "bone pain",
            "no-spaces": "a" * 102_400,
        }
        for scope in SCOPES:
            for name, note in notes.items():
                found = {h.concept for h in words.find(scope, note)}
                assert ("cough" in found) is False or name != "negated", (scope, name)
        print("ok")
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script],
        cwd=str(Path(__file__).resolve().parents[1]),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "ok"
