"""The ops listener (plain HTTP, internal): /healthz, /readyz, /metrics.

No probe and no scrape waits on the store: a store outage must show as "not ready" and as
failing audit writes, never as a node that does not answer (a scrape that times out turns
``up`` to 0 and hides every other series). So /healthz and /metrics touch no database, and
/readyz reads state this node keeps current: when the store last took a write (the heartbeat,
every TC_NODE_HEARTBEAT_SECONDS, and every audit record), the audit trail's verdict, the CA
file, the drain. What needs a query (certificate expiry, open sessions, open exchanges) is
read in the background, one query at a time, and served from the gauges.

One pool per node: the ops app reads through the vendor app's store when both run in one
process (``Lifecycle.store``) and opens its own only in the ``--workers`` supervisor, where it
also proves the store writable in the background (the workers beat in their own processes).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import os
import time
from collections.abc import AsyncIterator, Callable, Coroutine, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass

import structlog
from cryptography import x509
from fastapi import FastAPI, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector

from traffic_center.domain.errors import TrafficCenterError
from traffic_center.observability.metrics import NodeGauges
from traffic_center.settings import Settings
from traffic_center.store.store import Store

log = structlog.get_logger("traffic_center.ops")

# A store with no successful write for this many heartbeats (and at least this long) is down.
STALE_HEARTBEATS = 3
STALE_FLOOR_SECONDS = 1.0


@dataclass(slots=True)
class Lifecycle:
    """Shared by the server runner, the vendor app and the ops app of one process.

    ``draining`` makes /readyz say 503 at once on SIGTERM. The vendor app sets the rest once
    its store is open: ``store`` (the ops app reads through the same pool), ``audit_writable``
    (the audit trail's verdict from its last write: False from a failed write until one
    succeeds again) and ``last_store_success`` (``time.monotonic()`` of the last write the
    store took). Records merely being written do not count: a node is not unready because it
    is busy. ``worker_pids``: set by the ``--workers`` supervisor, for process metrics.
    """

    draining: bool = False
    store: Store | None = None
    audit_writable: Callable[[], bool] | None = None
    last_store_success: Callable[[], float] | None = None
    worker_pids: Callable[[], Sequence[int]] | None = None


def create_ops_app(
    settings: Settings,
    *,
    registry: CollectorRegistry,
    lifecycle: Lifecycle,
    clock: Callable[[], dt.datetime],
    own_store: bool = False,
) -> FastAPI:
    """``own_store``: no vendor app in this process (the supervisor of ``--workers``)."""
    own = CollectorRegistry()
    gauges = NodeGauges(own, worker_pids=lambda: _worker_pids(lifecycle))
    interval = settings.node_heartbeat_seconds
    stale_after = max(STALE_HEARTBEATS * interval, STALE_FLOOR_SECONDS)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with contextlib.AsyncExitStack() as stack:
            if own_store:
                store = await Store.open(
                    settings.effective_database_url,
                    migrate=False,
                    pool_size=settings.database_pool_size,
                    max_overflow=settings.database_max_overflow,
                )
                stack.push_async_callback(store.close)
                beat = _WriteProbe(store, clock)
                lifecycle.store = store
                lifecycle.audit_writable = lambda: beat.writable
                lifecycle.last_store_success = lambda: beat.succeeded_at
                await stack.enter_async_context(_background(beat.run(interval), "ops-write-probe"))
            refresher = _Refresher(lifecycle, gauges, clock)
            await stack.enter_async_context(_background(refresher.run(interval), "ops-refresher"))
            yield

    app = FastAPI(title="Traffic Center ops", lifespan=lifespan, docs_url=None, redoc_url=None)

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "alive"}

    def readiness() -> dict[str, bool]:
        return {
            "store": _store_answers(lifecycle, stale_after),
            "audit_writable": lifecycle.audit_writable is not None and lifecycle.audit_writable(),
            "ca": _ca_ok(settings),
            "not_draining": not lifecycle.draining,
        }

    @app.get("/readyz")
    async def readyz() -> JSONResponse:
        checks = readiness()
        ready = all(checks.values())
        return JSONResponse(
            {"status": "ready" if ready else "not ready", "checks": checks},
            status_code=200 if ready else 503,
        )

    @app.get("/metrics")
    async def metrics() -> Response:
        gauges.ready.set(1 if all(readiness().values()) else 0)
        if lifecycle.last_store_success is not None:
            gauges.store_silence.set(time.monotonic() - lifecycle.last_store_success())
        body = generate_latest(_worker_registry(registry)) + generate_latest(own)
        return Response(body, media_type=CONTENT_TYPE_LATEST)

    return app


def _store_answers(lifecycle: Lifecycle, stale_after: float) -> bool:
    """A write within the last few heartbeats: a store that stopped answering shows here
    within seconds, while the write that found it so still waits (SQLite's busy timeout)."""
    if lifecycle.last_store_success is None:
        return False
    return time.monotonic() - lifecycle.last_store_success() <= stale_after


def _worker_pids(lifecycle: Lifecycle) -> Sequence[int] | None:
    return None if lifecycle.worker_pids is None else lifecycle.worker_pids()


@asynccontextmanager
async def _background(work: Coroutine[None, None, None], name: str) -> AsyncIterator[None]:
    """Run ``work`` while the app runs; cancelled at shutdown."""
    task = asyncio.create_task(work, name=name)
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def _worker_registry(registry: CollectorRegistry) -> CollectorRegistry:
    """With several workers, each writes its own files; collect them all (multiprocess mode)."""
    directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if not directory:
        return registry
    combined = CollectorRegistry()
    MultiProcessCollector(combined, path=directory)  # type: ignore[no-untyped-call]
    return combined


class _Refresher:
    """Reads what the gauges show from the store, one query after another, in the background.

    Never cancelled mid-query (an abandoned query would keep its connection busy until the
    store gives up): a slow store only makes the values older; they keep their last value.
    """

    def __init__(
        self, lifecycle: Lifecycle, gauges: NodeGauges, clock: Callable[[], dt.datetime]
    ) -> None:
        self._lifecycle = lifecycle
        self._gauges = gauges
        self._clock = clock

    async def run(self, interval: float) -> None:
        while True:
            store = self._lifecycle.store
            if store is not None:
                try:
                    await self.refresh(store)
                except TrafficCenterError as error:
                    log.warning("ops_refresh_failed", code=error.code)
                except Exception as error:  # a bug must not freeze the gauges for good
                    log.error("ops_refresh_failed", error=type(error).__name__)
            await asyncio.sleep(interval)

    async def refresh(self, store: Store) -> None:
        now = self._clock()
        soonest = await store.certificates.soonest_expiry(now)
        if soonest is not None:
            self._gauges.soonest_expiry.set((soonest - now).total_seconds())
        next_update = await store.certificates.crl_next_update()
        if next_update is not None:
            self._gauges.crl_next_update.set((next_update - now).total_seconds())
        self._gauges.sessions_open.set(await store.sessions.open_count(now))
        self._gauges.audit_open_exchanges.set(await store.audit.open_count())


class _WriteProbe:
    """The supervisor's own proof that the store takes writes (its workers beat elsewhere)."""

    def __init__(self, store: Store, clock: Callable[[], dt.datetime]) -> None:
        self._store = store
        self._clock = clock
        self.writable = False
        self.succeeded_at = float("-inf")

    async def run(self, interval: float) -> None:
        while True:
            try:
                await self._store.audit.probe_write(self._clock(), secret=None)
            except TrafficCenterError:
                self.writable = False
            else:
                self.writable = True
                self.succeeded_at = time.monotonic()
            await asyncio.sleep(interval)


def _ca_ok(settings: Settings) -> bool:
    try:
        x509.load_pem_x509_certificates(settings.client_ca_path.read_bytes())
    except (OSError, ValueError):
        return False
    return True
