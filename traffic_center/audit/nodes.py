"""This node's heartbeat, and closing the exchanges of nodes that died (orphans).

A relay or notification writes a *started* record before it forwards anything and a *final*
one after the last byte. A node killed in between leaves the started record alone. Every node
beats (a row in ``nodes``, every TC_NODE_HEARTBEAT_SECONDS) and, on each beat, looks for open
exchanges of nodes silent for longer than TC_ORPHAN_GRACE_SECONDS: it closes each with a final
record whose result is ``Onvolledig``. A long transfer on a live node is never touched (its
node keeps beating); a restarted node is a new node, so its predecessor's open exchanges are
closed like any other's. The heartbeat is a store write, so it also tells the audit trail
whether the store takes writes, and retries the trail's outbox. Other periodic housekeeping
(``chores``: recording counted refusals, purging ended sessions) runs on the same beat.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import socket
from collections.abc import Awaitable, Callable, Sequence

import structlog

from traffic_center.audit.trail import AuditTrail
from traffic_center.domain.audit import INCOMPLETE, Phase
from traffic_center.domain.errors import StoreUnavailable
from traffic_center.store.store import Store

log = structlog.get_logger("traffic_center.nodes")

# Nodes silent this long, holding nothing open, leave the table.
FORGET_AFTER = dt.timedelta(days=1)


class NodeKeeper:
    def __init__(
        self,
        store: Store,
        trail: AuditTrail,
        *,
        node_id: str,
        heartbeat_seconds: float,
        grace_seconds: float,
        clock: Callable[[], dt.datetime],
        chores: Sequence[Callable[[], Awaitable[object]]] = (),
    ) -> None:
        self._store = store
        self._chores = tuple(chores)
        self._trail = trail
        self.node_id = node_id
        self._heartbeat_seconds = heartbeat_seconds
        self._grace = dt.timedelta(seconds=grace_seconds)
        self._clock = clock
        self._hostname = socket.gethostname()

    async def run(self) -> None:
        """Beat and sweep until cancelled; a store outage only delays the next round."""
        while True:
            await self.round()
            await asyncio.sleep(self._heartbeat_seconds)

    async def round(self) -> None:
        try:
            await self._store.audit.heartbeat(
                self.node_id, hostname=self._hostname, now=self._clock()
            )
        except StoreUnavailable:
            self._trail.note_write(ok=False)
            return
        await self._trail.flush_pending()
        try:
            await self.close_orphans()
            for chore in self._chores:
                await chore()
        except StoreUnavailable:
            self._trail.note_write(ok=False)

    async def close_orphans(self) -> int:
        """Close the open exchanges of nodes silent past the grace period; how many this
        node closed (another node may have been first with some)."""
        now = self._clock()
        orphans = await self._store.audit.orphans(silent_since=now - self._grace)
        closed = 0
        for orphan in orphans:
            final = dataclasses.replace(
                orphan.record,
                phase=Phase.FINAL,
                result=INCOMPLETE,
                recorded_at=now,
                http_status=None,
                response_out=None,
                request_id=None,
                subject=f"node {orphan.node_id}"[:64],
                node_id=self.node_id,
            )
            if not await self._trail.close_orphan(final):
                continue
            closed += 1
            log.warning(
                "orphan_closed",
                transaction_id=final.transaction_id,
                type=final.type.value,
                dead_node=orphan.node_id,
            )
        if orphans:
            return closed
        await self._store.audit.forget_silent_nodes(silent_since=now - FORGET_AFTER)
        return 0
