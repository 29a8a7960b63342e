"""``cds-service load-fixtures``: PUT the fixture patients into a FHIR server."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from ..config import PACKAGE_DIR


def _load_fixtures(args: argparse.Namespace) -> int:
    import requests

    from ..fhir.client import FhirUnavailable, put_resources

    folder = Path(args.fixtures)
    paths = sorted(folder.glob("*.json"))
    if not paths:
        print(
            f"cds-service: no patient Bundles (*.json) in {folder}: give --fixtures FOLDER",
            file=sys.stderr,
        )
        return 1
    session = requests.Session()
    try:
        if args.wait and not _wait_for_fhir(session, args.fhir, args.wait):
            print(
                f"cds-service: {args.fhir}/metadata did not answer within {args.wait:g} s",
                file=sys.stderr,
            )
            return 1
        return _put_fixtures(session, paths, args, put_resources, FhirUnavailable)
    finally:
        session.close()


def _wait_for_fhir(session: Any, base: str, seconds: float) -> bool:
    """Poll the server's CapabilityStatement until it answers 200 (a FHIR server starting up,
    as HAPI does for a minute in docker compose)."""
    import requests

    deadline = time.monotonic() + seconds
    while True:
        try:
            with session.get(f"{base.rstrip('/')}/metadata", timeout=5) as response:
                if response.status_code == 200:
                    return True
        except requests.RequestException:
            pass
        if time.monotonic() >= deadline:
            return False
        time.sleep(2)


def _put_fixtures(
    session: Any, paths: list[Path], args: argparse.Namespace, put: Any, unavailable: Any
) -> int:
    import requests

    seen: set[str] = set()
    total = 0
    for path in paths:
        bundle = json.loads(path.read_text(encoding="utf-8"))
        resources = [e["resource"] for e in bundle.get("entry", []) if "resource" in e]
        patient_ids = {r["id"] for r in resources if r.get("resourceType") == "Patient"}
        if patient_ids and patient_ids <= seen:
            continue  # several cases share one patient: load each patient once
        seen |= patient_ids
        try:
            total += put(session, args.fhir, resources, args.token)
        except (unavailable, requests.RequestException) as exc:
            print(f"cds-service: {path.name}: {exc}", file=sys.stderr)
            return 1
    print(f"loaded {len(seen)} patients ({total} resources) into {args.fhir}")
    return 0


def default_fixtures_dir() -> Path:
    """The repository's fixtures/patients in a source checkout, else the copy in the wheel."""
    source_tree = PACKAGE_DIR.parent / "fixtures" / "patients"
    return source_tree if source_tree.is_dir() else PACKAGE_DIR / "_fixtures" / "patients"


def register(sub: Any) -> None:
    """Add this module's command(s) to the parser."""
    load = sub.add_parser("load-fixtures", help="PUT the fixture patients into a FHIR server")
    load.add_argument(
        "--fhir", required=True, help="FHIR base URL, e.g. http://localhost:8080/fhir"
    )
    load.add_argument("--token", help="bearer token for the FHIR server")
    load.add_argument(
        "--fixtures",
        default=str(default_fixtures_dir()),
        help="folder of patient Bundles (default: the fixture patients shipped with the package)",
    )
    load.add_argument(
        "--wait",
        type=float,
        default=0,
        metavar="SECONDS",
        help="wait up to this long for the FHIR server to answer /metadata first",
    )
    load.set_defaults(func=_load_fixtures)
