"""The app factory for the vendor API; everything is built here and in the lifespan."""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

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
from traffic_center.audit.trail import AuditTrail
from traffic_center.broker.authenticator import Authenticator
from traffic_center.broker.service import Broker, BrokerLimits
from traffic_center.domain.errors import TrafficCenterError, TransferAborted
from traffic_center.exchanges.base import RelayCollaborators
from traffic_center.exchanges.dossiers import DossierRelay
from traffic_center.exchanges.notifications import NotificationRelay
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
    registry: CollectorRegistry | None = None,
    clock: Callable[[], dt.datetime] = utc_now,
    lifecycle: Lifecycle | None = None,
) -> FastAPI:
    metrics = Metrics(registry if registry is not None else CollectorRegistry())

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        store = await Store.open(settings.effective_database_url, migrate=settings.run_migrations)
        try:
            app.state.services = build_services(settings, store, metrics, clock)
            if lifecycle is not None:
                audit = app.state.services.audit
                lifecycle.audit_pending = lambda: audit.pending
            try:
                yield
            finally:
                await app.state.services.aclose()
        finally:
            await store.close()

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


def build_services(
    settings: Settings, store: Store, metrics: Metrics, clock: Callable[[], dt.datetime]
) -> Services:
    authenticator = Authenticator(
        store, cache_seconds=settings.revocation_cache_seconds, clock=clock
    )
    broker = Broker(
        store,
        secret=settings.server_secret(),
        limits=BrokerLimits(
            session_ttl=dt.timedelta(seconds=settings.session_ttl_seconds),
            sessions_per_minute=settings.rate_limit_sessions_per_minute,
            endpoint_lists_per_minute=settings.rate_limit_endpoints_per_minute,
        ),
        clock=clock,
    )
    upstream = build_upstream(settings, metrics)
    store.database.observe = lambda kind, seconds: metrics.store_latency.labels(kind).observe(
        seconds
    )
    audit = AuditTrail(
        store,
        secret=settings.server_secret(),
        metrics=metrics,
        clock=clock,
        status_for=problems.status_for,
    )
    collaborators = RelayCollaborators(
        store=store, broker=broker, upstream=upstream, audit=audit, metrics=metrics, clock=clock
    )
    dossiers = DossierRelay(collaborators, require_release=settings.require_parent_release)
    notifications = NotificationRelay(collaborators)
    return Services(
        settings,
        store,
        authenticator,
        broker,
        metrics,
        clock,
        upstream,
        dossiers,
        notifications,
        audit,
    )


def build_upstream(settings: Settings, metrics: Metrics) -> UpstreamClient | None:
    """The relay's client, when this node has a relay certificate; else the relay refuses."""
    cert, key = settings.upstream_cert_path, settings.upstream_key_path
    if not (cert.is_file() and key.is_file()):
        log.warning("no relay certificate at %s: dossier and notification relays answer 503", cert)
        return None
    limits = RelayLimits(
        connect_timeout_seconds=settings.relay_connect_timeout_seconds,
        read_timeout_seconds=settings.relay_read_timeout_seconds,
        max_dossier_bytes=settings.relay_max_dossier_bytes,
        max_in_flight=settings.relay_max_in_flight,
    )
    context = upstream_ssl_context(cert=cert, key=key, trust=settings.upstream_trust_path)
    return UpstreamClient(
        limits,
        ssl_context=context,
        user_agent=f"oso-traffic-center/{__version__}",
        on_in_flight=metrics.relays_in_flight.set,
    )


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(TrafficCenterError, problems.handle_domain_error)
    app.add_exception_handler(RequestValidationError, problems.handle_validation_error)
    app.add_exception_handler(StarletteHTTPException, problems.handle_http_error)
    app.add_exception_handler(Exception, problems.handle_unexpected_error)
