"""The app factory for the vendor API; everything is built here and in the lifespan."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import httpx
from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from prometheus_client import CollectorRegistry
from starlette.exceptions import HTTPException as StarletteHTTPException

from traffic_center import __version__
from traffic_center.api import problems
from traffic_center.api.middleware import MetricsMiddleware
from traffic_center.api.ops import Lifecycle
from traffic_center.api.routes import audit, exchanges, identity, las_contract, sessions
from traffic_center.api.services import Services
from traffic_center.audit.keys import chain_secret
from traffic_center.audit.nodes import NodeKeeper
from traffic_center.audit.trail import AuditTrail
from traffic_center.broker.authenticator import Authenticator
from traffic_center.broker.service import Broker, BrokerLimits
from traffic_center.domain.errors import TrafficCenterError, TransferAborted
from traffic_center.exchanges.base import RelayCollaborators
from traffic_center.exchanges.dossiers import DossierRelay
from traffic_center.exchanges.notifications import NotificationRelay
from traffic_center.exchanges.runner import ExchangeRunner
from traffic_center.exchanges.service import Exchanges
from traffic_center.observability.context import RequestIdMiddleware
from traffic_center.observability.expected_aborts import quiet_expected_aborts
from traffic_center.observability.metrics import Metrics
from traffic_center.relay.limits import RelayLimits
from traffic_center.relay.upstream import UpstreamClient, upstream_ssl_context
from traffic_center.settings import Settings
from traffic_center.store.store import Store

log = logging.getLogger("traffic_center.api")

API_DESCRIPTION = """\
The OSO Traffic Center between a new school's LAS (doel) and the current school's LAS (bron).

Every call is made over mutual TLS with a client certificate issued by the Traffic Center's
CA; the caller is whoever that certificate says. Errors are `application/problem+json` with a
stable `code`; where OSO defines a result code, that code is used.
"""


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def create_app(
    settings: Settings,
    *,
    store: Store | None = None,
    upstream_transport: httpx.AsyncBaseTransport | None = None,
    clock: Callable[[], dt.datetime] | None = None,
    registry: CollectorRegistry | None = None,
    lifecycle: Lifecycle | None = None,
) -> FastAPI:
    """The vendor API. Seams for tests: a ``store`` the caller owns (it is not closed here),
    an httpx ``upstream_transport`` for the relay (e.g. ``httpx.MockTransport``), a ``clock``."""
    metrics = Metrics(registry if registry is not None else CollectorRegistry())
    now = clock or utc_now

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with _opened(store, settings) as opened:
            secret = await chain_secret(settings.configured_secret(), settings.secret_file, opened)
            services, keeper = build_services(
                settings, opened, metrics, now, secret=secret, transport=upstream_transport
            )
            app.state.services = services
            if lifecycle is not None:
                lifecycle.audit_writable = lambda: services.audit.writable
            keeping = asyncio.create_task(keeper.run(), name="node-keeper")
            try:
                yield
            finally:
                keeping.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await keeping
                await services.aclose()

    app = FastAPI(
        title="OSO Traffic Center",
        version=__version__,
        description=API_DESCRIPTION,
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        openapi_url="/v1/openapi.json",
        # Issue 10: a slash redirect would reflect the caller's Host header into Location.
        redirect_slashes=False,
    )
    app.include_router(identity.router)
    app.include_router(sessions.router)
    app.include_router(exchanges.router)
    app.include_router(audit.router)
    app.webhooks.include_router(las_contract.webhooks)
    install_error_handlers(app)
    quiet_expected_aborts(TransferAborted)
    app.add_middleware(MetricsMiddleware, metrics=metrics)
    app.add_middleware(RequestIdMiddleware)
    return app


@asynccontextmanager
async def _opened(given: Store | None, settings: Settings) -> AsyncIterator[Store]:
    """The caller's store as is, or one of our own, opened and closed here."""
    if given is not None:
        yield given
        return
    store = await Store.open(
        settings.effective_database_url,
        migrate=settings.run_migrations,
        pool_size=settings.database_pool_size,
        max_overflow=settings.database_max_overflow,
    )
    try:
        yield store
    finally:
        await store.close()


def build_services(
    settings: Settings,
    store: Store,
    metrics: Metrics,
    clock: Callable[[], dt.datetime],
    *,
    secret: bytes,
    transport: httpx.AsyncBaseTransport | None = None,
) -> tuple[Services, NodeKeeper]:
    authenticator = Authenticator(
        store, cache_seconds=settings.revocation_cache_seconds, clock=clock
    )
    broker = Broker(
        store,
        secret=secret,
        limits=BrokerLimits(
            session_ttl=dt.timedelta(seconds=settings.session_ttl_seconds),
            sessions_per_minute=settings.rate_limit_sessions_per_minute,
            endpoint_lists_per_minute=settings.rate_limit_endpoints_per_minute,
        ),
        clock=clock,
    )
    upstream = build_upstream(settings, metrics, transport=transport)
    store.database.observe = lambda kind, seconds: metrics.store_latency.labels(kind).observe(
        seconds
    )
    node_id = str(uuid.uuid4())
    trail = AuditTrail(
        store,
        secret=secret,
        metrics=metrics,
        clock=clock,
        status_for=problems.status_for,
        node_id=node_id,
    )
    relays = RelayCollaborators(upstream=upstream, metrics=metrics, clock=clock)
    exchanges_service = Exchanges(
        runner=ExchangeRunner(authenticator=authenticator, audit=trail, metrics=metrics),
        broker=broker,
        dossiers=DossierRelay(relays, require_release=settings.require_parent_release),
        notifications=NotificationRelay(relays),
        store=store,
    )
    keeper = NodeKeeper(
        store,
        trail,
        node_id=node_id,
        heartbeat_seconds=settings.node_heartbeat_seconds,
        grace_seconds=settings.orphan_grace_seconds,
        clock=clock,
    )
    services = Services(settings, store, metrics, clock, upstream, exchanges_service, trail)
    return services, keeper


def build_upstream(
    settings: Settings, metrics: Metrics, *, transport: httpx.AsyncBaseTransport | None = None
) -> UpstreamClient | None:
    """The relay's client, when this node has a relay certificate (or a test transport);
    else the relay refuses."""
    cert, key = settings.upstream_cert_path, settings.upstream_key_path
    limits = RelayLimits(
        connect_timeout_seconds=settings.relay_connect_timeout_seconds,
        read_timeout_seconds=settings.relay_read_timeout_seconds,
        max_dossier_bytes=settings.relay_max_dossier_bytes,
        max_in_flight=settings.relay_max_in_flight,
    )
    user_agent = f"oso-traffic-center/{__version__}"
    if transport is not None:
        return UpstreamClient(
            limits,
            transport=transport,
            user_agent=user_agent,
            on_in_flight=metrics.relays_in_flight.set,
        )
    if not (cert.is_file() and key.is_file()):
        log.warning("no relay certificate at %s: dossier and notification relays answer 503", cert)
        return None
    context = upstream_ssl_context(cert=cert, key=key, trust=settings.upstream_trust_path)
    return UpstreamClient(
        limits,
        ssl_context=context,
        user_agent=user_agent,
        on_in_flight=metrics.relays_in_flight.set,
    )


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(TrafficCenterError, problems.handle_domain_error)
    app.add_exception_handler(RequestValidationError, problems.handle_validation_error)
    app.add_exception_handler(StarletteHTTPException, problems.handle_http_error)
    app.add_exception_handler(Exception, problems.handle_unexpected_error)
