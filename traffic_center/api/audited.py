"""Every broker exchange on the record, the same way: gate, run, record the outcome."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Literal

from cryptography import x509

from traffic_center.api.services import Services
from traffic_center.audit.entry import AuditEntry
from traffic_center.broker.caller import Caller
from traffic_center.domain.audit import AuditType
from traffic_center.domain.errors import CallerRefused, InvalidInput, TrafficCenterError
from traffic_center.domain.identifiers import parse_sessie_id
from traffic_center.pki.inspect import serial_hex


@asynccontextmanager
async def audited(
    svc: Services,
    type: AuditType,
    caller: Caller,
    *,
    role: Literal["doel", "bron"],
    sessie_id: str | None = None,
) -> AsyncIterator[AuditEntry]:
    """Fail closed before the body runs; record its result (``entry.result``) or its error.

    The body sets ``entry.result`` and ``entry.http_status`` when it succeeds, and
    ``entry.concerns(session)`` once it knows the session.
    """
    entry = svc.audit.begin(type, caller_serial=caller.identity.serial)
    if role == "doel":
        entry.doel_brin, entry.doel_routeringskenmerk = caller.brin, caller.routeringskenmerk
    else:
        entry.bron_brin, entry.bron_routeringskenmerk = caller.brin, caller.routeringskenmerk
    # The session asked about, even when refused; only a well-formed id is kept.
    with contextlib.suppress(InvalidInput):
        entry.sessie_id = parse_sessie_id(sessie_id) if sessie_id is not None else None
    try:
        await svc.audit.ensure_writable()
        yield entry
    except TrafficCenterError as error:
        await svc.audit.failed(entry, error)
        raise
    assert entry.result is not None
    assert entry.http_status is not None
    await svc.audit.finished(entry, entry.result, http_status=entry.http_status)


async def record_refused_caller(svc: Services, refused: CallerRefused, pem: str | None) -> None:
    """A caller turned away before its request was looked at: on the record too."""
    entry = svc.audit.begin(AuditType.REFUSED_CALLER, caller_serial=_serial_of(pem))
    await svc.audit.failed(entry, refused)


def _serial_of(pem: str | None) -> str | None:
    if pem is None:
        return None
    try:
        return serial_hex(x509.load_pem_x509_certificate(pem.encode()))
    except ValueError:
        return None
