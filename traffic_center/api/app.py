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
from cryptography import x509
from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from prometheus_client import CollectorRegistry
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import Message, Receive, Scope, Send

from traffic_center import USER_AGENT, __version__
from traffic_center.api import problems
from traffic_center.api.middleware import RequestLayer
from traffic_center.api.ops import Lifecycle
from traffic_center.api.plain import PlainFront
from traffic_center.api.routes import (
    audit,
    crl,
    docs,
    exchanges,
    identity,
    las_contract,
    sessions,
)
from traffic_center.api.services import Services
from traffic_center.audit.keys import chain_secret
from traffic_center.audit.nodes import NodeKeeper
from traffic_center.audit.trail import AuditTrail
from traffic_center.broker.authenticator import Authenticator
from traffic_center.broker.rate_limits import RateLimiter
from traffic_center.broker.retention import SessionRetention
from traffic_center.broker.service import Broker, BrokerLimits
from traffic_center.domain.errors import TrafficCenterError, TransferAborted
from traffic_center.exchanges.base import RelayCollaborators
from traffic_center.exchanges.dossiers import DossierRelay
from traffic_center.exchanges.notifications import NotificationRelay
from traffic_center.exchanges.refusals import RefusalLog
from traffic_center.exchanges.runner import ExchangeRunner
from traffic_center.exchanges.service import Exchanges
from traffic_center.observability.context import ASKED_METHOD
from traffic_center.observability.expected_aborts import quiet_expected_aborts
from traffic_center.observability.metrics import HandshakeRefusals, Metrics, StaleFound, labelled
from traffic_center.relay.limits import RelayLimits
from traffic_center.relay.slots import Share, SlotUsage
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


class VendorApi(FastAPI):
    """FastAPI, with its plain routes served before its middleware stack (``front``,
    api/plain.py): the hot operations pass one layer where the stack has ten."""

    front: PlainFront | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "HEAD":
            # RFC 9110 §9.3.2: HEAD wherever GET is served, with GET's headers and no body
            # (FastAPI routes only the methods declared: HEAD was 405).
            scope = {**scope, "method": "GET", ASKED_METHOD: "HEAD"}
            send = _headers_only(send)
        found = self.front.route_for(scope) if self.front is not None else None
        if found is None:
            await super().__call__(scope, receive, send)
            return
        scope["app"] = self  # as Starlette and its router set them
        scope.setdefault("router", self.router)
        await self.front.serve(*found, scope, receive, send)  # type: ignore[union-attr]


def _headers_only(send: Send) -> Send:
    """``send`` for a HEAD request answered as its GET: the answer's start as it is (its
    Content-Length the GET's), its body dropped."""

    async def sending(message: Message) -> None:
        if message["type"] == "http.response.body":
            if message.get("more_body", False):
                return
            message = {"type": "http.response.body", "body": b"", "more_body": False}
        await send(message)

    return sending


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
                lifecycle.store = opened  # the ops app reads through this pool: one per node
                lifecycle.audit_writable = lambda: services.audit.writable
                lifecycle.last_store_success = lambda: services.audit.last_success
            refusals = _handshake_refusals()
            if refusals is not None:
                refusals.add(metrics.count_refused_handshake)
            keeping = asyncio.create_task(keeper.run(), name="node-keeper")
            try:
                yield
            finally:
                if lifecycle is not None:
                    lifecycle.store = None  # closed below: the ops app stops reading it
                if refusals is not None:
                    refusals.remove(metrics.count_refused_handshake)
                keeping.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await keeping
                await services.aclose()

    app = VendorApi(
        title="OSO Traffic Center",
        version=__version__,
        description=API_DESCRIPTION,
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        # The contract is openapi.yaml, generated from this app and finished by api/contract.py
        # (GET /v1/openapi.yaml serves that file): FastAPI's unfinished document is not served.
        openapi_url=None,
        # Issue 10: a slash redirect would reflect the caller's Host header into Location.
        redirect_slashes=False,
    )
    # The hot paths as plain ASGI (api/plain.py), each in front of its declaration; first of
    # all, so the plain front looks at them alone: no other route matches their paths.
    app.router.routes[:0] = [
        sessions.open_session_route(),
        sessions.close_session_route(),
        exchanges.dossier_relay_route(),
    ]
    app.include_router(identity.router)
    app.include_router(sessions.router)
    app.include_router(exchanges.router)
    app.include_router(audit.router)
    app.include_router(crl.router)
    app.include_router(docs.router)
    app.webhooks.include_router(las_contract.webhooks)
    install_error_handlers(app)
    quiet_expected_aborts(TransferAborted)
    # Before any parsing: request id, metrics, and the guard (api/middleware.py).
    max_body = settings.max_request_body_bytes
    app.add_middleware(RequestLayer, metrics=metrics, max_body_bytes=max_body)
    app.front = PlainFront.of(app, metrics=metrics, max_body_bytes=max_body)
    return app


def _handshake_refusals() -> HandshakeRefusals | None:
    """Where the loop serving this app reports refused TLS handshakes (server/limits.py);
    None on a plain loop (an app under test without the vendor listener)."""
    refusals = getattr(asyncio.get_running_loop(), "handshake_refusals", None)
    return refusals if isinstance(refusals, HandshakeRefusals) else None


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


def _client_ca_certificates(settings: Settings) -> list[x509.Certificate]:
    """The CA(s) schools' certificates chain to: TLS checks direct ones with this file, the
    authenticator checks forwarded ones (RFC 9440) with the same. Missing: none believed."""
    path = settings.client_ca_path
    return x509.load_pem_x509_certificates(path.read_bytes()) if path.is_file() else []


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
        store,
        cache_seconds=settings.revocation_cache_seconds,
        clock=clock,
        trusted_issuers=_client_ca_certificates(settings),
    )
    broker = Broker(
        store,
        secret=secret,
        limits=BrokerLimits(
            session_ttl=dt.timedelta(seconds=settings.session_ttl_seconds),
        ),
        clock=clock,
    )
    upstream = build_upstream(settings, metrics, transport=transport)
    store_latency = labelled(metrics.store_latency)
    store.database.observe = lambda kind, seconds: store_latency(kind).observe(seconds)
    node_id = str(uuid.uuid4())
    trail = AuditTrail(
        store,
        secret=secret,
        metrics=metrics,
        clock=clock,
        status_for=problems.status_for,
        node_id=node_id,
    )
    refusals = RefusalLog(trail, window_seconds=settings.refusal_audit_window_seconds)
    retention = SessionRetention(
        store, retention=dt.timedelta(days=settings.session_retention_days), clock=clock
    )
    relays = RelayCollaborators(upstream=upstream, metrics=metrics, clock=clock)
    exchanges_service = Exchanges(
        runner=ExchangeRunner(
            authenticator=authenticator,
            audit=trail,
            metrics=metrics,
            limiter=RateLimiter(
                store,
                per_minute=rate_limits_per_minute(settings),
                clock=clock,
                window_seconds=settings.rate_limit_window_seconds,
            ),
            refusals=refusals,
        ),
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
        chores=[refusals.flush, retention.purge_now_and_then],
    )
    services = Services(
        settings, store, metrics, clock, upstream, exchanges_service, trail, refusals=refusals
    )
    return services, keeper


def rate_limits_per_minute(settings: Settings) -> dict[str, int]:
    """Rule 9: each route's budget per endpoint and minute (broker/rate_limits.ROUTES)."""
    return {
        "sessions": settings.rate_limit_sessions_per_minute,
        "checks": settings.rate_limit_checks_per_minute,
        "dossiers": settings.rate_limit_dossiers_per_minute,
        "closes": settings.rate_limit_closes_per_minute,
        "notifications": settings.rate_limit_notifications_per_minute,
        "endpoints": settings.rate_limit_endpoints_per_minute,
        "audit_reads": settings.rate_limit_audit_reads_per_minute,
        "whoami": settings.rate_limit_whoami_per_minute,
    }


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
        max_per_doel_school=settings.relay_max_per_doel_school,
        max_per_bron_endpoint=settings.relay_max_per_bron_endpoint,
        total_seconds=settings.relay_total_seconds,
        doel_write_timeout_seconds=settings.relay_doel_write_timeout_seconds,
    )

    def count_refusal(share: Share) -> None:
        metrics.relay_refusals.labels(share.value).inc()

    def observe(usage: SlotUsage) -> None:
        _observe_slots(metrics, usage)

    def count_stale(found: StaleFound) -> None:
        metrics.upstream_stale_connections.labels(found).inc()

    if transport is not None:
        return UpstreamClient(
            limits,
            transport=transport,
            user_agent=USER_AGENT,
            on_usage=observe,
            on_refused=count_refusal,
            on_stale=count_stale,
        )
    if not (cert.is_file() and key.is_file()):
        log.warning("no relay certificate at %s: dossier and notification relays answer 503", cert)
        return None
    context = upstream_ssl_context(cert=cert, key=key, trust=settings.upstream_trust_path)
    return UpstreamClient(
        limits,
        ssl_context=context,
        user_agent=USER_AGENT,
        on_usage=observe,
        on_refused=count_refusal,
        on_stale=count_stale,
    )


def _observe_slots(metrics: Metrics, usage: SlotUsage) -> None:
    metrics.relays_in_flight.set(usage.in_flight)
    metrics.relay_largest_share.labels(Share.DOEL_SCHOOL.value).set(usage.largest_doel_school)
    metrics.relay_largest_share.labels(Share.BRON_ENDPOINT.value).set(usage.largest_bron_endpoint)


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(TrafficCenterError, problems.handle_domain_error)
    app.add_exception_handler(RequestValidationError, problems.handle_validation_error)
    app.add_exception_handler(StarletteHTTPException, problems.handle_http_error)
    app.add_exception_handler(Exception, problems.handle_unexpected_error)
