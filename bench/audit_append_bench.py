"""Audit chain appends per second with 1 and 3 nodes on one PostgreSQL.

    .venv/bin/python bench/audit_append_bench.py [--seconds 5] [--writers 4] [--quick]
    TC_BENCH_POSTGRES_URL=postgresql+asyncpg://… .venv/bin/python bench/audit_append_bench.py

Every record of the audit chain names the hash of the one before it, so appends from all
nodes are serialised on the chain's head row (``AuditRepository.append`` locks it). This
measures what that costs: each *node* is a process with a ``Store`` of its own (its own
pool, ``TC_DATABASE_POOL_SIZE`` + ``TC_DATABASE_MAX_OVERFLOW``), running ``--writers``
concurrent appenders that write two-phase dossier records (started, then final), as relays
finishing on that node would. It prints appends per second and the latency of one append
(p50/p99), then runs ``traffic-center audit verify`` on the whole chain: it must be OK and
hold exactly the records appended (no gap, no fork). It prints; it asserts no speed.

Without TC_BENCH_POSTGRES_URL it starts a throwaway PostgreSQL cluster from the machine's
binaries (the test suite's, ``tests/support/postgres.py``; Debian's ``postgresql``), with
fsync off: the figures are the chain's serialisation cost, not your disk's.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import datetime as dt
import hashlib
import multiprocessing
import os
import platform
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from _common import postgres_server_url

from traffic_center.admin.store import open_signed_store
from traffic_center.domain.audit import AuditRecord, AuditType, Phase
from traffic_center.settings import Settings
from traffic_center.store.store import Store


@dataclass(frozen=True)
class NodeResult:
    appends: int
    latencies: list[float]


def dossier_records(node: str) -> tuple[AuditRecord, AuditRecord]:
    """A relayed dossier's two records, as the exchange runner writes them."""
    now = dt.datetime.now(dt.UTC)
    started = AuditRecord(
        type=AuditType.DOSSIER,
        transaction_id=str(uuid.uuid4()),
        recorded_at=now,
        result="Gestart",
        sessie_id=str(uuid.uuid4()),
        doel_brin="34CD",
        doel_routeringskenmerk="00000007000034000001",
        bron_brin="12AB",
        bron_routeringskenmerk="00000007000012000001",
        request_in=now,
        forwarded_at=now,
        phase=Phase.STARTED,
        node_id=node,
    )
    final = dataclasses.replace(
        started,
        result="OverdrachtGeslaagd",
        http_status=200,
        upstream_status=200,
        response_in=now,
        response_out=now,
        size_bytes=170_000,
        sha256=hashlib.sha256(started.transaction_id.encode()).hexdigest(),
        phase=Phase.FINAL,
    )
    return started, final


async def run_node(
    url: str, secret: bytes, start_at: float, seconds: float, writers: int
) -> NodeResult:
    node = str(uuid.uuid4())
    store = await Store.open(url, migrate=False)  # the defaults: 5 + 5 connections
    latencies: list[float] = []
    try:
        await store.audit.head()  # connect before the clock starts
        await asyncio.sleep(max(0.0, start_at - time.time()))
        until = time.monotonic() + seconds

        async def writer() -> None:
            while time.monotonic() < until:
                for record in dossier_records(node):
                    began = time.perf_counter()
                    await store.audit.append(record, secret=secret)
                    latencies.append(time.perf_counter() - began)

        await asyncio.gather(*(writer() for _ in range(writers)))
    finally:
        await store.close()
    return NodeResult(len(latencies), latencies)


def node_process(
    url: str, secret: bytes, start_at: float, seconds: float, writers: int
) -> NodeResult:
    return asyncio.run(run_node(url, secret, start_at, seconds, writers))


def measure(url: str, secret: bytes, *, nodes: int, seconds: float, writers: int) -> NodeResult:
    """``nodes`` processes appending at once for ``seconds``; their appends together."""
    spawn = multiprocessing.get_context("spawn")  # a clean interpreter per node, like a host
    with ProcessPoolExecutor(max_workers=nodes, mp_context=spawn) as pool:
        start_at = time.time() + 3 + nodes  # time to import and connect
        futures = [
            pool.submit(node_process, url, secret, start_at, seconds, writers) for _ in range(nodes)
        ]
        results = [f.result() for f in futures]
    latencies = [x for r in results for x in r.latencies]
    return NodeResult(sum(r.appends for r in results), latencies)


def verify(settings: Settings) -> str:
    """`traffic-center audit verify`, as an operator runs it."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TC_")}
    assert settings.secret_key is not None
    env.update(
        TC_HOME=str(settings.home),
        TC_DATABASE_URL=settings.effective_database_url,
        TC_SECRET_KEY=settings.secret_key.get_secret_value(),
    )
    done = subprocess.run(
        [sys.executable, "-m", "traffic_center", "audit", "verify"],
        capture_output=True, text=True, env=env, timeout=600, check=False,
    )  # fmt: skip
    return (done.stdout + done.stderr).strip()


async def prepare(settings: Settings) -> tuple[bytes, int]:
    """Migrate, make the secret the chain's key; the chain's length before we start."""
    async with open_signed_store(settings) as (store, secret):
        return secret, (await store.audit.head()).count


async def chain_length(url: str) -> int:
    store = await Store.open(url, migrate=False)
    try:
        return (await store.audit.head()).count
    finally:
        await store.close()


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="per configuration")
    parser.add_argument("--writers", type=int, default=4, help="concurrent appenders per node")
    parser.add_argument("--quick", action="store_true", help="a smoke run: 1 s each")
    args = parser.parse_args(argv)
    seconds = 1.0 if args.quick else args.seconds
    with postgres_server_url() as url, tempfile.TemporaryDirectory(prefix="tc-bench-") as home:
        settings = Settings(home=Path(home), database_url=url, secret_key=secrets.token_urlsafe(48))
        secret, before = asyncio.run(prepare(settings))
        print(f"{platform.python_version()} on {platform.machine()}, {os.cpu_count()} CPUs; "
              f"{args.writers} appenders per node, {seconds:g} s each, two records per dossier")  # fmt: skip
        print("| nodes | appends | appends/s | p50 ms | p99 ms |")
        print("|---|---|---|---|---|")
        appended = 0
        for nodes in (1, 3):
            result = measure(url, secret, nodes=nodes, seconds=seconds, writers=args.writers)
            appended += result.appends
            ordered = sorted(result.latencies)
            p99 = ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]
            print(
                f"| {nodes} | {result.appends} | {result.appends / seconds:.0f} "
                f"| {ms(statistics.median(ordered))} | {ms(p99)} |"
            )
        after = asyncio.run(chain_length(url))
        verdict = verify(settings)
        print(f"chain: {before} + {appended} appended = {after} records; audit verify: {verdict}")
        gap_free = verdict.startswith("OK ") and after == before + appended
        print("chain gap-free: " + ("yes" if gap_free else "NO"))
        return 0 if gap_free else 1


if __name__ == "__main__":
    sys.exit(main())
