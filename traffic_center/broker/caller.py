"""Who is calling: the identity the certificate proves, bound to a registered endpoint."""
# Rule numbers refer to docs/rules.md.

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from traffic_center.domain.models import Endpoint, School


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
