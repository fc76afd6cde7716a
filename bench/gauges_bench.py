"""What the ops listener's gauges cost the event loop, with a production-sized store.

    .venv/bin/python bench/gauges_bench.py [--certificates 10000] [--sessions 100000]
    .venv/bin/python bench/gauges_bench.py --backends sqlite,postgres
    .venv/bin/python bench/gauges_bench.py --quick

Every TC_NODE_HEARTBEAT_SECONDS (5 s) a node reads its gauges from the store: the soonest
certificate expiry, the open sessions, the open exchanges. The certificate inventory keeps
every certificate ever issued and the sessions table every session until its retention
ends, so these reads grow with the years and the school year. A read that holds the event
loop holds every request in flight on the node (on SQLite the statements run on the loop).

This fills a fresh store with ``--certificates`` certificates and ``--sessions`` sessions
(a tenth of them open), then times each gauge read five times while a ticker on the same
loop measures its longest stall. The baselines, in the same process and minute: the ticker
with nothing else running, the whole inventory read into records on the loop (what the
expiry gauge did before), and a count of the sessions table on the loop (``count()``, a
scan like the open-sessions gauge's). It prints; it asserts no speed.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

from _common import drop_database, fresh_database, machine_line, postgres_server_url

from traffic_center.domain.models import CertificateRole, SessionState
from traffic_center.store.schema import certificates, sessions
from traffic_center.store.sessions import open_sessions_counted
from traffic_center.store.store import Store

REPEATS = 5
TICK_SECONDS = 0.001


async def longest_stall(read: Callable[[], Awaitable[Any]]) -> tuple[float, float]:
    """(seconds the read took, the loop's longest stall meanwhile): a ticker sleeps 1 ms at
    a time beside the read, and its oversleep is how long the loop could not come by."""
    worst = 0.0
    reading = True

    async def tick() -> None:
        nonlocal worst
        while reading:
            before = time.perf_counter()
            await asyncio.sleep(TICK_SECONDS)
            worst = max(worst, time.perf_counter() - before - TICK_SECONDS)

    ticker = asyncio.create_task(tick())
    await asyncio.sleep(0.01)  # the ticker under way
    worst = 0.0
    started = time.perf_counter()
    await read()
    took = time.perf_counter() - started
    reading = False
    await ticker
    return took, worst


async def fill(store: Store, *, certificate_count: int, session_count: int) -> None:
    now = dt.datetime.now(dt.UTC)
    certificate_rows = [
        {
            "serial": f"{index:040x}",
            "role": CertificateRole.CLIENT.value,
            "routeringskenmerk": f"{index:08d}",
            "subject": f"CN=LAS endpoint {index}",
            "not_before": now - dt.timedelta(days=400),
            # Spread over three years, a tenth expired: the inventory as it grows.
            "not_after": now + dt.timedelta(days=(index % 1000) - 100),
            "issued_at": now - dt.timedelta(days=400),
        }
        for index in range(certificate_count)
    ]
    session_rows = [
        {
            "sessie_id": str(uuid.uuid4()),
            "doel_brin": "00AA",
            "doel_routeringskenmerk": f"{index % 5000:08d}",
            "doel_sector": "vo",
            "bron_brin": "00BB",
            "overdrachtsoort": "overstapdossier",
            "search_key_hmac": f"{index:064x}",
            "state": (SessionState.GRANTED if index % 10 == 0 else SessionState.CLOSED).value,
            "created_at": now - dt.timedelta(days=20),
            "expires_at": now + dt.timedelta(days=10),
        }
        for index in range(session_count)
    ]
    for table, rows in ((certificates, certificate_rows), (sessions, session_rows)):
        async with store.database.transaction() as conn:
            for start in range(0, len(rows), 10_000):
                batch = rows[start : start + 10_000]
                await conn.run_sync(lambda sync, b=batch, t=table: sync.execute(t.insert(), b))


async def open_sessions_on_the_loop(store: Store, now: dt.datetime) -> int:
    """The open-sessions gauge's count as it ran before: a statement on the event loop."""
    async with store.database.transaction(read_only=True) as conn:
        return int((await conn.execute(open_sessions_counted(now))).scalar_one())


async def measure(
    url: str, args: argparse.Namespace
) -> tuple[list[tuple[str, str, str]], list[str]]:
    """The table's rows (read, median ms, the loop's longest stall), and what was found."""
    store = await Store.open(url)
    try:
        await fill(store, certificate_count=args.certificates, session_count=args.sessions)
        now = dt.datetime.now(dt.UTC)
        reads: list[tuple[str, Callable[[], Awaitable[Any]]]] = [
            ("nothing (baseline: the ticker alone)", lambda: asyncio.sleep(0.05)),
            (
                "the inventory read whole on the loop (baseline: the expiry gauge before)",
                store.certificates.list,
            ),
            ("soonest certificate expiry (gauge)", lambda: store.certificates.soonest_expiry(now)),
            (
                "open sessions counted on the loop (baseline: the gauge before)",
                lambda: open_sessions_on_the_loop(store, now),
            ),
            ("open sessions (gauge)", lambda: store.sessions.open_count(now)),
            ("open exchanges (gauge)", store.audit.open_count),
        ]
        rows = []
        for label, read in reads:
            figures = [await longest_stall(read) for _ in range(REPEATS)]
            took = statistics.median(t for t, _ in figures)
            stall = statistics.median(s for _, s in figures)
            rows.append((label, f"{took * 1000:.1f}", f"{stall * 1000:.1f}"))
        # What each read found, so a run shows the gauges read what their baselines read.
        soonest = await store.certificates.soonest_expiry(now)
        in_days = "none" if soonest is None else f"{(soonest - now).total_seconds() / 86400:.0f}"
        counted = await store.sessions.open_count(now)
        on_the_loop = await open_sessions_on_the_loop(store, now)
        found = [
            f"open sessions {counted} (counted on the loop: {on_the_loop})",
            f"the soonest expiry in {in_days} days",
        ]
        return rows, found
    finally:
        await store.close()


@contextlib.contextmanager
def database_url(backend: str) -> Iterator[str]:
    if backend == "postgres":
        with postgres_server_url() as server:
            url = asyncio.run(fresh_database(server))
            try:
                yield url
            finally:
                asyncio.run(drop_database(url))
        return
    with tempfile.TemporaryDirectory(prefix="tc-gauges-bench-") as directory:
        yield f"sqlite+aiosqlite:///{Path(directory) / 'traffic-center.db'}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--certificates", type=int, default=10_000)
    parser.add_argument("--sessions", type=int, default=100_000)
    parser.add_argument("--backends", default="sqlite", help="[sqlite] or sqlite,postgres")
    parser.add_argument("--quick", action="store_true", help="1,000 and 10,000 rows")
    args = parser.parse_args()
    if args.quick:
        args.certificates, args.sessions = 1_000, 10_000
    print(f"# {machine_line()}")
    print(f"# {args.certificates} certificates, {args.sessions} sessions (a tenth open)")
    print("| store | read | median ms | the loop's longest stall, median ms |")
    print("|---|---|---|---|")
    for backend in args.backends.split(","):
        with database_url(backend) as url:
            rows, found = asyncio.run(measure(url, args))
            for label, took, stall in rows:
                print(f"| {backend} | {label} | {took} | {stall} |")
            for line in found:
                print(f"# {backend}: {line}")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
