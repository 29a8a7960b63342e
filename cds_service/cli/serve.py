"""``cds-service serve``: the service under gunicorn, its metrics folder and start-up checks."""

from __future__ import annotations

import argparse
import errno
import ipaddress
import logging
import os
import shutil
import socket
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ..config import SettingsError
from ..errors import MappingError


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

    from .. import create_app, metrics
    from ..auth import IssuersError
    from ..logs import gunicorn_logger_class

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
    from ..serving import BufferedFront

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


def register(sub: Any) -> None:
    """Add this module's command(s) to the parser."""
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
