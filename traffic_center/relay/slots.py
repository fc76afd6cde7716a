"""The node's relay slots: a total, and a fair share per doel school and per bron endpoint.

A slot is taken before anything is forwarded and given back after the last byte. Without the
shares, one school that opens relays from its own trickling LAS (or never reads them) holds
every slot and all other schools get 503 for as long as it likes.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

from traffic_center.domain.errors import RelayBusy


class Share(StrEnum):
    """Which limit refused a relay (a metric label: a closed set)."""

    NODE = "node"
    DOEL_SCHOOL = "doel_school"
    BRON_ENDPOINT = "bron_endpoint"


@dataclass(frozen=True, slots=True)
class RelaySlot:
    """Who holds one slot: the doel school's BRIN and the bron endpoint's routeringskenmerk."""

    doel_school: str
    bron_endpoint: str


@dataclass(frozen=True, slots=True)
class SlotUsage:
    """What operators see: totals and the largest share any one party holds, never who."""

    in_flight: int
    largest_doel_school: int
    largest_bron_endpoint: int


class RelaySlots:
    def __init__(
        self,
        *,
        total: int,
        per_doel_school: int,
        per_bron_endpoint: int,
        on_change: Callable[[SlotUsage], None] = lambda usage: None,
        on_refused: Callable[[Share], None] = lambda share: None,
    ) -> None:
        self.total = total
        self.per_doel_school = min(per_doel_school, total)
        self.per_bron_endpoint = min(per_bron_endpoint, total)
        self._on_change = on_change
        self._on_refused = on_refused
        self._doel_schools: Counter[str] = Counter()
        self._bron_endpoints: Counter[str] = Counter()
        self.in_flight = 0

    def acquire(self, *, doel_school: str, bron_endpoint: str) -> RelaySlot:
        """Take a slot, or refuse at once (never queue): RelayBusy naming the share that is full."""
        refused = self._full_share(doel_school, bron_endpoint)
        if refused is not None:
            self._on_refused(refused)
            raise RelayBusy(_REFUSALS[refused])
        self.in_flight += 1
        self._doel_schools[doel_school] += 1
        self._bron_endpoints[bron_endpoint] += 1
        self._changed()
        return RelaySlot(doel_school, bron_endpoint)

    def release(self, slot: RelaySlot) -> None:
        self.in_flight -= 1
        _decrement(self._doel_schools, slot.doel_school)
        _decrement(self._bron_endpoints, slot.bron_endpoint)
        self._changed()

    def usage(self) -> SlotUsage:
        return SlotUsage(
            in_flight=self.in_flight,
            largest_doel_school=max(self._doel_schools.values(), default=0),
            largest_bron_endpoint=max(self._bron_endpoints.values(), default=0),
        )

    def _full_share(self, doel_school: str, bron_endpoint: str) -> Share | None:
        if self.in_flight >= self.total:
            return Share.NODE
        if self._doel_schools[doel_school] >= self.per_doel_school:
            return Share.DOEL_SCHOOL
        if self._bron_endpoints[bron_endpoint] >= self.per_bron_endpoint:
            return Share.BRON_ENDPOINT
        return None

    def _changed(self) -> None:
        self._on_change(self.usage())


# The detail of the 503: which share is full, never whose (no BRIN in an answer or a log).
_REFUSALS = {
    Share.NODE: "all relay slots of this node are in use",
    Share.DOEL_SCHOOL: "your school holds its full share of this node's relay slots",
    Share.BRON_ENDPOINT: "that bron endpoint holds its full share of this node's relay slots",
}


def _decrement(counts: Counter[str], key: str) -> None:
    """One fewer; a key at zero is dropped, so the table holds only parties with a slot."""
    counts[key] -= 1
    if counts[key] <= 0:
        del counts[key]
