"""`traffic-center serve` and `traffic-center db upgrade`."""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path

from traffic_center.cli.context import open_store, say, settings_from
from traffic_center.cli.dev import bootstrap_dev, curl_line
from traffic_center.domain.errors import CaMissing
from traffic_center.observability.logging import configure_logging
from traffic_center.server.limits import raise_open_files_limit
from traffic_center.server.runner import TrafficCenterServer
from traffic_center.server.workers import run_workers
from traffic_center.settings import Settings


def add_parsers(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    serve = subparsers.add_parser("serve", help="run the Traffic Center")
    serve.add_argument("--host", help="vendor (mTLS) listener address [TC_HOST, 127.0.0.1]")
    serve.add_argument("--port", type=int, help="vendor listener port [TC_PORT, 8443]")
    serve.add_argument("--ops-host", help="ops listener address [TC_OPS_HOST, 127.0.0.1]")
    serve.add_argument("--ops-port", type=int, help="ops listener port [TC_OPS_PORT, 9464]")
    serve.add_argument("--tls-cert", type=Path, help="server certificate [TC_HOME/server.pem]")
    serve.add_argument("--tls-key", type=Path, help="server key [TC_HOME/server.key]")
    serve.add_argument("--workers", type=int, help="worker processes [TC_WORKERS, 1]")
    serve.add_argument(
        "--upstream-cert", type=Path, help="relay client certificate [TC_HOME/relay.pem]"
    )
    serve.add_argument("--upstream-key", type=Path, help="relay client key [TC_HOME/relay.key]")
    serve.add_argument(
        "--upstream-ca", type=Path, help="trust bundle for LAS server certificates [the TC CA]"
    )
    serve.add_argument(
        "--dev",
        action="store_true",
        default=None,
        help="create a dev CA, server certificate and two schools under TC_HOME if missing",
    )
    serve.set_defaults(handler=serve_command, serves_tls=True)

    db = subparsers.add_parser("db", help="the database")
    verbs = db.add_subparsers(dest="verb", required=True, metavar="VERB")
    upgrade = verbs.add_parser("upgrade", help="apply migrations up to the newest")
    upgrade.set_defaults(handler=upgrade_command)


def serve_command(args: argparse.Namespace) -> int:
    settings = settings_from(
        args,
        host=args.host,
        port=args.port,
        ops_host=args.ops_host,
        ops_port=args.ops_port,
        tls_cert=args.tls_cert,
        tls_key=args.tls_key,
        workers=args.workers,
        upstream_cert=args.upstream_cert,
        upstream_key=args.upstream_key,
        upstream_ca=args.upstream_ca,
        dev=args.dev,
    )
    configure_logging(settings.log_level)
    raise_open_files_limit()
    asyncio.run(_prepare(settings))
    say(f"vendor API (mTLS) on https://{settings.host}:{settings.port}")
    say(f"ops (/metrics /healthz /readyz) on http://{settings.ops_host}:{settings.ops_port}")
    if settings.dev:
        say("try: " + curl_line(settings))
    if settings.workers > 1:
        run_workers(settings)
    else:
        TrafficCenterServer(settings).run()
    return 0


async def _prepare(settings: Settings) -> None:
    if settings.dev:
        await bootstrap_dev(settings)
    for path, what in (
        (settings.client_ca_path, "client CA (run `traffic-center ca init`)"),
        (settings.server_cert_path, "server certificate (run `ca issue-server`)"),
        (settings.server_key_path, "server key"),
    ):
        if not path.is_file():
            raise CaMissing(f"missing {what}: {path}")
    async with open_store(settings):
        pass  # migrate once here, before any worker starts


async def upgrade_command(args: argparse.Namespace) -> int:
    settings = settings_from(args)
    async with open_store(settings.model_copy(update={"run_migrations": True})):
        pass
    say(f"database at head: {settings.effective_database_url.split('@')[-1]}")
    return 0
