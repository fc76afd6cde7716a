"""Domain objects for unit tests."""

from __future__ import annotations

import datetime as dt
import uuid

from traffic_center.domain.identifiers import Overdrachtsoort, Sector
from traffic_center.domain.models import Session, SessionState

SEARCH_KEY_HMAC = "h" * 64


def granted_session(now: dt.datetime) -> Session:
    """A VO doel (12AB, 1…1) asking bron school 34CD for an overstapdossier; TTL one hour."""
    return Session(
        sessie_id=str(uuid.uuid4()),
        doel_brin="12AB",
        doel_routeringskenmerk="1" * 20,
        doel_sector=Sector.VO,
        bron_brin="34CD",
        bron_routeringskenmerk=None,
        overdrachtsoort=Overdrachtsoort.OVERSTAPDOSSIER,
        search_key_hmac=SEARCH_KEY_HMAC,
        state=SessionState.GRANTED,
        created_at=now,
        expires_at=now + dt.timedelta(hours=1),
    )
