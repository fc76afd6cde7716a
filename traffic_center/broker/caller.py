"""Who is calling: the peer as it connected, the identity its certificate proves, bound to a
registered endpoint."""
# Rule numbers refer to docs/rules.md.

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from traffic_center.domain.models import Endpoint, School, Session


@dataclass(frozen=True, slots=True)
class Peer:
    """The other end of one request, as the api layer saw it; the authenticator decides.

    ``tls_certificate`` is the client certificate the TLS layer verified (PEM).
    ``client_cert_header`` is the RFC 9440 ``Client-Cert`` field exactly as received (several
    field lines joined with ", "), believed only when ``tls_certificate`` is a valid proxy
    certificate of the TC CA. ``screened`` is what the authenticator's ``identify`` said of
    this peer earlier in the same request (the request guard's screen): not asked twice.
    """

    tls_certificate: str | None
    client_cert_header: str | None = None
    screened: CertificateIdentity | None = None


@dataclass(frozen=True, slots=True)
class CertificateIdentity:
    """What a valid client certificate says; proven by TLS and the inventory."""

    serial: str
    routeringskenmerk: str
    name: str
    not_after: dt.datetime
    brin: str | None = None  # the OU: the school the certificate was issued for


@dataclass(frozen=True, slots=True)
class Caller:
    """A certificate bound to an active endpoint of an active school (domain rule 1)."""

    identity: CertificateIdentity
    endpoint: Endpoint
    school: School

    @property
    def routeringskenmerk(self) -> str:
        return self.endpoint.routeringskenmerk

    @property
    def brin(self) -> str:
        return self.school.brin


@dataclass(frozen=True, slots=True)
class SessionAsked:
    """The session, and the endpoint in it, a relay request names (parsed): read with the
    caller's registration in one statement (issue 14), judged by the broker afterwards."""

    sessie_id: str
    routeringskenmerk: str


@dataclass(frozen=True, slots=True)
class SessionFound:
    """What the store held for a ``SessionAsked``, read with the caller: the session (None:
    no such session) and the endpoint named, with its school (None: no such endpoint)."""

    session: Session | None
    endpoint: tuple[Endpoint, School] | None
