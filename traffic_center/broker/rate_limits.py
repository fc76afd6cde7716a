"""Rule 9 (docs/rules.md): per-endpoint rate limits on every route, as sliding windows.

The sliding-window counter (as in nginx's and Cloudflare's limiters): the store keeps one
counter per endpoint, route and minute; a check adds one hit (one write) and estimates the
hits of the last 60 seconds as ``previous × (1 − elapsed/60) + current``. A fixed window lets
a caller send twice its budget across a window boundary; this estimate does not. Every node
counts in the same rows, so the limit holds for the cluster, not per node. Refused hits count
too: a caller that keeps hammering stays limited.

The window is a minute; the qualification sandbox shortens it (``TC_RATE_LIMIT_WINDOW_SECONDS``,
budgets pro rata) so that a vendor's doel meets a 429 whose Retry-After is a few seconds.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from traffic_center.domain.errors import RateLimited
from traffic_center.store.rate_limits import Hit, WindowHits
from traffic_center.store.store import Store

WINDOW_SECONDS = 60

# The routes, as the settings name them (TC_RATE_LIMIT_<ROUTE>_PER_MINUTE).
ROUTES = (
    "sessions",
    "checks",
    "dossiers",
    "closes",
    "notifications",
    "endpoints",
    "audit_reads",
    "whoami",
)


@dataclass(frozen=True, slots=True)
class Verdict:
    allowed: bool
    retry_after_seconds: int


def judge(
    *,
    current: int,
    previous: int,
    elapsed: float,
    per_minute: int,
    window_seconds: int = WINDOW_SECONDS,
) -> Verdict:
    """The sliding estimate for hits ``current`` (this one included) and ``previous``."""
    budget = window_budget(per_minute, window_seconds)
    weight = 1 - elapsed / window_seconds
    if previous * weight + current <= budget:
        return Verdict(True, 0)
    return Verdict(False, _retry_after(current, previous, elapsed, budget, window_seconds))


def window_budget(per_minute: int, window_seconds: int) -> int:
    """The hits a window of ``window_seconds`` holds: the minute's budget, pro rata, at least
    one (a shorter window is the sandbox's, so that a Retry-After is seconds, not a minute)."""
    return max(1, per_minute * window_seconds // WINDOW_SECONDS)


def _retry_after(current: int, previous: int, elapsed: float, budget: int, window: int) -> int:
    """Seconds until one more hit fits the estimate again, if the caller waits that long."""
    room = budget - 1  # the retried hit itself must fit
    if current <= room and previous > 0:
        # Within this window, once enough of the previous one has slid out.
        wait = window * (1 - (room - current) / previous) - elapsed
    else:
        # In the next window, once enough of this one has slid out.
        wait = (window - elapsed) + window * max(0.0, 1 - room / current)
    return max(1, math.ceil(round(wait, 6)))  # 40.000000001 s is 40 s, not 41


class RateLimiter:
    def __init__(
        self,
        store: Store,
        *,
        per_minute: Mapping[str, int],
        clock: Callable[[], dt.datetime],
        window_seconds: int = WINDOW_SECONDS,
    ) -> None:
        missing = set(ROUTES) - set(per_minute)
        if missing:
            raise ValueError(f"no rate limit for {sorted(missing)}")
        self._store = store
        self._per_minute = dict(per_minute)
        self._clock = clock
        self._window_seconds = window_seconds

    async def count(self, admission: Admission) -> WindowHits:
        """The admission's hit counted, in a store transaction of its own."""
        hit = admission.hit
        return await self._store.rate_limits.hit(
            hit.bucket, window_start=hit.window_start, window_seconds=hit.window_seconds
        )

    def admission(self, route: str, routeringskenmerk: str) -> Admission:
        """One hit of ``route`` by an endpoint, to count: here (``count``), together with the
        audit probe (``AuditTrail.count_and_ensure_writable``) or with a relay's started
        record (``AuditTrail.count_and_start``); then ``Admission.judge`` raises RateLimited
        (429) when it is over the budget."""
        now = self._clock().timestamp()
        window = self._window_seconds
        window_start = int(now) // window * window
        return Admission(
            Hit(f"{route}:{routeringskenmerk}", window_start, window),
            route=route,
            per_minute=self._per_minute[route],
            elapsed=now - window_start,
        )


@dataclass(frozen=True, slots=True)
class Admission:
    """One hit of a route by an endpoint, about to be counted, and the budget it meets."""

    hit: Hit
    route: str
    per_minute: int
    elapsed: float  # seconds into the hit's window

    def allows(self, hits: WindowHits) -> bool:
        """Whether the counted ``hits`` are within the budget (``judge`` without raising)."""
        return self._verdict(hits).allowed

    def judge(self, hits: WindowHits) -> None:
        """RateLimited (429) when the counted ``hits`` are over the budget."""
        verdict = self._verdict(hits)
        if not verdict.allowed:
            raise RateLimited(
                f"at most {self.per_minute} {self.route.replace('_', ' ')} a minute per endpoint",
                retry_after_seconds=verdict.retry_after_seconds,
            )

    def _verdict(self, hits: WindowHits) -> Verdict:
        return judge(
            current=hits.current,
            previous=hits.previous,
            elapsed=self.elapsed,
            per_minute=self.per_minute,
            window_seconds=self.hit.window_seconds,
        )
