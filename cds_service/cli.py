"""Console script ``cds-service``: serve, evaluate a request file, check the mapping files."""

from __future__ import annotations

import argparse
import ipaddress
import json
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from flask import g

from .config import SettingsError, load_settings
from .errors import MappingError


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _serve(args: argparse.Namespace) -> int:
    import gunicorn.http.wsgi
    from gunicorn.app.base import BaseApplication

    from . import create_app
    from .auth import IssuersError

    try:
        app = create_app()
    except (MappingError, SettingsError, IssuersError) as exc:
        print(f"cds-service: cannot start: {exc}", file=sys.stderr)
        return 2
    state = app.extensions["cds_service"]
    if state.verifier is None and not _is_loopback(args.host):
        if not args.allow_unauthenticated:
            print(
                f"cds-service: refusing to serve on {args.host} without client authentication: "
                "set CDS_JWT_ISSUERS_FILE, bind a loopback address, or pass "
                "--allow-unauthenticated (for a network you fully control)",
                file=sys.stderr,
            )
            return 2
        logging.getLogger("cds_service").warning(
            "!!! UNAUTHENTICATED on %s: any client that reaches this port can send PHI and "
            "read advice. Set CDS_JWT_ISSUERS_FILE for production. !!!",
            args.host,
        )
    gunicorn.http.wsgi.SERVER = ""  # no server banner in responses
    from .serving import BufferedFront

    # Each worker reads whole requests on an event loop before the app sees them (slow
    # clients hold a socket, not the worker); --threads calls at a time run the app in each
    # worker. See serving.py.
    front = BufferedFront(app, state.settings.max_body_bytes, max(args.threads, 1))

    class _Server(BaseApplication):  # type: ignore[misc]
        def load_config(self) -> None:
            options = {
                "bind": f"{args.host}:{args.port}",
                "workers": args.workers,
                "worker_class": "cds_service.serving.Worker",
                "timeout": 30,
                "graceful_timeout": 10,
                "keepalive": 5,
                "accesslog": "-" if args.access_log else None,
                "errorlog": "-",
                "loglevel": "info",
            }
            for key, value in options.items():
                if value is not None:
                    self.cfg.set(key, value)

        def load(self) -> Any:
            return front

    host = f"[{args.host}]" if ":" in args.host else args.host
    print(f"cds-service: serving on http://{host}:{args.port}/cds-services", file=sys.stderr)
    _Server().run()
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    from . import create_app

    path = Path(args.request)
    try:
        body = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        print(f"cds-service: cannot read {path}: {exc}", file=sys.stderr)
        return 2
    # Not audited: trying a request file is not a hook call of the pilot (issue 18).
    overrides: dict[str, Any] = {"audit_calls": False}
    if args.today:
        overrides["today"] = args.today
    app = create_app(overrides)
    services = app.extensions["cds_service"].services
    service_id = args.service
    if service_id is None:
        hook = body.get("hook") if isinstance(body, dict) else None
        service_id = next((s.id for s in services.values() if s.hook == hook), None)
        if service_id is None:
            print(f"cds-service: no service answers hook {hook!r}; use --service", file=sys.stderr)
            return 2
    try:
        with app.test_client() as client:
            response = client.post(f"/cds-services/{service_id}", json=body)
            decision = g.get("decision")
    finally:
        app.extensions["cds_service"].store.close()
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


def _check_mappings(args: argparse.Namespace) -> int:
    from .mappings import load_dir
    from .rules import REQUIRED_CONCEPTS, WARNING_ENABLERS
    from .services import load_services

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


def _load_fixtures(args: argparse.Namespace) -> int:
    import requests

    from .fhir_client import FhirUnavailable, put_resources

    folder = Path(args.fixtures)
    seen: set[str] = set()
    total = 0
    session = requests.Session()
    for path in sorted(folder.glob("*.json")):
        bundle = json.loads(path.read_text(encoding="utf-8"))
        resources = [e["resource"] for e in bundle.get("entry", []) if "resource" in e]
        patient_ids = {r["id"] for r in resources if r.get("resourceType") == "Patient"}
        if patient_ids and patient_ids <= seen:
            continue  # several cases share one patient: load each patient once
        seen |= patient_ids
        try:
            total += put_resources(session, args.fhir, resources, args.token)
        except (FhirUnavailable, requests.RequestException) as exc:
            print(f"cds-service: {path.name}: {exc}", file=sys.stderr)
            return 1
    print(f"loaded {len(seen)} patients ({total} resources) into {args.fhir}")
    return 0


def _store_from_settings() -> Any:
    from flask import Flask

    from .store import Store, audit_key, default_url, upgrade

    settings = load_settings()
    instance = Path(settings.instance_dir or Flask("cds_service").instance_path)
    url = settings.database_url or default_url(instance)
    return url, instance, lambda: Store(url, audit_key(settings.audit_key, instance)), upgrade


def _db(args: argparse.Namespace) -> int:
    url, instance, _, upgrade = _store_from_settings()
    upgrade(url, instance)
    print("database schema is up to date")
    return 0


def _report(args: argparse.Namespace) -> int:
    from datetime import date

    from .report import build_report, render_html, render_text

    url, instance, make_store, upgrade = _store_from_settings()
    upgrade(url, instance)
    since = date.fromisoformat(args.since) if args.since else None
    until = date.fromisoformat(args.until) if args.until else None
    store = make_store()
    try:
        report = build_report(store, since, until)
    finally:
        store.close()
    if args.html:
        Path(args.html).write_text(render_html(report), encoding="utf-8")
    if args.json:
        print(json.dumps(report, indent=2))
    elif not args.html:
        print(render_text(report))
    return 0


def default_workers() -> int:
    """Gunicorn workers when CDS_WORKERS is not set: twice the cores (at most 8), each running
    one call at a time by default (since issue 15 each worker reads requests on an event loop,
    serving.py; the figures below were measured with sync workers, which ran calls the same
    way). Measured with ``python -m bench --matrix --fhir`` on 2 cores (README, Performance):
    threads raise the p99 (the pipeline is CPU-bound), so processes; 4 workers serve twice the
    calls of 2 when calls wait on a FHIR server and 8 serve 1.8 x those of 4, but 8 did slightly
    worse than 4 on Synthea-size records with prefetch, at twice the memory. bench/ tests this
    number."""
    return min(2 * (os.cpu_count() or 1), 8)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="cds-service", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run the service under gunicorn")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument(
        "--workers", type=int, default=int(os.environ.get("CDS_WORKERS", default_workers()))
    )
    serve.add_argument("--threads", type=int, default=int(os.environ.get("CDS_THREADS", "1")))
    serve.add_argument("--access-log", action="store_true", help="log every request")
    serve.add_argument(
        "--allow-unauthenticated",
        action="store_true",
        help="serve a non-loopback address without CDS_JWT_ISSUERS_FILE (logs a loud warning)",
    )
    serve.set_defaults(func=_serve)
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
    evaluate.set_defaults(func=_evaluate)
    check = sub.add_parser("check-mappings", help="validate mappings/*.json and the discovery file")
    check.add_argument("directory", nargs="?")
    check.add_argument("-v", "--verbose", action="store_true")
    check.set_defaults(func=_check_mappings)
    load = sub.add_parser("load-fixtures", help="PUT the fixture patients into a FHIR server")
    load.add_argument(
        "--fhir", required=True, help="FHIR base URL, e.g. http://localhost:8080/fhir"
    )
    load.add_argument("--token", help="bearer token for the FHIR server")
    load.add_argument(
        "--fixtures",
        default=str(Path(__file__).resolve().parent.parent / "fixtures" / "patients"),
        help="folder of patient Bundles (default: the repository's fixtures/patients)",
    )
    load.set_defaults(func=_load_fixtures)
    db = sub.add_parser("db", help="database schema (Alembic migrations)")
    db.add_argument("action", choices=["upgrade"])
    db.set_defaults(func=_db)
    report = sub.add_parser(
        "report", help="the pilot's report: calls, cards, feedback, override reasons, weekly chart"
    )
    report.add_argument("--since", help="calls from this date (YYYY-MM-DD)")
    report.add_argument("--until", help="calls up to this date, inclusive (YYYY-MM-DD)")
    report.add_argument("--json", action="store_true", help="machine-readable output")
    report.add_argument("--html", metavar="FILE", help="write a self-contained HTML page")
    report.set_defaults(func=_report)
    args = parser.parse_args(argv)
    result: int = args.func(args)
    return result


if __name__ == "__main__":
    raise SystemExit(main())
