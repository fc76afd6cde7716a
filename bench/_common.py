"""What the benchmarks share: a sandbox for the occasion, percentiles, PostgreSQL, the machine.

Imported by the bench scripts as ``_common`` (each script runs with bench/ on ``sys.path``);
only public entry points of the Traffic Center are used, so a bench measures the code as a
vendor and an operator meet it.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import os
import platform
import shutil
import sys
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import psutil
from sqlalchemy.engine import URL, make_url

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # the test suite's throwaway PostgreSQL, run as a script

from tests.support.postgres import ThrowawayPostgres  # noqa: E402
from traffic_center.demo.sandbox import Sandbox  # noqa: E402
from traffic_center.domain.las_contract import SESSION_HEADER, TRANSACTION_HEADER  # noqa: E402

KB, MB = 1024, 1024 * 1024
POSTGRES_URL_ENV = "TC_BENCH_POSTGRES_URL"
# No bench may be refused by the limits that guard a production node against one school: they
# would measure the limiter, not the path. Everything else stays at its default.
UNLIMITED = str(10**9)
BENCH_TC_ENV = {
    "TC_RELAY_MAX_IN_FLIGHT": "256",
    "TC_RELAY_MAX_PER_DOEL_SCHOOL": "256",
    "TC_RELAY_MAX_PER_BRON_ENDPOINT": "256",
    "TC_RATE_LIMIT_SESSIONS_PER_MINUTE": UNLIMITED,
    "TC_RATE_LIMIT_CHECKS_PER_MINUTE": UNLIMITED,
    "TC_RATE_LIMIT_DOSSIERS_PER_MINUTE": UNLIMITED,
    "TC_RATE_LIMIT_CLOSES_PER_MINUTE": UNLIMITED,
}


@dataclass(frozen=True)
class Case:
    label: str
    size: int
    rounds: int
    pgn: str  # the bench pupil whose dossier is a generated one of `size` bytes


@dataclass
class Samples:
    seconds: list[float] = field(default_factory=list)

    def percentile(self, q: float) -> float:
        ordered = sorted(self.seconds)
        index = min(len(ordered) - 1, round(q * (len(ordered) - 1)))
        return ordered[index]

    def throughput_mb_s(self, size: int) -> float:
        return size * len(self.seconds) / sum(self.seconds) / MB


def machine_line() -> str:
    """One line naming the machine, so a table is never read without it."""
    cpu = platform.processor() or platform.machine()
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    return (
        f"{psutil.cpu_count()} CPUs ({cpu}), Python {platform.python_version()}, "
        f"load average {load} at start"
    )


def cpu_seconds(pid: int) -> float:
    """User + system CPU so far of a process and its children (the TC's workers, nginx's)."""
    root = psutil.Process(pid)
    total = 0.0
    for process in (root, *root.children(recursive=True)):
        with contextlib.suppress(psutil.NoSuchProcess):
            times = process.cpu_times()
            total += times.user + times.system
    return total


def bron_request(zoeksleutel: str) -> tuple[dict[str, Any], dict[str, str]]:
    """A documentRequest as the relay sends it to a bron LAS: its body and OSO headers."""
    sessie_id = str(uuid.uuid4())
    body = {
        "sessie_id": sessie_id,
        "zoeksleutel": zoeksleutel,
        "overdrachtsoort": "overstapdossier",
        "aanvraagdatum": None,
        "doel_brin": "34CD",
        "doel_routeringskenmerk": "00000007000034000001",
        "doel_sector": "VO",
    }
    return body, {SESSION_HEADER: sessie_id, TRANSACTION_HEADER: str(uuid.uuid4())}


async def fetch_direct(client: httpx.AsyncClient, url: str, zoeksleutel: str) -> tuple[int, str]:
    """The dossier straight from the bron at ``url``: its size and SHA-256."""
    body, headers = bron_request(zoeksleutel)
    digest, size = hashlib.sha256(), 0
    async with client.stream("POST", url + "/dossier", json=body, headers=headers) as response:
        response.raise_for_status()
        async for chunk in response.aiter_raw():
            digest.update(chunk)
            size += len(chunk)
    return size, digest.hexdigest()


@contextlib.asynccontextmanager
async def running_sandbox(
    prefix: str, *, tc_env: dict[str, str] | None = None, pupils: dict[str, str] | None = None
) -> AsyncIterator[Sandbox]:
    """A started sandbox in a directory of its own; stopped and removed afterwards."""
    root = Path(tempfile.mkdtemp(prefix=prefix))
    sandbox = Sandbox(root, tc_env={**BENCH_TC_ENV, **(tc_env or {})}, pupils=pupils or {})
    try:
        await sandbox.start()
        yield sandbox
    finally:
        await sandbox.stop()
        shutil.rmtree(root, ignore_errors=True)


@contextlib.contextmanager
def postgres_server_url(*, over: str = "tcp") -> Iterator[str]:
    """A PostgreSQL URL (database ``postgres``): TC_BENCH_POSTGRES_URL, or a throwaway cluster
    from the machine's binaries (the test suite's, fsync off: the figures are the code's cost,
    not the disk's), reached ``over`` "tcp" (loopback) or "unix" (its Unix socket)."""
    url = os.environ.get(POSTGRES_URL_ENV)
    if url is not None:
        yield url
        return
    cluster = ThrowawayPostgres()
    try:
        cluster.init()
        cluster.start()
        try:
            server = cluster.server
            yield server.socket_url("postgres") if over == "unix" else server.url("postgres")
        finally:
            cluster.stop()
    finally:
        cluster.remove()


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f}"


def add_tc_env_option(parser: argparse.ArgumentParser) -> None:
    """``--tc-env TC_NAME=VALUE`` (repeatable): settings for the Traffic Center under test;
    ``tc_env(args)`` gives them as a dict."""
    parser.add_argument(
        "--tc-env", action="append", default=[], type=_tc_setting, metavar="TC_NAME=VALUE",
        help="a setting for the Traffic Center, e.g. TC_EVENT_LOOP=asyncio (repeatable)",
    )  # fmt: skip


def tc_env(args: argparse.Namespace) -> dict[str, str]:
    return dict(args.tc_env)


def tc_env_line(args: argparse.Namespace) -> str | None:
    """The header line naming the settings given, or None without any."""
    given = " ".join(f"{name}={value}" for name, value in args.tc_env)
    return f"# Traffic Center settings: {given}" if given else None


def _tc_setting(text: str) -> tuple[str, str]:
    name, equals, value = text.partition("=")
    if not equals or not name:
        raise argparse.ArgumentTypeError("expected TC_NAME=VALUE")
    return name, value


async def connect(url: URL, database: str | None) -> asyncpg.Connection:
    """asyncpg to the server of a SQLAlchemy URL, over TCP or over a Unix socket (the URL's
    ``?host=/socket/directory&port=N``, as the Traffic Center takes it)."""
    return await asyncpg.connect(
        host=url.host or url.query.get("host"), port=url.port or url.query.get("port"),
        user=url.username, password=url.password, database=database,
    )  # fmt: skip


async def fresh_database(server_url: str) -> str:
    """A new, empty database on the server; its URL. A bench's rows never go into a database
    of the operator's own (TC_BENCH_POSTGRES_URL names a server, not a database to fill)."""
    url = make_url(server_url)
    name = f"tc_bench_{uuid.uuid4().hex[:12]}"
    connection = await connect(url, url.database or "postgres")
    try:
        await connection.execute(f'CREATE DATABASE "{name}"')
    finally:
        await connection.close()
    return url.set(database=name).render_as_string(hide_password=False)


async def drop_database(database_url: str) -> None:
    """Drop a database ``fresh_database`` made, once nothing is connected to it."""
    url = make_url(database_url)
    connection = await connect(url, "postgres")
    try:
        await connection.execute(f'DROP DATABASE IF EXISTS "{url.database}"')
    finally:
        await connection.close()
