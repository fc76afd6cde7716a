"""Counting and hashing a dossier as it passes, with the size limit enforced on the way."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator, Iterable
from concurrent.futures import Executor, Future

from traffic_center.domain.errors import DossierTooLarge

# The chunks hashed together in one hand-off to the hashing thread. Small enough that a
# dossier in flight holds at most two batches beyond what it streams (memory stays flat),
# large enough that the hand-offs cost nothing beside the hashing (50 hand-offs for 50 MB).
HASH_BATCH_BYTES = 1024 * 1024
# A last batch up to this size is hashed on the event loop (about 0.2 ms here): handing it to
# the thread cost more (the hand-off, the loop's wake-up, the GIL back), and a dossier of a
# few hundred kB, the usual size, was all one such batch (issue 14).
HASH_ON_LOOP_BYTES = 256 * 1024


class MeteredStream:
    """Wraps the bron's byte stream: size and SHA-256 on the fly, nothing kept.

    SHA-256 costs about 0.75 ms per MB here (with the CPU's SHA extensions; a fifth of the
    relay's CPU per MB), and hashlib lets go of the GIL while it hashes: so with an
    ``executor`` the chunks are hashed there, a batch at a time, while the event loop goes on
    moving bytes. Chunks are immutable, and a batch is handed over only once the one before
    it is done, so the digest sees every byte in order and a dossier never has more than two
    batches waiting. The last batch is hashed after the last byte has gone to the doel
    (``hexdigest``), off its clock; on the loop when it is small.

    The hand-off is not free (measured on the 2-vCPU VM, issue 14): waking the thread and
    taking the GIL back from it are about 8 % of the event loop's time on a 50 MB dossier
    (some 0.35 ms per MB), half of what hashing on the loop costs it. Hashing every chunk on
    the loop instead (no executor) cost the same CPU per MB within the noise and took the
    50 MB throughput from 0.83× to 0.78× nginx's (means of 10 and 5 runs), the loop being the
    bottleneck; 4 MB batches (fewer hand-offs) were no cheaper and would hold four times the
    memory.
    """

    def __init__(
        self, chunks: AsyncIterator[bytes], *, limit: int, executor: Executor | None = None
    ) -> None:
        self._chunks = chunks
        self._limit = limit
        self._digest = hashlib.sha256()
        self._executor = executor
        self._batch: list[bytes] = []
        self._batched = 0
        self._hashing: Future[None] | None = None
        self.size = 0

    async def __aiter__(self) -> AsyncIterator[bytes]:
        async for chunk in self._chunks:
            self.size += len(chunk)
            if self.size > self._limit:
                # The bron sent more than it may (or than it declared): stop here.
                raise DossierTooLarge(f"the dossier exceeds {self._limit} bytes")
            if self._executor is None:
                self._digest.update(chunk)
            else:
                self._batch.append(chunk)
                self._batched += len(chunk)
                if self._batched >= HASH_BATCH_BYTES:
                    await self._hand_over()
            yield chunk

    async def hexdigest(self) -> str:
        """The SHA-256 of every byte that passed (all of it, or up to where it broke off)."""
        if self._batched > HASH_ON_LOOP_BYTES:
            await self._hand_over()
        await self._hashed()
        batch, self._batch, self._batched = self._batch, [], 0
        _update(self._digest, batch)
        return self._digest.hexdigest()

    async def _hand_over(self) -> None:
        """Hash the batch in the executor once the previous batch is done."""
        await self._hashed()
        assert self._executor is not None
        batch, self._batch, self._batched = self._batch, [], 0
        self._hashing = self._executor.submit(_update, self._digest, batch)

    async def _hashed(self) -> None:
        """Wait for the batch being hashed. Shielded: a cancelled relay (the doel hung up)
        must not cancel a batch and leave a digest short of bytes that were sent.

        A batch already hashed (the usual case: the thread hashes a megabyte in under a
        millisecond, the relay streams it in several) is taken as it is: wrapping a finished
        future still costs a wake-up of the event loop through its self-pipe."""
        if self._hashing is None:
            return
        if not self._hashing.done():
            await asyncio.shield(asyncio.wrap_future(self._hashing))
        self._hashing.result()  # the hashing thread's error, if it had one
        self._hashing = None


def _update(digest: hashlib._Hash, chunks: Iterable[bytes]) -> None:
    for chunk in chunks:
        digest.update(chunk)
