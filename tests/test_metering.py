"""The relay's size and SHA-256, hashed beside the event loop (relay/metering.py)."""

from __future__ import annotations

import asyncio
import hashlib
import os
import threading
from collections.abc import AsyncIterator, Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import pytest

from traffic_center.domain.errors import DossierTooLarge
from traffic_center.relay.metering import HASH_BATCH_BYTES, HASH_ON_LOOP_BYTES, MeteredStream


async def _chunks(data: bytes, size: int) -> AsyncIterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]
        await asyncio.sleep(0)


class _CountingExecutor(ThreadPoolExecutor):
    """One thread, like the relay's; remembers how many jobs ever waited at once."""

    def __init__(self, *, gate: threading.Event | None = None) -> None:
        super().__init__(max_workers=1)
        self._gate = gate
        self._lock = threading.Lock()
        self.waiting = 0
        self.most_waiting = 0
        self.submitted = 0

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        with self._lock:
            self.submitted += 1
            self.waiting += 1
            self.most_waiting = max(self.most_waiting, self.waiting)

        def run() -> Any:
            if self._gate is not None:
                self._gate.wait(5)
            try:
                return fn(*args, **kwargs)
            finally:
                with self._lock:
                    self.waiting -= 1

        return super().submit(run)


@pytest.mark.parametrize("with_executor", [False, True], ids=["on-the-loop", "in-a-thread"])
async def test_size_and_digest_are_those_of_every_byte_in_order(with_executor: bool) -> None:
    data = os.urandom(5 * HASH_BATCH_BYTES + 12_345)
    executor = _CountingExecutor() if with_executor else None
    metered = MeteredStream(_chunks(data, 16_411), limit=len(data), executor=executor)
    passed = bytearray()
    async for chunk in metered:
        passed += chunk
    assert bytes(passed) == data  # the stream itself is untouched
    assert metered.size == len(data)
    assert await metered.hexdigest() == hashlib.sha256(data).hexdigest()
    if executor is not None:
        assert executor.most_waiting == 1  # one batch at a time: memory stays flat
        executor.shutdown()


@pytest.mark.parametrize(
    ("tail", "handed_over"),
    [(0, 2), (12_345, 2), (HASH_ON_LOOP_BYTES, 2), (HASH_ON_LOOP_BYTES + 1, 3)],
)
async def test_a_small_last_batch_is_hashed_on_the_loop(tail: int, handed_over: int) -> None:
    """Two full batches go to the thread; a last one up to HASH_ON_LOOP_BYTES is hashed on
    the loop (a thread hand-off cost more), a bigger one in the thread; the digest is the
    same either way."""
    data = os.urandom(2 * HASH_BATCH_BYTES + tail)
    executor = _CountingExecutor()
    metered = MeteredStream(_chunks(data, 16_384), limit=len(data), executor=executor)
    async for _ in metered:
        pass
    assert await metered.hexdigest() == hashlib.sha256(data).hexdigest()
    assert executor.submitted == handed_over
    executor.shutdown()


async def test_a_stream_cut_at_the_limit_records_the_digest_of_what_passed() -> None:
    data = os.urandom(3 * HASH_BATCH_BYTES)
    limit = 2 * HASH_BATCH_BYTES + 100
    with ThreadPoolExecutor(max_workers=1) as executor:
        metered = MeteredStream(_chunks(data, 65_536), limit=limit, executor=executor)
        passed = bytearray()

        async def relay() -> None:
            async for chunk in metered:
                passed.extend(chunk)

        with pytest.raises(DossierTooLarge):
            await relay()
        assert len(passed) <= limit
        assert await metered.hexdigest() == hashlib.sha256(passed).hexdigest()


async def test_a_relay_cancelled_while_a_batch_is_hashed_loses_no_byte_of_the_digest() -> None:
    """The doel hangs up while the stream waits for the previous batch: the batch in the
    thread still finishes, and the digest the record gets covers every byte counted."""
    gate = threading.Event()
    executor = _CountingExecutor(gate=gate)
    data = os.urandom(3 * HASH_BATCH_BYTES)
    metered = MeteredStream(_chunks(data, 65_536), limit=len(data), executor=executor)
    passed = bytearray()

    async def relay() -> None:
        async for chunk in metered:
            passed.extend(chunk)

    task = asyncio.create_task(relay())
    # The first batch is held in the thread, and the stream waits for it before the second.
    await asyncio.sleep(0.5)
    assert executor.waiting == 1
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    gate.set()
    # Size and digest cover the same bytes: all the bron sent that far (the chunk that was
    # waiting for its hand-over too, as before threads: counted on arrival).
    assert data.startswith(passed)
    assert len(passed) >= HASH_BATCH_BYTES
    assert metered.size >= len(passed)
    assert await metered.hexdigest() == hashlib.sha256(data[: metered.size]).hexdigest()
    executor.shutdown()
