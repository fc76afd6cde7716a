"""Shared fixtures: the throwaway PostgreSQL server, fresh databases, running Traffic Centers."""

from __future__ import annotations

import itertools
import os
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path

import asyncpg
import pytest

from tests.support.contract import ANSWERS, faults_since
from tests.support.las import LasWorld
from tests.support.postgres import POSTGRES_URL_ENV, PostgresServer, throwaway_postgres
from tests.support.server import TrafficCenterUnderTest, start_traffic_center
from traffic_center.observability.logging import configure_logging
from traffic_center.store.store import Store

BACKENDS = ["sqlite", "postgresql"]
_database_numbers = itertools.count(1)

DatabaseFactory = Callable[[str], Awaitable[str]]


@pytest.fixture(scope="session", autouse=True)
def structured_logging() -> None:
    """As `serve` sets it up: structlog through the standard library, JSON lines."""
    configure_logging("info", json_lines=True)


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    """Started only when a test needs it; the README's test command always runs those tests."""
    given = os.environ.get(POSTGRES_URL_ENV)
    if given:
        from sqlalchemy.engine import make_url

        url = make_url(given)
        socket_directory = url.query.get("host")  # a socket URL: ?host=/socket/dir&port=N
        port = url.port or int(str(url.query.get("port", 5432)))
        yield PostgresServer(
            url.host or "127.0.0.1",
            port,
            url.username or "postgres",
            Path(str(socket_directory)) if socket_directory else None,
        )
        return
    with throwaway_postgres() as server:
        yield server


@pytest.fixture(scope="session")
def database_factory(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> DatabaseFactory:
    """A fresh, empty database on the asked backend; every caller gets its own."""
    directory = tmp_path_factory.mktemp("databases")

    async def make(backend: str) -> str:
        number = next(_database_numbers)
        if backend == "sqlite":
            return f"sqlite+aiosqlite:///{directory / f'tc-{number}.db'}"
        server: PostgresServer = request.getfixturevalue("postgres")
        name = f"tc_test_{os.getpid()}_{number}"
        connection = await asyncpg.connect(
            host=server.host, port=server.port, user=server.user, database="postgres"
        )
        try:
            await connection.execute(f'CREATE DATABASE "{name}"')
        finally:
            await connection.close()
        return server.url(name)

    return make


@pytest.fixture(params=BACKENDS)
async def store(
    request: pytest.FixtureRequest, database_factory: DatabaseFactory
) -> AsyncIterator[Store]:
    """A migrated store on a fresh database, on each backend."""
    opened = await Store.open(await database_factory(request.param))
    yield opened
    await opened.close()


@pytest.fixture(scope="module", params=BACKENDS)
async def tc(
    request: pytest.FixtureRequest,
    database_factory: DatabaseFactory,
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[TrafficCenterUnderTest]:
    """A running Traffic Center on each backend, shared by one test module."""
    url = await database_factory(request.param)
    home = tmp_path_factory.mktemp(f"tc-{request.param}")
    overrides = getattr(request.module, "TRAFFIC_CENTER_SETTINGS", {})
    running = await start_traffic_center(home, url, **overrides)
    yield running
    await running.stop()


@pytest.fixture(scope="module")
async def las(tc: TrafficCenterUnderTest) -> AsyncIterator[LasWorld]:
    """Schools whose endpoints are reference LAS servers, on the module's Traffic Center."""
    world = LasWorld(tc)
    yield world
    await world.stop()


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return tmp_path / "home"


@pytest.fixture
def answers_documented() -> Iterator[None]:
    """Fails the test if any answer its parties got is not one openapi.yaml declares for the
    operation (tests/support/contract.py); a module opts in with ``usefixtures``."""
    start = len(ANSWERS)
    yield
    faults = faults_since(start)
    assert not faults, "answers openapi.yaml does not declare:\n" + "\n".join(faults)
