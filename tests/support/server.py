"""A real Traffic Center (both listeners, real TLS) in a thread, for tests."""

from __future__ import annotations

import asyncio
import datetime as dt
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from prometheus_client import CollectorRegistry

from tests.support.world import World
from traffic_center.admin.certificates import CertificateAdmin
from traffic_center.admin.registry import RegistryAdmin
from traffic_center.admin.sandbox import SandboxBuilder
from traffic_center.pki.ca import CertificateAuthority
from traffic_center.server.embedded import ServerThread
from traffic_center.server.runner import TrafficCenterServer
from traffic_center.settings import Settings
from traffic_center.store.store import Store


@dataclass
class AdjustableClock:
    """Real time plus an offset the test may move forward (session expiry, rate windows)."""

    offset: dt.timedelta = field(default_factory=dt.timedelta)

    def __call__(self) -> dt.datetime:
        return dt.datetime.now(dt.UTC) + self.offset


@dataclass
class TrafficCenterUnderTest:
    settings: Settings
    store: Store
    ca: CertificateAuthority
    certificates: CertificateAdmin
    registry: RegistryAdmin
    clock: AdjustableClock
    thread: ServerThread
    world: World
    metrics_registry: CollectorRegistry

    @property
    def server(self) -> TrafficCenterServer:
        assert isinstance(self.thread.server, TrafficCenterServer)
        return self.thread.server

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.server.vendor.bound_port}"

    @property
    def ops_url(self) -> str:
        return f"http://127.0.0.1:{self.server.ops.bound_port}"

    @property
    def secret(self) -> bytes:
        configured = self.settings.configured_secret()
        assert configured is not None
        return configured

    @property
    def ca_pem(self) -> Path:
        return self.settings.ca_dir / "ca.pem"

    async def stop(self) -> None:
        await self.world.aclose()
        await asyncio.to_thread(self.thread.stop)
        await self.store.close()


async def start_traffic_center(
    home: Path,
    database_url: str,
    *,
    upstream_transport: httpx.AsyncBaseTransport | None = None,
    httptools: bool | None = None,
    uvloop: bool | None = None,
    **overrides: Any,
) -> TrafficCenterUnderTest:
    defaults: dict[str, Any] = {
        "home": home,
        "database_url": database_url,
        "port": 0,
        "ops_port": 0,
        "secret_key": secrets.token_hex(32),
        # Quick heartbeats, so readiness follows the store within a second in tests.
        "node_heartbeat_seconds": 0.25,
        "orphan_grace_seconds": 5.0,
        "rate_limit_sessions_per_minute": 100_000,
        "rate_limit_endpoints_per_minute": 100_000,
        "rate_limit_checks_per_minute": 100_000,
        "rate_limit_dossiers_per_minute": 100_000,
        "rate_limit_closes_per_minute": 100_000,
        "rate_limit_notifications_per_minute": 100_000,
        "rate_limit_audit_reads_per_minute": 100_000,
        "rate_limit_whoami_per_minute": 100_000,
    }
    settings = Settings(**{**defaults, **overrides})
    clock = AdjustableClock()
    ca = CertificateAuthority.create(settings.ca_dir)
    store = await Store.open(settings.effective_database_url)
    secret = settings.configured_secret()
    assert secret is not None
    builder = SandboxBuilder(ca, store, secret=secret, clock=clock)
    await builder.server_certificate(home / "server", hosts=["127.0.0.1", "localhost"])
    await builder.relay_certificate(home / "relay")
    registry = CollectorRegistry()
    server = TrafficCenterServer(
        settings,
        registry=registry,
        clock=clock,
        upstream_transport=upstream_transport,
        httptools=httptools,
        uvloop=uvloop,
    )
    thread = ServerThread(server, loop_factory=server.loop_factory)
    await asyncio.to_thread(thread.start)
    base_url = f"https://127.0.0.1:{server.vendor.bound_port}"
    world = World(
        builder=builder,
        base_url=base_url,
        ca_pem=settings.ca_dir / "ca.pem",
        directory=home / "parties",
    )
    return TrafficCenterUnderTest(
        settings=settings,
        store=store,
        ca=ca,
        certificates=builder.certificates,
        registry=builder.registry,
        clock=clock,
        thread=thread,
        world=world,
        metrics_registry=registry,
    )
