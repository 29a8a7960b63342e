"""Console script ``cds-service``: serve, evaluate a request file, check the mapping files."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from .. import __version__
from . import check_mappings, database, evaluate, fixtures, serve
from .fixtures import default_fixtures_dir
from .options import BadOption
from .serve import default_workers

__all__ = ["default_fixtures_dir", "default_workers", "main"]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="cds-service", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    for command in (serve, evaluate, check_mappings, fixtures, database):
        command.register(sub)
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    args = parser.parse_args(argv)
    try:
        result: int = args.func(args)
    except BadOption as exc:
        print(f"cds-service {args.command}: {exc}", file=sys.stderr)
        return 2
    return result
