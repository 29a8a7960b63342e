"""``cds-service check-mappings``: validate the mapping files and the discovery file."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from ..config import SettingsError, load_settings
from ..errors import MappingError


def _check_mappings(args: argparse.Namespace) -> int:
    from ..mappings import load_dir
    from ..rules import REQUIRED_CONCEPTS, WARNING_ENABLERS
    from ..services import load_services

    directory = Path(args.directory) if args.directory else load_settings().mappings_dir
    try:
        knowledge = load_dir(directory, REQUIRED_CONCEPTS, WARNING_ENABLERS)
        load_services()
    except (MappingError, SettingsError) as exc:
        print(f"cds-service: invalid mapping data: {exc}", file=sys.stderr)
        return 1
    codes = knowledge.codes
    total = 0
    for concept_id in sorted(codes.concepts):
        concept = codes.concepts[concept_id]
        total += len(concept.codes)
        if args.verbose:
            print(f"{codes.sources[concept_id]:28} {concept_id:40} {len(concept.codes):3} codes")
    phrases = knowledge.words.phrase_count
    print(
        f"ok: {len(codes.concepts)} concepts, {total} codes in {len(knowledge.files)} files; "
        f"{phrases} phrases in words.json"
    )
    return 0


def register(sub: Any) -> None:
    """Add this module's command(s) to the parser."""
    check = sub.add_parser("check-mappings", help="validate mappings/*.json and the discovery file")
    check.add_argument("directory", nargs="?")
    check.add_argument("-v", "--verbose", action="store_true")
    check.set_defaults(func=_check_mappings)
