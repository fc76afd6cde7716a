"""What is known about an exchange while it runs; becomes its audit record at the end."""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass, field

from traffic_center.domain.audit import AuditRecord, AuditType, Phase
from traffic_center.domain.las_contract import (
    SESSION_HEADER,
    TRACEPARENT_HEADER,
    TRANSACTION_HEADER,
)
from traffic_center.domain.models import Endpoint, Session
from traffic_center.relay.trace import child_traceparent


@dataclass(slots=True)
class AuditEntry:
    type: AuditType
    caller_serial: str | None
    request_in: dt.datetime
    request_id: str | None = None
    node_id: str | None = None
    transaction_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    subject: str | None = None
    sessie_id: str | None = None
    doel_brin: str | None = None
    doel_routeringskenmerk: str | None = None
    bron_brin: str | None = None
    bron_routeringskenmerk: str | None = None
    forwarded_at: dt.datetime | None = None
    response_in: dt.datetime | None = None
    upstream_status: int | None = None
    size_bytes: int | None = None
    sha256: str | None = None
    # Set by a broker route on success: the result to record and the status it answers.
    result: str | None = None
    http_status: int | None = None
    # A refused caller's certificate fingerprint (SHA-256, as `openssl x509 -fingerprint
    # -sha256` prints it): for the log line only; the record names the serial.
    caller_fingerprint: str | None = None

    def concerns(self, session: Session, *, bron_routeringskenmerk: str | None = None) -> None:
        """The parties, once the session is known to be the caller's."""
        self.sessie_id = session.sessie_id
        self.doel_brin = session.doel_brin
        self.doel_routeringskenmerk = session.doel_routeringskenmerk
        self.bron_brin = session.bron_brin
        self.bron_routeringskenmerk = bron_routeringskenmerk or session.bron_routeringskenmerk

    def between(self, *, bron: Endpoint, doel: Endpoint) -> None:
        """The parties of an exchange outside a session (the SWV flow): both read it."""
        self.bron_brin, self.bron_routeringskenmerk = bron.brin, bron.routeringskenmerk
        self.doel_brin, self.doel_routeringskenmerk = doel.brin, doel.routeringskenmerk

    def upstream_headers(self, incoming_traceparent: str | None) -> dict[str, str]:
        """Headers on every call to a LAS; the session's id when there is a session."""
        headers = {
            TRANSACTION_HEADER: self.transaction_id,
            TRACEPARENT_HEADER: child_traceparent(incoming_traceparent),
        }
        if self.sessie_id is not None:
            headers[SESSION_HEADER] = self.sessie_id
        return headers

    def outcome(
        self,
        result: str,
        *,
        http_status: int | None,
        response_out: dt.datetime | None,
        recorded_at: dt.datetime | None = None,
        phase: Phase = Phase.FINAL,
    ) -> AuditRecord:
        """The record of this exchange as it stands; a started record has no response_out."""
        at = recorded_at or response_out
        assert at is not None
        return AuditRecord(
            type=self.type,
            transaction_id=self.transaction_id,
            recorded_at=at,
            result=result,
            http_status=http_status,
            request_id=self.request_id,
            caller_serial=self.caller_serial,
            subject=self.subject,
            sessie_id=self.sessie_id,
            doel_brin=self.doel_brin,
            doel_routeringskenmerk=self.doel_routeringskenmerk,
            bron_brin=self.bron_brin,
            bron_routeringskenmerk=self.bron_routeringskenmerk,
            upstream_status=self.upstream_status,
            request_in=self.request_in,
            forwarded_at=self.forwarded_at,
            response_in=self.response_in,
            response_out=response_out,
            size_bytes=self.size_bytes,
            sha256=self.sha256,
            phase=phase,
            node_id=self.node_id,
        )
