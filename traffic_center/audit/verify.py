"""Walking the whole chain, as `traffic-center audit verify` does."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from traffic_center.domain.audit import ChainBreak, ChainVerifier, KeyRing
from traffic_center.store.store import Store

PROGRESS_EVERY = 100_000


@dataclass(frozen=True, slots=True)
class Verdict:
    checked: int
    broken: ChainBreak | None


async def verify_chain(
    store: Store, keys: KeyRing | bytes, *, progress: Callable[[int], None] | None = None
) -> Verdict:
    """The first break in the chain, if any; ``progress`` hears the count now and then."""
    head = await store.audit.head()
    verifier = ChainVerifier(keys)
    # Up to the head read first: records appended while we walk are for the next verify.
    async for item in store.audit.walk(up_to_id=head.last_id):
        broken = verifier.feed(item)
        if broken is not None:
            return Verdict(verifier.count, broken)
        if progress is not None and verifier.count % PROGRESS_EVERY == 0:
            progress(verifier.count)
    return Verdict(verifier.count, verifier.finish(head_id=head.last_id, head_hash=head.last_hash))
