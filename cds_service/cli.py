"""Console script ``cds-service``: serve, evaluate a request file, check the mapping files."""

from __future__ import annotations

import argparse
import errno
import ipaddress
import json
import logging
import os
import shutil
import socket
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import date
from pathlib import Path
from typing import Any

from flask import g

from . import __version__
from .config import PACKAGE_DIR, SettingsError, load_settings
from .errors import MappingError


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _port_in_use(host: str, port: int) -> bool:
    """True when another process listens on host:port (checked before gunicorn, which would
    retry for several seconds and then say only that it cannot connect)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host.strip("[]"), port))
        except OSError as exc:
            return exc.errno == errno.EADDRINUSE
    return False


@contextmanager
def _metrics_dir() -> Iterator[None]:
    """A fresh PROMETHEUS_MULTIPROC_DIR for the workers' metric files (before the app, and so
    prometheus_client, is imported), removed when the server stops. One given in the
    environment is kept, but emptied of an earlier run's files (their counts would be added)."""
    given = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if given:
        Path(given).mkdir(parents=True, exist_ok=True)
        for stale in Path(given).glob("*.db"):
            stale.unlink(missing_ok=True)
        yield
        return
    _remove_stale_metrics_dirs(Path(tempfile.gettempdir()))
    folder = tempfile.mkdtemp(prefix=f"cds-metrics-{os.getpid()}-")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = folder
    try:
        yield
    finally:
        os.environ.pop("PROMETHEUS_MULTIPROC_DIR", None)
        shutil.rmtree(folder, ignore_errors=True)


def _remove_stale_metrics_dirs(parent: Path) -> None:
    """Metrics folders of this user's servers that are gone without removing theirs (killed
    with SIGKILL): the pid in the name no longer runs."""
    for folder in parent.glob("cds-metrics-*-*"):
        pid = folder.name.split("-")[2]
        try:
            if not pid.isdigit() or folder.stat().st_uid != os.getuid():
                continue
            os.kill(int(pid), 0)
        except ProcessLookupError:
            shutil.rmtree(folder, ignore_errors=True)
        except OSError:
            continue  # alive under another user, or gone meanwhile


def _serve_command(args: argparse.Namespace) -> int:
    """``serve``: a busy port is one line; the metrics folder lives as long as the server."""
    if _port_in_use(args.host, args.port):
        print(
            f"cds-service: port {args.port} on {args.host} is already in use (another "
            "cds-service?): stop that process or choose another port with --port N "
            "(make serve PORT=N)",
            file=sys.stderr,
        )
        return 2
    with _metrics_dir():
        return _serve(args)


def _serve(args: argparse.Namespace) -> int:
    import gunicorn.http.wsgi
    from gunicorn.app.base import BaseApplication

    from . import create_app, metrics
    from .auth import IssuersError
    from .logs import gunicorn_logger_class

    try:
        app = create_app()
    except (MappingError, SettingsError, IssuersError) as exc:
        print(f"cds-service: cannot start: {exc}", file=sys.stderr)
        return 2
    except PermissionError as exc:
        print(
            f"cds-service: cannot start: {exc.filename or exc}: permission denied for user "
            f"{os.getuid()}; set CDS_INSTANCE_DIR to a folder this user can write",
            file=sys.stderr,
        )
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
                "logger_class": gunicorn_logger_class(),  # gunicorn's own lines as JSON too
                "child_exit": lambda _arbiter, worker: metrics.mark_process_dead(worker.pid),
            }
            # No control socket (gunicorn >= 25): its default path is per user, which several
            # instances on one host would share, and the image's user has no home to put it in.
            if "control_socket_disable" in self.cfg.settings:
                options["control_socket_disable"] = True
            for key, value in options.items():
                if value is not None:
                    self.cfg.set(key, value)

        def load(self) -> Any:
            return front

    host = f"[{args.host}]" if ":" in args.host else args.host
    print(f"cds-service: serving on http://{host}:{args.port}/cds-services", file=sys.stderr)
    _Server().run()
    return 0


def _iso_date(option: str, value: str | None) -> date | None:
    """The date an option gives, or BadOption with one line saying what is wrong."""
    if value is None:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise BadOption(
            f"{option}: {value!r} is not a date (YYYY-MM-DD, e.g. 2026-11-25)"
        ) from None


class BadOption(ValueError):
    """A command-line value the command cannot use: one line on stderr, exit status 2."""


def _evaluate(args: argparse.Namespace) -> int:
    from . import create_app
    from .auth import IssuersError

    today = _iso_date("--today", args.today)
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
    from .report import build_report, render_html, render_text

    since = _iso_date("--since", args.since)
    url, instance, make_store, upgrade = _store_from_settings()
    upgrade(url, instance)
    until = _iso_date("--until", args.until)
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


def default_fixtures_dir() -> Path:
    """The repository's fixtures/patients in a source checkout, else the copy in the wheel."""
    source_tree = PACKAGE_DIR.parent / "fixtures" / "patients"
    return source_tree if source_tree.is_dir() else PACKAGE_DIR / "_fixtures" / "patients"


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
    serve.set_defaults(func=_serve_command)
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
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    args = parser.parse_args(argv)
    try:
        result: int = args.func(args)
    except BadOption as exc:
        print(f"cds-service {args.command}: {exc}", file=sys.stderr)
        return 2
    return result


if __name__ == "__main__":
    raise SystemExit(main())
