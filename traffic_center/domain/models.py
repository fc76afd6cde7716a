"""The records the Traffic Center keeps: schools, endpoints, certificates and sessions."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from traffic_center.domain.identifiers import EndpointKind, Overdrachtsoort, Sector
from traffic_center.domain.results import ResultCode


@dataclass(frozen=True, slots=True)
class School:
    brin: str
    name: str
    sector: Sector
    board: str | None
    active: bool


@dataclass(frozen=True, slots=True)
class Endpoint:
    routeringskenmerk: str
    brin: str
    url: str
    kind: EndpointKind
    active: bool


class CertificateRole(StrEnum):
    CLIENT = "client"  # a school endpoint
    SERVER = "server"  # a Traffic Center listener
    RELAY = "relay"  # the Traffic Center's own client certificate towards LAS endpoints
    # A TLS-terminating proxy's client certificate towards the nodes: the only connection
    # whose RFC 9440 Client-Cert header a node believes (docs/operations-multinode.md).
    PROXY = "proxy"


class CertificateStatus(StrEnum):
    VALID = "valid"
    REVOKED = "revoked"
    EXPIRED = "expired"


# The longest validity `ca issue*` grants (days), the CA/Browser Forum's old ceiling for server
# certificates. Here, not in pki.ca, so the CLI's help can name it without loading cryptography.
MAX_LEAF_DAYS = 825
DEFAULT_LEAF_DAYS = 365

# How long a CRL stays current (its nextUpdate), `ca crl --days`. Here, not in pki.ca, so the
# CLI's --help names them without loading cryptography. A relying party may keep a CRL until
# its nextUpdate without fetching again, so a long one hides later revocations from it: the
# CA/Browser Forum Baseline Requirements (§4.9.7) cap a subscriber CRL at 10 days. At least
# 2, so a daily `ca crl` survives one late run; 7 by default: a week of slack to notice.
DEFAULT_CRL_DAYS = 7
MIN_CRL_DAYS = 2
MAX_CRL_DAYS = 10

# RFC 5280 §5.3.1 reason names, as `ca revoke --reason` takes them. Here, not only in pki.ca,
# so the CLI can offer them without loading cryptography; a test keeps the two in step.
REVOCATION_REASON_NAMES = (
    "unspecified",
    "keyCompromise",
    "cACompromise",
    "affiliationChanged",
    "superseded",
    "cessationOfOperation",
    "certificateHold",
    "privilegeWithdrawn",
    "aACompromise",
)


@dataclass(frozen=True, slots=True)
class CertificateRecord:
    serial: str  # upper-case hex, as `ca revoke` takes it
    role: CertificateRole
    routeringskenmerk: str | None
    subject: str
    not_before: datetime
    not_after: datetime
    revoked_at: datetime | None
    revocation_reason: str | None

    def status_at(self, now: datetime) -> CertificateStatus:
        if self.revoked_at is not None:
            return CertificateStatus.REVOKED
        if not self.not_before <= now <= self.not_after:
            return CertificateStatus.EXPIRED
        return CertificateStatus.VALID


class SessionState(StrEnum):
    GRANTED = "GRANTED"
    CHECKED = "CHECKED"
    CLOSED = "CLOSED"
    EXPIRED = "EXPIRED"


OPEN_STATES = frozenset({SessionState.GRANTED, SessionState.CHECKED})


@dataclass(frozen=True, slots=True)
class Session:
    sessie_id: str
    doel_brin: str
    doel_routeringskenmerk: str
    doel_sector: Sector
    bron_brin: str
    bron_routeringskenmerk: str | None
    overdrachtsoort: Overdrachtsoort
    search_key_hmac: str
    state: SessionState
    created_at: datetime
    expires_at: datetime
    closed_at: datetime | None = None
    result: ResultCode | None = None
    result_routeringskenmerk: str | None = None


@dataclass(frozen=True, slots=True)
class SwvLink:
    """The SWV flow's triple: a school endpoint, a koppelsleutel, an SWV endpoint (rule 10).

    Rule 7: the koppelsleutel is kept only as a keyed hash, like the zoeksleutel.
    ``feedback_at``: when the SWV's feedback was relayed to the school (once only).
    """

    koppelsleutel_hmac: str
    school_brin: str
    school_routeringskenmerk: str
    swv_brin: str
    swv_routeringskenmerk: str
    created_at: datetime
    feedback_at: datetime | None = None
