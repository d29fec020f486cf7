"""``docfactory`` command line: serve, ingest, search, ask, documents, and operator commands.

The CLI talks to a running server when ``--address``/``DOCFACTORY_ADDRESS`` is set. Otherwise
``search``, ``ask``, ``ingest`` and ``documents`` go to the embedded default's background server
of the data directory (:mod:`docfactory.cli.daemon`: started by the first of them, reused by the
next ones, stopped when idle or by ``docfactory stop``), so a command costs the client's imports
and one local call; ``--no-daemon`` starts the embedded default in-process as before. Either way
the data persists under the data directory, so ``ingest`` then ``ask`` work as two commands.

One module per command group: :mod:`.ingest`, :mod:`.query` (search, ask), :mod:`.admin`
(documents, serve, worker, console, audit, db, and other packages' commands), :mod:`.daemon`.
Only what a command needs is imported: a client command imports gRPC and its stubs.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from collections.abc import Sequence
from typing import Any

import grpc

os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from docfactory.cli import daemon
from docfactory.cli.admin import (
    cmd_audit,
    cmd_console,
    cmd_db,
    cmd_documents,
    cmd_dossier,
    cmd_eval,
    cmd_eval_flow,
    cmd_eval_pii,
    cmd_report,
    cmd_serve,
    cmd_worker,
)
from docfactory.cli.ingest import cmd_ingest
from docfactory.cli.query import cmd_ask, cmd_search
from docfactory.cli.session import (
    CLASSIFICATIONS,
    QUERY_SERVICES,
    SEARCH_MODES,
    Session,
    local_uri,
    rpc_error,
)
from docfactory.core.config import Settings, load_settings
from docfactory.core.errors import DocfactoryError

__all__ = [
    "QUERY_SERVICES",
    "Session",
    "build_parser",
    "local_uri",
    "main",
]

# This module's commands, and the global options that take a value.
_OWN_COMMANDS = frozenset(
    {"serve", "console", "ingest", "search", "ask", "worker", "documents", "audit", "stop"}
    | {"daemon", "db"}
)
_VALUED_OPTIONS = frozenset(
    {"--address", "--api-key", "--data-dir", "--tls-cert", "--tls-key", "--tls-ca"}
)
# Through the background server on the embedded default.
_DAEMON_COMMANDS = frozenset({"search", "ask", "ingest", "documents"})
# Open the embedded index in this process: a background server on the data directory is
# stopped first (so does Session's in-process path, used by dossier and eval-flow).
_OWN_INDEX_COMMANDS = frozenset({"serve", "console"})


async def cmd_daemon(ns: argparse.Namespace, settings: Settings) -> int:
    return await daemon.run(settings)


async def cmd_stop(ns: argparse.Namespace, settings: Settings) -> int:
    pid = await asyncio.to_thread(daemon.stop, settings.data_dir)
    print(
        f"stopped the background server {pid}"
        if pid
        else f"no background server on {settings.data_dir}"
    )
    return 0


def _command_word(argv: Sequence[str]) -> str | None:
    """The command named in ``argv`` (None when there is none, e.g. ``--help``)."""
    it = iter(argv)
    for token in it:
        if token in _VALUED_OPTIONS:
            next(it, None)
        elif not token.startswith("-"):
            return token
    return None


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser; ``command``, when it is one of this module's own, leaves out the commands of
    other packages (a quick command does not import them)."""
    p = argparse.ArgumentParser(prog="docfactory", description=__doc__.split("\n")[0])
    p.add_argument(
        "--address",
        default=os.environ.get("DOCFACTORY_ADDRESS"),
        help="host:port of a running server (default: the embedded default, through its "
        "background server)",
    )
    p.add_argument(
        "--no-daemon",
        action="store_true",
        default=None,
        help="run the embedded default in this process, without the background server "
        "(DOCFACTORY_NO_DAEMON=1)",
    )
    p.add_argument("--api-key", default=os.environ.get("DOCFACTORY_API_KEY"))
    p.add_argument("--data-dir", help="data directory of the embedded default")
    # dest grpc_tls_*: `console` has its own --tls-cert/--tls-key (its HTTPS listener)
    p.add_argument("--tls-cert", dest="grpc_tls_cert", help="PEM chain (DOCFACTORY_TLS_CERT)")
    p.add_argument("--tls-key", dest="grpc_tls_key", help="PEM private key (DOCFACTORY_TLS_KEY)")
    p.add_argument("--tls-ca", dest="grpc_tls_ca", help="CA bundle (DOCFACTORY_TLS_CA)")
    p.add_argument("-v", "--verbose", action="store_true")
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("serve", help="run the gRPC services (all four by default)")
    s.add_argument(
        "--services", help="comma-separated subset: ingestion,chunking,embedding,answering"
    )
    s.add_argument("--port", type=int)
    s.add_argument("--host")
    s.add_argument("--metrics-port", type=int)
    s.add_argument(
        "--metrics-host",
        help="address /metrics listens on (default 127.0.0.1; 0.0.0.0 for Prometheus in a "
        "cluster, behind a NetworkPolicy)",
    )
    s.add_argument(
        "--insecure",
        action="store_true",
        help="allow a non-loopback --host without TLS (DOCFACTORY_INSECURE)",
    )
    s.add_argument(
        "--workers",
        type=int,
        help="bulk-ingestion worker processes to run beside the server "
        "(default DOCFACTORY_SERVE_WORKERS, 0)",
    )

    s.add_argument(
        "--dossier-workers",
        type=int,
        help="dossier worker processes to run beside the server (default "
        "DOCFACTORY_WORKFLOWS_SERVE_WORKERS, 1; 0 = none: run `docfactory dossier worker`)",
    )
    s.add_argument("--console-port", type=int, help="also serve the web console on this port")
    s.add_argument("--console-host", default="127.0.0.1")

    c = sub.add_parser("console", help="web console (reviewers, documents, jobs, usage, audit)")
    c.add_argument("--port", type=int, default=8080)
    c.add_argument("--host", default="127.0.0.1")
    c.add_argument("--auth-header", help="header of an authenticating proxy carrying the key")
    c.add_argument("--tls-cert", help="serve HTTPS with this certificate (PEM)")
    c.add_argument("--tls-key", help="private key of --tls-cert (PEM)")
    c.add_argument(
        "--insecure",
        action="store_true",
        help="allow a non-loopback --host without --tls-cert: plain HTTP, keys and session "
        "cookies in clear (DOCFACTORY_INSECURE)",
    )

    i = sub.add_parser("ingest", help="ingest files or folders")
    i.add_argument("paths", nargs="+")
    i.add_argument("--collection", default="default")
    i.add_argument("--classification", choices=list(CLASSIFICATIONS), default="internal")
    i.add_argument(
        "--concurrency",
        type=int,
        default=4,
        help="files in flight: parsing of the next ones overlaps embedding and indexing",
    )
    i.add_argument("--json", action="store_true", help="one JSON line per file")

    for name, helptext, arg in (
        ("search", "top passages for a query", "query"),
        ("ask", "stream a cited answer", "question"),
    ):
        q = sub.add_parser(name, help=helptext)
        q.add_argument(arg)
        q.add_argument("--collection", action="append", help="repeatable")
        q.add_argument("--top-k", type=int, default=0)
        q.add_argument("--mode", choices=list(SEARCH_MODES))
        q.add_argument("--use-case", default="")
        q.add_argument("--json", action="store_true")
        if name == "ask":
            q.add_argument(
                "--no-feedback",
                action="store_true",
                help="no feedback prompt after the answer (asked only on a terminal)",
            )

    w = sub.add_parser(
        "worker", help="run bulk-ingestion workers (durable jobs; DOCFACTORY_INGESTION_ADDRESS)"
    )
    w.add_argument(
        "--processes", type=int, help="worker processes to run (default DOCFACTORY_WORKERS, 2)"
    )

    d = sub.add_parser("documents", help="list or delete documents")
    d.add_argument("action", choices=["list", "delete"])
    d.add_argument("names", nargs="*")
    d.add_argument("--collection")
    d.add_argument("--json", action="store_true")

    a = sub.add_parser("audit", help="verify or export the hash-chained audit log")
    a.add_argument("action", choices=["verify", "export"])
    a.add_argument("--out", default="-", help="export: JSONL file (default stdout)")
    a.add_argument("--tenant")
    a.add_argument("--json", action="store_true")

    sub.add_parser("stop", help="stop the data directory's background server")
    sub.add_parser(
        "daemon", help="the background server itself (started by the CLI; stops when idle)"
    )

    db = sub.add_parser("db", help="schema of the metadata database (Alembic migrations)")
    db.add_argument("action", choices=["upgrade", "current"])

    if command in _OWN_COMMANDS:
        return p  # other packages' commands (and their imports) are not needed
    from docfactory.pii.cli import add_parser as add_pii_parser

    add_pii_parser(sub)
    from docfactory.evaluation.cli import add_parser as add_eval_parser

    add_eval_parser(sub)
    from docfactory.measurement.cli import add_parser as add_report_parser

    add_report_parser(sub)
    from docfactory.workflows.evalset.cli import add_parser as add_eval_flow_parser

    add_eval_flow_parser(sub)
    from docfactory.workflows.cli import add_parser as add_dossier_parser

    add_dossier_parser(sub)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else list(argv)
    ns = build_parser(_command_word(args)).parse_args(args)
    from docfactory.core.logging import setup_logging

    setup_logging("INFO" if ns.verbose else None)
    overrides: dict[str, Any] = {}
    if ns.data_dir:
        overrides["data_dir"] = ns.data_dir
    tls_flags = {"cert": ns.grpc_tls_cert, "key": ns.grpc_tls_key, "ca": ns.grpc_tls_ca}
    overrides["tls"] = {k: v for k, v in tls_flags.items() if v}
    if getattr(ns, "insecure", False):
        overrides["tls"]["insecure"] = True
    if ns.command == "serve":
        server: dict[str, Any] = {}
        if ns.port is not None:
            server["port"] = ns.port
        if ns.host:
            server["host"] = ns.host
        if ns.metrics_port is not None:
            server["metrics_port"] = ns.metrics_port
        if getattr(ns, "metrics_host", None):
            server["metrics_host"] = ns.metrics_host
        if server:
            overrides["server"] = server
        if ns.workers is not None:
            overrides["jobs"] = {"serve_workers": ns.workers}
        if ns.dossier_workers is not None:
            overrides["workflows"] = {"serve_workers": ns.dossier_workers}
    try:
        settings = load_settings(overrides=overrides)
        ns.daemon = ns.command in _DAEMON_COMMANDS and daemon.wanted(
            ns.address, settings, bool(ns.no_daemon)
        )
        if ns.command in _OWN_INDEX_COMMANDS and not ns.address:
            daemon.stop(settings.data_dir)  # one process owns the embedded index
        if ns.command == "worker":
            return cmd_worker(ns, settings)
        handler = {
            "daemon": cmd_daemon,
            "stop": cmd_stop,
            "serve": cmd_serve,
            "console": cmd_console,
            "ingest": cmd_ingest,
            "search": cmd_search,
            "eval-pii": cmd_eval_pii,
            "ask": cmd_ask,
            "documents": cmd_documents,
            "eval": cmd_eval,
            "audit": cmd_audit,
            "db": cmd_db,
            "report": cmd_report,
            "eval-flow": cmd_eval_flow,
            "dossier": cmd_dossier,
        }[ns.command]
        return asyncio.run(handler(ns, settings))
    except DocfactoryError as exc:
        print(f"docfactory: {exc}", file=sys.stderr)
        return 2
    except grpc.aio.AioRpcError as exc:
        print(f"docfactory: {rpc_error(exc)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    finally:
        logging.shutdown()
