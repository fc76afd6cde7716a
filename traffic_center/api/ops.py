"""The ops listener (plain HTTP, internal): /healthz, /readyz, /metrics."""

from __future__ import annotations

import asyncio
import datetime as dt
import os
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass

from cryptography import x509
from fastapi import FastAPI, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Gauge, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector

from traffic_center.domain.errors import TrafficCenterError
from traffic_center.settings import Settings
from traffic_center.store.store import Store

# A probe answers within this, whatever the store does.
PROBE_SECONDS = 2.0


@dataclass(slots=True)
class Lifecycle:
    """Shared by the server runner, the vendor app and the ops app of one process.

    ``draining`` makes /readyz say 503 at once on SIGTERM; ``audit_writable`` (set by the
    vendor app) is the audit trail's own verdict from its last write: False from a failed
    write until one succeeds again (the heartbeat retries every few seconds). Records merely
    being written do not count: a node is not unready because it is busy. Without a vendor
    app in the process (the supervisor of ``--workers``), readiness proves a write itself.
    """

    draining: bool = False
    audit_writable: Callable[[], bool] | None = None


def create_ops_app(
    settings: Settings,
    *,
    registry: CollectorRegistry,
    lifecycle: Lifecycle,
    clock: Callable[[], dt.datetime],
) -> FastAPI:
    own = CollectorRegistry()
    expiry = Gauge(
        "traffic_center_certificate_soonest_expiry_seconds",
        "Seconds until the soonest expiry among valid issued certificates.",
        registry=own,
    )
    ready_gauge = Gauge(
        "traffic_center_ready",
        "1 when this node is ready (store, audit log writable, CA, not draining), else 0.",
        registry=own,
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.store = await Store.open(settings.effective_database_url, migrate=False)
        try:
            yield
        finally:
            await app.state.store.close()

    app = FastAPI(title="Traffic Center ops", lifespan=lifespan, docs_url=None, redoc_url=None)

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "alive"}

    async def readiness() -> dict[str, bool]:
        return {
            "store": await _store_ok(app.state.store),
            "audit_writable": await _audit_writable(app.state.store, lifecycle, clock()),
            "ca": _ca_ok(settings),
            "not_draining": not lifecycle.draining,
        }

    @app.get("/readyz")
    async def readyz() -> JSONResponse:
        checks = await readiness()
        ready = all(checks.values())
        return JSONResponse(
            {"status": "ready" if ready else "not ready", "checks": checks},
            status_code=200 if ready else 503,
        )

    @app.get("/metrics")
    async def metrics() -> Response:
        soonest = await _soonest_expiry(app.state.store, clock())
        if soonest is not None:
            expiry.set((soonest - clock()).total_seconds())
        ready_gauge.set(1 if all((await readiness()).values()) else 0)
        body = generate_latest(_worker_registry(registry)) + generate_latest(own)
        return Response(body, media_type=CONTENT_TYPE_LATEST)

    return app


def _worker_registry(registry: CollectorRegistry) -> CollectorRegistry:
    """With several workers, each writes its own files; collect them all (multiprocess mode)."""
    directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if not directory:
        return registry
    combined = CollectorRegistry()
    MultiProcessCollector(combined, path=directory)  # type: ignore[no-untyped-call]
    return combined


async def _store_ok(store: Store) -> bool:
    """A read, bounded: a store that does not answer within seconds is not ready."""
    try:
        await asyncio.wait_for(store.database.ping(), PROBE_SECONDS)
    except (TrafficCenterError, TimeoutError):
        return False
    return True


async def _audit_writable(store: Store, lifecycle: Lifecycle, now: dt.datetime) -> bool:
    if lifecycle.audit_writable is not None:
        return lifecycle.audit_writable()
    try:
        await asyncio.wait_for(store.audit.probe_write(now, secret=None), PROBE_SECONDS)
    except (TrafficCenterError, TimeoutError):
        return False
    return True


async def _soonest_expiry(store: Store, now: dt.datetime) -> dt.datetime | None:
    try:
        return await store.certificates.soonest_expiry(now)
    except TrafficCenterError:
        return None


def _ca_ok(settings: Settings) -> bool:
    try:
        x509.load_pem_x509_certificates(settings.client_ca_path.read_bytes())
    except (OSError, ValueError):
        return False
    return True
