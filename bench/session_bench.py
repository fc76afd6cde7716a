"""Sessions per second through the broker API: open + close, SQLite and PostgreSQL, 1 and 2 workers.

    .venv/bin/python bench/session_bench.py [--quick] [--seconds 5] [--backends sqlite,postgres]
    TC_BENCH_POSTGRES_URL=postgresql+asyncpg://…/postgres .venv/bin/python bench/session_bench.py

For each store (the SQLite default, and PostgreSQL: a throwaway cluster with fsync off,
reached over TCP on loopback or, ``--postgres-over unix``, over its Unix socket; or
TC_BENCH_POSTGRES_URL) and each process model (`traffic-center serve`, and with
``--workers 2``) it starts a sandbox (the Traffic Center and two reference LAS processes on
loopback, over mTLS, each time on a fresh database) and lets 1 and then 16 doel clients
open a session (``POST /v1/sessions``) and close it (``POST /v1/sessions/{id}/close``) as
fast as they can for ``--seconds``. A client is one HTTP/1.1 keep-alive connection with the
doel's certificate: by default a lean client on asyncio's TLS streams (``--client raw``, as
wrk is to curl: the TC, not the client, should be what is measured on two shared cores), or
an ``httpx.AsyncClient`` (``--client httpx``, about as costly per request as the TC itself).
The clients run in separate processes (``--client-processes``, 2 by default) and their CPU
time is printed beside the Traffic Center's (all its processes). It prints
sessions per second (one session = open + close) and the p50/p99 of one pair; it asserts
no speed.

On PostgreSQL a line under each row says what the server saw meanwhile: its transactions
per session (every autocommit statement is one), the CPU of the bench database's backends
per session, and, sampled every 50 ms from ``pg_stat_activity``, how many backends waited
on a lock and how many sat idle in a transaction (a lock holder waiting for its client's
event loop) on average. With ``--workers 2`` the audit chain's head row is where they
queue (issue 14).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import multiprocessing
import os
import ssl
import statistics
import sys
import time
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import urlsplit

import httpx
import psutil
from _common import (
    POSTGRES_URL_ENV,
    add_tc_env_option,
    connect,
    cpu_seconds,
    fresh_database,
    machine_line,
    ms,
    postgres_server_url,
    running_sandbox,
    tc_env,
    tc_env_line,
)
from sqlalchemy.engine import make_url

from traffic_center.demo.sandbox import BRON, Sandbox
from traffic_center.domain.identifiers import derive_zoeksleutel
from traffic_center.las.doel import ClientTLS
from traffic_center.las.pupils import TEST_SCHEME_KEY

TEST_PGN = "662460613"  # a test vector of the zoeksleutel (tests/support/messages.py)
START_SECONDS = 2.0  # for the client processes to connect and warm up before the clock


@dataclass(frozen=True)
class ClientResult:
    sessions: int
    latencies: list[float]
    cpu_seconds: float


@dataclass(frozen=True)
class Config:
    backend: str
    workers: int
    settings: dict[str, str]  # --tc-env


class Connection(Protocol):
    """One doel client's keep-alive connection: POST a JSON body, get (status, JSON answer)."""

    async def post(self, path: str, body: dict[str, Any]) -> tuple[int, Any]: ...

    async def aclose(self) -> None: ...


class HttpxConnection:
    """httpx.AsyncClient on one HTTP/1.1 connection, as a LAS written with httpx would call."""

    def __init__(self, tc_url: str, context: ssl.SSLContext) -> None:
        one = httpx.Limits(max_connections=1, max_keepalive_connections=1)
        self._client = httpx.AsyncClient(base_url=tc_url, verify=context, timeout=30, limits=one)

    async def post(self, path: str, body: dict[str, Any]) -> tuple[int, Any]:
        answer = await self._client.post(path, json=body)
        return answer.status_code, answer.json()

    async def aclose(self) -> None:
        await self._client.aclose()


class RawConnection:
    """A lean HTTP/1.1 keep-alive client on asyncio's TLS streams, like wrk is to curl.

    httpx costs its process about 2 ms of CPU per session, as much as the Traffic Center:
    with the clients on the same two cores, the client would be what is measured. This one
    writes each request in one piece and reads the answer by its Content-Length (the TC
    always sends one on these routes; anything else is an error here, not a guess).
    """

    def __init__(self, tc_url: str, context: ssl.SSLContext) -> None:
        self._url = urlsplit(tc_url)
        self._context = context
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def post(self, path: str, body: dict[str, Any]) -> tuple[int, Any]:
        if self._reader is None or self._writer is None:
            self._reader, self._writer = await asyncio.open_connection(
                self._url.hostname, self._url.port, ssl=self._context
            )
        payload = json.dumps(body).encode()
        self._writer.write(
            f"POST {path} HTTP/1.1\r\nHost: {self._url.netloc}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(payload)}\r\n\r\n".encode()
            + payload
        )
        head = await self._reader.readuntil(b"\r\n\r\n")
        status_line, *fields = head.decode("latin-1").split("\r\n")
        length = next(
            (int(f.split(":", 1)[1]) for f in fields if f.lower().startswith("content-length:")),
            None,
        )
        if length is None:
            raise RuntimeError(f"an answer without Content-Length: {status_line}")
        return int(status_line.split()[1]), json.loads(await self._reader.readexactly(length))

    async def aclose(self) -> None:
        if self._writer is not None:
            self._writer.close()
            with contextlib.suppress(OSError, ssl.SSLError):
                await self._writer.wait_closed()


CLIENTS: dict[str, type[HttpxConnection] | type[RawConnection]] = {
    "raw": RawConnection,
    "httpx": HttpxConnection,
}


async def open_and_close(client: Connection, open_body: dict[str, Any]) -> None:
    status, answer = await client.post("/v1/sessions", open_body)
    if status != 201:
        raise RuntimeError(f"open: {status} {answer}")
    close_body = {
        "resultaat": "OverdrachtMislukt",  # no dossier: the only honest result
        "routeringskenmerk": answer["bron_endpoints"][0]["routeringskenmerk"],
    }
    status, closed = await client.post(f"/v1/sessions/{answer['sessie_id']}/close", close_body)
    if status != 200:
        raise RuntimeError(f"close: {status} {closed}")


async def run_clients(
    kind: str, tc_url: str, tls: ClientTLS, clients: int, start_at: float, seconds: float
) -> ClientResult:
    open_body = {
        "bron_brin": BRON.brin,
        "overdrachtsoort": "overstapdossier",
        "zoeksleutel": derive_zoeksleutel(TEST_SCHEME_KEY, TEST_PGN),
    }
    context = tls.ssl_context()
    latencies: list[float] = []
    pool: list[Connection] = [CLIENTS[kind](tc_url, context) for _ in range(clients)]
    try:
        await asyncio.gather(*(open_and_close(c, open_body) for c in pool))  # connect, warm
        await asyncio.sleep(max(0.0, start_at - time.time()))
        cpu_before = time.process_time()
        until = time.monotonic() + seconds

        async def loop(client: Connection) -> None:
            while time.monotonic() < until:
                began = time.perf_counter()
                await open_and_close(client, open_body)
                if time.monotonic() <= until:  # what ends after the bell is not counted
                    latencies.append(time.perf_counter() - began)

        await asyncio.gather(*(loop(c) for c in pool))
        cpu = time.process_time() - cpu_before
    finally:
        await asyncio.gather(*(c.aclose() for c in pool))
    return ClientResult(len(latencies), latencies, cpu)


def client_process(
    kind: str, tc_url: str, tls: ClientTLS, clients: int, start_at: float, seconds: float
) -> ClientResult:
    return asyncio.run(run_clients(kind, tc_url, tls, clients, start_at, seconds))


def measure(
    pool: ProcessPoolExecutor, sandbox: Sandbox, clients: int, args: argparse.Namespace
) -> dict[str, float]:
    processes, seconds = args.client_processes, args.seconds
    assert sandbox.tc is not None
    processes = min(processes, clients)
    shares = [clients // processes + (i < clients % processes) for i in range(processes)]
    start_at = time.time() + START_SECONDS
    futures = [
        pool.submit(
            client_process, args.client, sandbox.tc_url, sandbox.doel_tls(), n, start_at, seconds
        )
        for n in shares
    ]
    time.sleep(max(0.0, start_at - time.time()))
    tc_before = cpu_seconds(sandbox.tc.pid)
    results = [f.result() for f in futures]
    tc_cpu = cpu_seconds(sandbox.tc.pid) - tc_before
    latencies = sorted(x for r in results for x in r.latencies)
    return {
        "clients": clients,
        "sessions": len(latencies),
        "per_second": len(latencies) / seconds,
        "p50": statistics.median(latencies),
        "p99": latencies[min(len(latencies) - 1, round(0.99 * (len(latencies) - 1)))],
        "client_cpu": sum(r.cpu_seconds for r in results) / seconds,
        "tc_cpu": tc_cpu / seconds,
    }


@contextlib.contextmanager
def database_env(url: str | None) -> Iterator[dict[str, str]]:
    """TC_DATABASE_URL for the sandbox: its builder reads the environment, its TC gets it."""
    if url is None:
        yield {}
        return
    os.environ["TC_DATABASE_URL"] = url
    try:
        yield {"TC_DATABASE_URL": url}
    finally:
        del os.environ["TC_DATABASE_URL"]


@contextlib.asynccontextmanager
async def sandbox_for(config: Config, postgres: str | None) -> AsyncIterator[Sandbox]:
    url = await fresh_database(postgres) if config.backend == "postgres" and postgres else None
    with database_env(url) as env:
        tc_env = {**env, **config.settings, "TC_WORKERS": str(config.workers)}
        async with running_sandbox("tc-session-bench-", tc_env=tc_env) as sandbox:
            yield sandbox


async def run_config(
    config: Config, postgres: str | None, pool: ProcessPoolExecutor, args: argparse.Namespace
) -> list[dict[str, Any]]:
    rows = []
    async with sandbox_for(config, postgres) as sandbox:
        database = os.environ.get("TC_DATABASE_URL") if config.backend == "postgres" else None
        for clients in args.clients:
            server: ServerSide | None = None
            if database is None:
                row = await asyncio.to_thread(measure, pool, sandbox, clients, args)
            else:
                async with watching_server(database) as server:
                    row = await asyncio.to_thread(measure, pool, sandbox, clients, args)
            rows.append({"backend": config.backend, "workers": config.workers, **row})
            print_row(rows[-1])
            if server is not None:
                print_server_side(server, rows[-1]["sessions"])
    return rows


@dataclass
class ServerSide:
    """What PostgreSQL saw during one measurement (``watching_server``)."""

    transactions: int = 0
    backend_cpu_seconds: float = 0.0
    samples: int = 0
    waiting_on_lock: int = 0
    idle_in_transaction: int = 0


@contextlib.asynccontextmanager
async def watching_server(database_url: str) -> AsyncIterator[ServerSide]:
    """The bench database's transactions, its backends' CPU and their lock waits while the
    body runs (sampled by a connection of its own, every 50 ms, not counted as waiting)."""
    url = make_url(database_url)
    name = url.database
    watcher = await connect(url, name)
    seen = ServerSide()
    count_transactions = (
        "SELECT xact_commit + xact_rollback FROM pg_stat_database WHERE datname = $1"
    )

    baseline: list[float] = []

    async def sample() -> None:
        await asyncio.sleep(START_SECONDS)  # as the clients: after they connected and warmed
        await watcher.execute("SELECT pg_stat_clear_snapshot()")
        baseline.extend(
            (await watcher.fetchval(count_transactions, name), backend_cpu_seconds(name))
        )
        while True:
            states = await watcher.fetch(
                "SELECT state, wait_event_type FROM pg_stat_activity"
                " WHERE datname = $1 AND pid <> pg_backend_pid()",
                name,
            )
            seen.samples += 1
            seen.waiting_on_lock += sum(1 for s in states if s["wait_event_type"] == "Lock")
            seen.idle_in_transaction += sum(
                1 for s in states if s["state"] == "idle in transaction"
            )
            await asyncio.sleep(0.05)

    try:
        sampler = asyncio.create_task(sample())
        try:
            yield seen
        finally:
            sampler.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sampler
        if baseline:
            transactions_before, cpu_before = baseline
            seen.backend_cpu_seconds = backend_cpu_seconds(name) - cpu_before
            # A backend reports its counts to the statistics when it goes idle: a moment.
            await asyncio.sleep(1.0)
            await watcher.execute("SELECT pg_stat_clear_snapshot()")
            transactions = await watcher.fetchval(count_transactions, name)
            # Less the samples, each a transaction of the watcher itself.
            seen.transactions = int(transactions - transactions_before) - seen.samples
    finally:
        await watcher.close()


def backend_cpu_seconds(database: str | None) -> float:
    """User + system CPU so far of the server's backends for ``database`` (a local server;
    0 for one whose processes this machine does not show)."""
    total = 0.0
    for process in psutil.process_iter(["cmdline"]):
        command = " ".join(process.info["cmdline"] or ())
        if command.startswith("postgres: ") and f" {database} " in f"{command} ":
            with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
                times = process.cpu_times()
                total += times.user + times.system
    return total


def print_server_side(server: ServerSide, sessions: int) -> None:
    per_session = max(sessions, 1)
    samples = max(server.samples, 1)
    print(
        f"#   postgres: {server.transactions / per_session:.1f} transactions per session, "
        f"{1000 * server.backend_cpu_seconds / per_session:.2f} ms backend CPU per session; "
        f"on average {server.waiting_on_lock / samples:.1f} backends waiting on a lock, "
        f"{server.idle_in_transaction / samples:.1f} idle in a transaction",
        flush=True,
    )


def print_row(r: dict[str, Any]) -> None:
    print(
        f"| {r['backend']} | {r['workers']} | {r['clients']} | {r['sessions']} "
        f"| {r['per_second']:.0f} | {ms(r['p50'])} | {ms(r['p99'])} "
        f"| {r['tc_cpu']:.2f} | {r['client_cpu']:.2f} |",
        flush=True,
    )


async def run(args: argparse.Namespace) -> list[dict[str, Any]]:
    configs = [Config(b, w, tc_env(args)) for b in args.backends for w in args.workers]
    rows: list[dict[str, Any]] = []
    spawn = multiprocessing.get_context("spawn")  # clean client interpreters, like other hosts
    with (
        ProcessPoolExecutor(max_workers=args.client_processes, mp_context=spawn) as pool,
        contextlib.ExitStack() as stack,
    ):
        postgres = None
        if "postgres" in args.backends:
            postgres = stack.enter_context(postgres_server_url(over=args.postgres_over))
        for config in configs:
            rows.extend(await run_config(config, postgres, pool, args))
    return rows


def _postgres_line(over: str) -> str:
    given = os.environ.get(POSTGRES_URL_ENV)
    if given is not None:
        return f"{POSTGRES_URL_ENV} ({make_url(given).render_as_string(hide_password=True)})"
    how = "its Unix socket" if over == "unix" else "TCP on loopback"
    return f"a throwaway cluster on this machine, fsync off, over {how} (--postgres-over)"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="per configuration [5]")
    parser.add_argument("--quick", action="store_true", help="a smoke run: 1.5 s each")
    parser.add_argument("--backends", default="sqlite,postgres", help="[sqlite,postgres]")
    parser.add_argument("--workers", default="1,2", help="TC worker processes to try [1,2]")
    parser.add_argument("--clients", default="1,16", help="concurrent clients to try [1,16]")
    parser.add_argument("--client-processes", type=int, default=2, help="[2]")
    parser.add_argument(
        "--postgres-over", choices=("tcp", "unix"), default="tcp",
        help="how the TC reaches the throwaway PostgreSQL: TCP on loopback, or its Unix "
        "socket [tcp]",
    )  # fmt: skip
    parser.add_argument(
        "--client", choices=sorted(CLIENTS), default="raw",
        help="raw: a lean HTTP/1.1 client (like wrk); httpx: httpx.AsyncClient [raw]",
    )  # fmt: skip
    add_tc_env_option(parser)
    args = parser.parse_args(argv)
    args.seconds = 1.5 if args.quick else args.seconds
    args.backends = [b for b in args.backends.split(",") if b]
    if not set(args.backends) <= {"sqlite", "postgres"}:
        parser.error("--backends: sqlite and/or postgres")
    args.workers = [int(w) for w in args.workers.split(",")]
    args.clients = [int(c) for c in args.clients.split(",")]
    print(f"# sessions/s (open + close), {args.seconds:g} s each, keep-alive HTTP/1.1 clients "
          f"in {args.client_processes} processes, {args.client} client")  # fmt: skip
    print(f"# {machine_line()}")
    if "postgres" in args.backends:
        print(f"# PostgreSQL: {_postgres_line(args.postgres_over)}")
    if settings_line := tc_env_line(args):
        print(settings_line)
    print("| store | workers | clients | sessions | sessions/s | p50 ms | p99 ms "
          "| TC CPU (cores) | client CPU (cores) |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|---|")
    asyncio.run(run(args))
    print("goals: ≥ 400/s sqlite with 16 clients; ≥ 300/s postgres, 2 workers, 16 clients")
    return 0


if __name__ == "__main__":
    sys.exit(main())
