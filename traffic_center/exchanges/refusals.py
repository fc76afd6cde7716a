"""Refused callers on the record, one record per certificate and window, with a count.

A revoked certificate sending thousands of requests must not write thousands of permanent
records (design.md, "Limits": refusals cost the node nothing lasting). Per certificate serial
(or, without a certificate, all such callers together) and refusal code, the first refusal in a
window is recorded at once with ``subject`` ``n=1``; the ones after it are counted in memory and
recorded as one record ``n=<count>`` when the window has passed (checked on every refusal and
on every heartbeat of the node) or when the node shuts down. The counts over a certificate's
records add up to its refusals.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from traffic_center.audit.entry import AuditEntry
from traffic_center.audit.trail import AuditTrail
from traffic_center.domain.audit import AuditType
from traffic_center.domain.errors import TrafficCenterError

Key = tuple[str | None, str]  # (certificate serial, refusal code)


def count_subject(count: int) -> str:
    """How a refusal record says how many refusals it stands for."""
    return f"n={count}"


@dataclass(slots=True)
class _Window:
    ends: float
    count: int = 0
    entry: AuditEntry | None = None  # the first counted refusal after the recorded one
    error: TrafficCenterError | None = None


class RefusalLog:
    def __init__(
        self,
        audit: AuditTrail,
        *,
        window_seconds: float,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._audit = audit
        self._window_seconds = window_seconds
        self._monotonic = monotonic
        self._windows: dict[Key, _Window] = {}

    async def note(
        self, error: TrafficCenterError, *, serial: str | None, fingerprint: str | None = None
    ) -> None:
        """One refusal: recorded now if it opens a window, else counted for the window's record.

        ``fingerprint`` (SHA-256 of the certificate) goes on the log line only."""
        now = self._monotonic()
        key = (serial, error.code)
        window = self._windows.get(key)
        if window is not None and now < window.ends:
            if window.entry is None:
                window.entry = self._audit.begin(AuditType.REFUSED_CALLER, caller_serial=serial)
                window.error = error
            window.count += 1
            return
        # Decided before any await, so concurrent refusals of one key open one window.
        self._windows[key] = _Window(ends=now + self._window_seconds)
        if window is not None:
            await self._record(window)
        entry = self._audit.begin(AuditType.REFUSED_CALLER, caller_serial=serial)
        entry.subject = count_subject(1)
        entry.caller_fingerprint = fingerprint
        await self._audit.failed(entry, error)
        await self.flush()

    async def flush(self, *, everything: bool = False) -> int:
        """Record the counts of windows that have passed (all of them at shutdown)."""
        now = self._monotonic()
        done = [k for k, w in self._windows.items() if everything or now >= w.ends]
        windows = [self._windows.pop(k) for k in done]
        for window in windows:
            await self._record(window)
        return sum(1 for w in windows if w.count)

    async def _record(self, window: _Window) -> None:
        if window.count == 0 or window.entry is None or window.error is None:
            return
        window.entry.subject = count_subject(window.count)
        await self._audit.failed(window.entry, window.error)
