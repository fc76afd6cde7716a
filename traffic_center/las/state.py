"""The reference LAS's state that tests and the demo, often in another thread, watch.

Counters of dossier requests (started, in progress, completed, aborted), the notifications
and SWV feedback received, the SWV cases (koppelsleutel → pupil), and the book of nietgereed
dossiers that are not ready yet.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

# Each nietgereed dossier is remembered until it is served; old ones go first past this many.
MAX_PENDING_DOSSIERS = 10_000


# --- what tests and the demo watch -----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CounterSnapshot:
    started: int
    in_progress: int
    completed: int
    aborted: int


class DossierCounters:
    """Dossier requests by how far they got. Thread-safe: tests read them from another thread.

    ``started`` counts well-formed requests from the relay (refused callers and bad input are
    not dossier requests); ``in_progress`` is started minus completed minus aborted.

    ``aborted`` counts answers that did not reach their end: the client went away (the stream
    was cancelled or closed), or the LAS broke the connection on purpose (afbreken).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._started = self._completed = self._aborted = 0

    def start(self) -> None:
        with self._lock:
            self._started += 1

    def finish(self, *, completed: bool) -> None:
        with self._lock:
            if completed:
                self._completed += 1
            else:
                self._aborted += 1

    def snapshot(self) -> CounterSnapshot:
        with self._lock:
            finished = self._completed + self._aborted
            return CounterSnapshot(
                self._started, self._started - finished, self._completed, self._aborted
            )

    async def wait_until(
        self,
        predicate: Callable[[CounterSnapshot], bool],
        *,
        timeout: float = 5.0,  # noqa: ASYNC109 -- like asyncio.wait_for: a test reads better so
    ) -> CounterSnapshot:
        """Poll until ``predicate`` holds; TimeoutError with the last snapshot otherwise."""
        deadline = time.monotonic() + timeout
        while not predicate(snapshot := self.snapshot()):
            if time.monotonic() > deadline:
                raise TimeoutError(f"counters never matched: {snapshot}")
            await asyncio.sleep(0.01)
        return snapshot


@dataclass(frozen=True, slots=True)
class ReceivedNotification:
    sessie_id: str | None  # None on an SWV endpoint: the koppelsleutel names the case
    bron_brin: str
    bron_routeringskenmerk: str
    transactie_id: str | None
    received_at: dt.datetime
    koppelsleutel: str | None = None


@dataclass(frozen=True, slots=True)
class ReceivedFeedback:
    koppelsleutel: str
    swv_brin: str
    swv_routeringskenmerk: str
    transactie_id: str | None
    received_at: dt.datetime


class SwvCases:
    """The school side of the SWV flow: which pupil each koppelsleutel stands for, and the
    feedback received. Thread-safe: a test adds cases and reads feedback from its thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pupils: dict[str, str] = {}
        self._feedback: list[ReceivedFeedback] = []

    def add(self, koppelsleutel: str, zoeksleutel: str) -> None:
        with self._lock:
            self._pupils[koppelsleutel] = zoeksleutel

    def zoeksleutel_for(self, koppelsleutel: str) -> str | None:
        with self._lock:
            return self._pupils.get(koppelsleutel)

    def record_feedback(self, feedback: ReceivedFeedback) -> None:
        with self._lock:
            self._feedback.append(feedback)

    @property
    def feedback(self) -> list[ReceivedFeedback]:
        with self._lock:
            return list(self._feedback)


class NotificationInbox:
    """Notifications received, awaitable from any thread's event loop.

    The server records on its own loop; a waiter on another loop is woken through
    ``call_soon_threadsafe`` on its own, so the two loops never share an asyncio primitive.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._received: list[ReceivedNotification] = []
        self._waiters: list[tuple[str | None, asyncio.AbstractEventLoop, asyncio.Future[Any]]] = []

    @property
    def received(self) -> list[ReceivedNotification]:
        with self._lock:
            return list(self._received)

    def record(self, notification: ReceivedNotification) -> None:
        with self._lock:
            self._received.append(notification)
            woken = [w for w in self._waiters if w[0] in (None, notification.sessie_id)]
        for _, loop, future in woken:
            with contextlib.suppress(RuntimeError):  # the waiter's loop has closed
                loop.call_soon_threadsafe(_resolve, future, notification)

    async def wait_for(
        self,
        sessie_id: str | None = None,
        *,
        timeout: float = 5.0,  # noqa: ASYNC109 -- like asyncio.wait_for: a test reads better so
    ) -> ReceivedNotification:
        """The first notification for ``sessie_id`` (any, when None), received or to come."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[ReceivedNotification] = loop.create_future()
        waiter = (sessie_id, loop, future)
        with self._lock:
            for seen in self._received:
                if sessie_id in (None, seen.sessie_id):
                    return seen
            self._waiters.append(waiter)
        try:
            return await asyncio.wait_for(future, timeout)
        finally:
            with self._lock:
                self._waiters.remove(waiter)


def _resolve(future: asyncio.Future[Any], value: object) -> None:
    if not future.done():
        future.set_result(value)


# --- the nietgereed scenario -----------------------------------------------------------------


@dataclass(slots=True)
class PendingDossier:
    sessie_id: str
    doel_routeringskenmerk: str
    ready: bool = False


class ReadinessBook:
    """Dossiers that were not ready when first asked for. Used on the server's loop only."""

    def __init__(self) -> None:
        self._dossiers: dict[str, PendingDossier] = {}

    def get(self, zoeksleutel: str) -> PendingDossier | None:
        return self._dossiers.get(zoeksleutel)

    def add(self, zoeksleutel: str, pending: PendingDossier) -> None:
        if len(self._dossiers) >= MAX_PENDING_DOSSIERS:
            del self._dossiers[next(iter(self._dossiers))]
        self._dossiers[zoeksleutel] = pending
