"""The session state machine and the session-check rule (domain rules 4 and 5).

(none) --grant--> GRANTED --check ok--> CHECKED
GRANTED|CHECKED --close(best result)--> CLOSED      (terminal)
GRANTED|CHECKED --ttl passes--> EXPIRED             (terminal)
CLOSED|EXPIRED --any check/relay--> SessieReedsAfgemeld / SessieVerlopen
"""
# Rule numbers refer to docs/rules.md.

from __future__ import annotations

import hmac
from dataclasses import dataclass, replace
from datetime import datetime

from traffic_center.domain.errors import SessieAfwijkend, SessieReedsAfgemeld, SessieVerlopen
from traffic_center.domain.identifiers import Overdrachtsoort
from traffic_center.domain.models import OPEN_STATES, Session, SessionState
from traffic_center.domain.results import ResultCode


def effective_state(session: Session, now: datetime) -> SessionState:
    """Expiry is lazy: an open session past its TTL is expired whatever the store says."""
    if session.state in OPEN_STATES and now >= session.expires_at:
        return SessionState.EXPIRED
    return session.state


def ensure_open(session: Session, now: datetime) -> None:
    state = effective_state(session, now)
    if state is SessionState.CLOSED:
        raise SessieReedsAfgemeld(f"session {session.sessie_id} was closed")
    if state is SessionState.EXPIRED:
        raise SessieVerlopen(f"session {session.sessie_id} expired at {session.expires_at}")


@dataclass(frozen=True, slots=True)
class SessionCheck:
    """What a bron presents when it checks a session (sessiecontrole)."""

    bron_brin: str
    bron_routeringskenmerk: str
    doel_brin: str
    doel_routeringskenmerk: str
    overdrachtsoort: Overdrachtsoort
    search_key_hmac: str


def verify_check(session: Session, check: SessionCheck, now: datetime) -> Session:
    """Rule 4: the check must match the session on both parties, kind and search key."""
    ensure_open(session, now)
    mismatches = [
        name
        for name, same in (
            ("bron_brin", session.bron_brin == check.bron_brin),
            (
                "bron_routeringskenmerk",
                session.bron_routeringskenmerk in (None, check.bron_routeringskenmerk),
            ),
            ("doel_brin", session.doel_brin == check.doel_brin),
            (
                "doel_routeringskenmerk",
                session.doel_routeringskenmerk == check.doel_routeringskenmerk,
            ),
            ("overdrachtsoort", session.overdrachtsoort == check.overdrachtsoort),
            ("zoeksleutel", hmac.compare_digest(session.search_key_hmac, check.search_key_hmac)),
        )
        if not same
    ]
    if mismatches:
        # Name the fields but never their session values: the bron may be probing.
        raise SessieAfwijkend(f"does not match the session on: {', '.join(mismatches)}")
    return replace(session, state=SessionState.CHECKED)


def close(
    session: Session, *, result: ResultCode, routeringskenmerk: str, now: datetime
) -> Session:
    ensure_open(session, now)
    return replace(
        session,
        state=SessionState.CLOSED,
        closed_at=now,
        result=result,
        result_routeringskenmerk=routeringskenmerk,
    )
