"""``cds-service evaluate``: the response to a request file, and ``--explain``'s account of it."""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

from flask import g

from ..config import SettingsError
from ..errors import MappingError
from .options import iso_date


def _evaluate(args: argparse.Namespace) -> int:
    from .. import create_app
    from ..auth import IssuersError

    today = iso_date("--today", args.today)
    path = Path(args.request)
    try:
        body = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        print(f"cds-service: cannot read {path}: {exc}", file=sys.stderr)
        return 2
    # Not audited unless asked: trying a request file is not a hook call of the pilot.
    overrides: dict[str, Any] = {"today": today} if today else {}
    with tempfile.TemporaryDirectory(prefix="cds-evaluate-") as scratch:
        if not args.audit:  # a trial run: audit into a throwaway database, not the pilot's
            overrides |= {"database_url": f"sqlite:///{scratch}/evaluate.sqlite3"}
            overrides |= {"instance_dir": scratch, "jwt_issuers_file": None}
            overrides |= {"audit_calls": False}
        try:
            app = create_app(overrides)
        except (MappingError, SettingsError, IssuersError) as exc:
            print(f"cds-service: cannot start: {exc}", file=sys.stderr)
            return 2
        state = app.extensions["cds_service"]
        try:
            service_id = args.service
            if service_id is None:
                hook = body.get("hook") if isinstance(body, dict) else None
                service_id = next((s.id for s in state.services.values() if s.hook == hook), None)
                if service_id is None:
                    print(
                        f"cds-service: no service answers hook {hook!r}; use --service",
                        file=sys.stderr,
                    )
                    return 2
            with app.test_client() as client:
                response = client.post(f"/cds-services/{service_id}", json=body)
                decision = g.get("decision")
        finally:
            state.store.close()  # the audit row written (--audit), every connection closed
            state.executor.shutdown()
    print(json.dumps(response.get_json(), indent=2, ensure_ascii=False))
    if args.explain and decision is not None:
        print(explain(decision.findings), file=sys.stderr)
    return 0 if response.status_code == 200 else 1


def explain(findings: Any) -> str:
    """Why each order got its verdict, and the records (with the code or phrase) behind it."""
    lines = ["explain:"]
    for f in findings:
        lines.append(f"  {f.order.reference}: {f.study or '-'} -> {f.verdict} ({f.reason})")
        cited = [f.cause] if f.cause else [*f.evidence, *(s.evidence for s in f.symptoms)]
        for e in cited:
            if e is None:
                continue
            when = f" {e.when.isoformat()}" if e.when else ""
            how = f" [{e.how}]" if e.how else ""
            lines.append(f"      {e.kind}/{e.id}{when} {e.concept}: {e.label!r}{how}")
    return "\n".join(lines)


def register(sub: Any) -> None:
    """Add this module's command(s) to the parser."""
    evaluate = sub.add_parser("evaluate", help="print the response to a CDS Hooks request file")
    evaluate.add_argument("request")
    evaluate.add_argument("--service", help="service id (default: the one for the request's hook)")
    evaluate.add_argument("--today", help="evaluate as of this date (YYYY-MM-DD)")
    evaluate.add_argument(
        "--explain",
        action="store_true",
        help="also print (to stderr) each verdict's rule and the records, codes and phrases "
        "behind it",
    )
    evaluate.add_argument(
        "--audit",
        action="store_true",
        help="record the call in the service's audit store (default: a trial run, not recorded)",
    )
    evaluate.set_defaults(func=_evaluate)
