"""The development world of `serve --dev`: a CA, the node's certificates, three schools, and a
live reference LAS per school, so a vendor's doel can fetch a dossier at once.

Everything is made once under TC_HOME and kept (a restart keeps the same identities); the LAS
processes are started with the node and stopped with it, and since they listen on fresh ports
each time, their endpoints are moved to where they listen (an audited `set-url`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import structlog

from traffic_center.admin.registry import RegistryAdmin
from traffic_center.admin.sandbox import (
    DEV_SCHOOLS,
    SandboxBuilder,
    SandboxSchool,
    open_or_create_ca,
)
from traffic_center.admin.store import open_signed_store, utc_now
from traffic_center.demo.processes import ChildProcess, child_env
from traffic_center.settings import Settings

LAS_READY_SECONDS = 30.0


@dataclass
class DevLas:
    school: SandboxSchool
    process: ChildProcess
    url: str


log = structlog.get_logger("traffic_center.serve")


async def bootstrap_dev(settings: Settings) -> list[Path]:
    """Idempotent: creates only what is missing, so a restart keeps the same identities."""
    ca, made = open_or_create_ca(settings.ca_dir, name="OSO Traffic Center dev CA")
    if made:
        log.info("dev_ca_created", ca_dir=str(settings.ca_dir))
    written: list[Path] = []
    async with open_signed_store(settings) as (store, secret):
        builder = SandboxBuilder(ca, store, secret=secret, clock=utc_now)
        server = settings.server_cert_path.with_suffix("")
        if await builder.server_certificate(server, hosts=["127.0.0.1", "localhost", "::1"]):
            written.append(settings.server_cert_path)
        if await builder.relay_certificate(settings.upstream_cert_path.with_suffix("")):
            written.append(settings.upstream_cert_path)
        for school in DEV_SCHOOLS:
            prefix = dev_dir(settings) / school.key
            # Registered first: `ca issue` issues only for a registered endpoint.
            await builder.register(school, url=f"https://127.0.0.1/oso/{school.key}")
            if await builder.client_certificate(school, prefix) is not None:
                written.append(prefix.with_suffix(".pem"))
            await builder.server_certificate(las_prefix(settings, school), hosts=["127.0.0.1"])
    return written


def start_dev_las(settings: Settings) -> list[DevLas]:
    """A reference LAS per dev school, on loopback; raises if one does not come up."""
    started: list[DevLas] = []
    try:
        for school in DEV_SCHOOLS:
            started.append(_start_las(settings, school))
    except BaseException:
        stop_dev_las(started)
        raise
    return started


def stop_dev_las(running: list[DevLas]) -> None:
    for las in running:
        las.process.stop()


async def point_endpoints_at(settings: Settings, running: list[DevLas]) -> None:
    """Each dev endpoint's URL where its LAS listens now."""
    async with open_signed_store(settings) as (store, secret):
        registry = RegistryAdmin(store, secret=secret, clock=utc_now)
        for las in running:
            current = await store.registry.get_endpoint(las.school.routeringskenmerk)
            if current is not None and current.url != las.url:
                await registry.move_endpoint(las.school.routeringskenmerk, url=las.url)


def _start_las(settings: Settings, school: SandboxSchool) -> DevLas:
    cert, client = las_prefix(settings, school), dev_dir(settings) / school.key
    logs = dev_dir(settings) / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    process = ChildProcess(
        f"las-{school.key}",
        [
            *("las", "serve", "--port", "0", "--ca", str(settings.client_ca_path)),
            *("--cert", f"{cert}.pem", "--key", f"{cert}.key"),
            *("--sector", school.sector, "--brin", school.brin),
            *("--tc-url", f"https://127.0.0.1:{settings.port}"),
            *("--client-cert", f"{client}.pem", "--client-key", f"{client}.key"),
        ],
        log_dir=logs,
        env=child_env(),
    )
    listening = process.wait_for_event(
        lambda event: event.get("event") == "listening", timeout=LAS_READY_SECONDS
    )
    return DevLas(school, process, str(listening["url"]))


def dev_dir(settings: Settings) -> Path:
    return settings.home / "dev"


def las_prefix(settings: Settings, school: SandboxSchool) -> Path:
    return dev_dir(settings) / f"las-{school.key}-server"


def curl_line(settings: Settings) -> str:
    home = settings.home
    return (
        f"curl --cacert {home}/ca/ca.pem --cert {home}/dev/school-a.pem "
        f"--key {home}/dev/school-a.key https://127.0.0.1:{settings.port}/v1/whoami"
    )
