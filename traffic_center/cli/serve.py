"""`traffic-center serve` and `traffic-center db upgrade`."""

from __future__ import annotations

import argparse
import asyncio
import os

import structlog
from cryptography import x509

from traffic_center import __version__
from traffic_center.cli.context import open_signed_store, open_store, say, settings_from
from traffic_center.cli.dev import (
    DevLas,
    bootstrap_dev,
    curl_line,
    point_endpoints_at,
    start_dev_las,
    stop_dev_las,
)
from traffic_center.domain.errors import CaMissing
from traffic_center.observability.logging import configure_logging
from traffic_center.pki.inspect import serial_hex
from traffic_center.server.preflight import check_tls_files
from traffic_center.server.process import raise_open_files_limit, tune_garbage_collector
from traffic_center.server.runner import TrafficCenterServer
from traffic_center.server.workers import port_nobody_listens_on, run_workers
from traffic_center.settings import Settings, unknown_settings
from traffic_center.store.store import Store

log = structlog.get_logger("traffic_center.serve")


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
    _warn_of_unknown_settings()
    if settings.dev and settings.port == 0:
        # The dev schools' LAS are told the node's URL, and the curl line printed, before the
        # listener opens: with port 0 both named port 0. For a development node a moment's
        # race for the port is acceptable.
        settings = settings.model_copy(update={"port": port_nobody_listens_on(settings.host, 0)})
    raise_open_files_limit()
    tune_garbage_collector()
    asyncio.run(_prepare(settings))
    # Log events, not prints: a log shipper reading JSON lines sees the start-up too.
    log.info(
        "starting",
        api=f"https://{settings.host}:{settings.port}",
        ops=f"http://{settings.ops_host}:{settings.ops_port}",
        workers=settings.workers,
        version=__version__,
        dev=settings.dev,
    )
    dev_las = _start_dev_world(settings) if settings.dev else []
    try:
        if settings.workers > 1:
            run_workers(settings)
        else:
            TrafficCenterServer(settings).run()
    finally:
        stop_dev_las(dev_las)
    return 0


def _warn_of_unknown_settings() -> None:
    # A warning, not a refusal: other tools of the project read TC_* variables of their own,
    # and an operator's environment may hold one for a newer or older version.
    unknown = unknown_settings(os.environ)
    if unknown:
        log.warning(
            "unknown_settings",
            variables=list(unknown),
            did_you_mean={name: meant for name, meant in unknown.items() if meant},
            effect="ignored: no setting reads them",
        )


def _start_dev_world(settings: Settings) -> list[DevLas]:
    """The dev schools' reference LAS processes, their endpoints pointed at them."""
    running = start_dev_las(settings)
    try:
        asyncio.run(point_endpoints_at(settings, running))
    except BaseException:
        stop_dev_las(running)
        raise
    for las in running:
        log.info("dev_las", brin=las.school.brin, name=las.school.name, url=las.url)
    log.info("dev_try", command=curl_line(settings))
    return running


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
    check_tls_files(settings)
    # Migrate once here, before any worker starts; and refuse to start with a secret that
    # does not sign the audit log (or make the secret, once, for an empty log).
    async with open_signed_store(settings) as (store, _secret):
        await _warn_of_own_revoked_certificates(settings, store)


async def _warn_of_own_revoked_certificates(settings: Settings, store: Store) -> None:
    """A node loads its server and relay certificates at start only. Revoked in the inventory
    (replaced, as deploy/README.md's runbook says, and revoked before this node restarted
    with the new one), it would go on presenting it: LAS that check the CRL refuse it."""
    for role, path in (
        ("server", settings.server_cert_path),
        ("relay", settings.upstream_cert_path),
    ):
        if not path.is_file():
            continue
        serial = serial_hex(x509.load_pem_x509_certificate(path.read_bytes()))
        record = await store.certificates.get(serial)
        if record is not None and record.revoked_at is not None:
            log.warning(
                "own_certificate_revoked",
                certificate=role,
                path=str(path),
                serial=serial,
                revoked_at=record.revoked_at.isoformat(),
                effect="presented all the same: install its replacement and restart the node",
            )


async def upgrade_command(args: argparse.Namespace) -> int:
    settings = settings_from(args)
    async with open_store(settings.model_copy(update={"run_migrations": True})):
        pass
    say(f"database at head: {settings.effective_database_url.split('@')[-1]}")
    return 0
