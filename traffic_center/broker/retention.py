"""Closed and expired sessions leave the store a retention period after they ended.

A session row holds who exchanged with whom and a keyed hash of a pupil's zoeksleutel; once
the session has ended and the period for late notifications and disputes has passed
(TC_SESSION_RETENTION_DAYS, docs/security.md), it serves no purpose the audit log does not
serve. Audit records are never purged here: they are the lasting account.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable

import structlog

from traffic_center.store.store import Store

log = structlog.get_logger("traffic_center.retention")

# Purging is housekeeping, not a deadline: once an hour per node is plenty.
PURGE_EVERY_SECONDS = 3600.0


class SessionRetention:
    def __init__(
        self,
        store: Store,
        *,
        retention: dt.timedelta,
        clock: Callable[[], dt.datetime],
        every_seconds: float = PURGE_EVERY_SECONDS,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._store = store
        self._retention = retention
        self._clock = clock
        self._every = every_seconds
        self._monotonic = monotonic
        self._last: float | None = None

    async def purge(self) -> int:
        """Delete the sessions that ended more than the retention period ago; how many."""
        purged = await self._store.sessions.purge_ended(
            ended_before=self._clock() - self._retention
        )
        if purged:
            log.info("sessions_purged", count=purged, retention_days=self._retention.days)
        return purged

    async def purge_now_and_then(self) -> int:
        """``purge`` at most once per ``every_seconds`` (a chore on the node's heartbeat)."""
        now = self._monotonic()
        if self._last is not None and now - self._last < self._every:
            return 0
        self._last = now
        return await self.purge()
