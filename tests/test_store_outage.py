"""Fail closed: with the store unable to write, exchanges are refused and nothing reaches a LAS;
when it is back, the node recovers by itself, and the refusals are on the record."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from structlog.testing import capture_logs

from tests.support.las import LasParty, LasWorld, scenario_key
from tests.support.messages import open_session
from tests.support.postgres import ThrowawayPostgres
from tests.support.processes import clean_env
from tests.support.server import TrafficCenterUnderTest, start_traffic_center
from traffic_center.audit.verify import verify_chain


@dataclass
class Scene:
    tc: TrafficCenterUnderTest
    bron: LasParty
    doel: LasParty
    sessie_id: str
    zoeksleutel: str


async def build_scene(tc: TrafficCenterUnderTest) -> tuple[LasWorld, Scene]:
    las = LasWorld(tc)
    bron, doel = await las.school("PO"), await las.school("VO")
    key = scenario_key("grootte", 10_000)
    opened = await open_session(doel.party, bron.party, zoeksleutel=key)
    assert opened.status_code == 201
    return las, Scene(tc, bron, doel, opened.json()["sessie_id"], key)


async def exchanges(scene: Scene) -> list[httpx.Response]:
    """One of each relayed and brokered exchange, on fresh connections."""
    doel, bron = scene.doel.party, scene.bron.party
    return [
        await doel.new_client().post(
            f"/v1/sessions/{scene.sessie_id}/dossier",
            json={"routeringskenmerk": bron.routeringskenmerk, "zoeksleutel": scene.zoeksleutel},
        ),
        await bron.new_client().post(
            "/v1/notifications",
            json={"sessie_id": scene.sessie_id, "doel_routeringskenmerk": doel.routeringskenmerk},
        ),
        await open_session(doel, bron, zoeksleutel=scenario_key("gereed")),
    ]


async def every_answer_logged(logs: list[dict[str, Any]], answers: list[httpx.Response]) -> None:
    """Each 503 has an error line with its request id, saying whether it is on the record."""
    deadline = time.monotonic() + 5
    for answered in (a for a in answers if a.status_code >= 400):
        request_id = answered.headers["x-request-id"]
        while not (lines := [x for x in logs if x.get("request_id") == request_id]):
            assert time.monotonic() < deadline, f"no log line for {answered.request.url}"
            await asyncio.sleep(0.01)
        assert any(x["log_level"] == "error" and x["status"] == 503 for x in lines), lines


async def ready(tc: TrafficCenterUnderTest) -> int:
    async with httpx.AsyncClient(base_url=tc.ops_url) as ops:
        return (await ops.get("/readyz")).status_code


async def outage_then_recovery(
    scene: Scene,
    make_unavailable: Callable[[], Awaitable[None]],
    restore: Callable[[], Awaitable[None]],
) -> None:
    before = await exchanges(scene)
    assert [r.status_code for r in before] == [200, 200, 201]
    started = scene.bron.server.counters.snapshot().started
    received = len(scene.doel.server.notifications.received)

    await make_unavailable()
    with capture_logs() as logs:
        during = await exchanges(scene)
        # Not an exchange: it only reads, so it may still answer while writes fail.
        whoami = await scene.doel.party.new_client().get("/v1/whoami")
        await every_answer_logged(logs, [*during, whoami])
    assert [r.status_code for r in during] == [503, 503, 503]
    assert whoami.status_code in (200, 503)
    assert all(r.headers["content-type"] == "application/problem+json" for r in during)
    assert {r.json()["code"] for r in during} <= {"AuditNietBeschikbaar", "OpslagNietBeschikbaar"}
    assert scene.bron.server.counters.snapshot().started == started  # nothing reached a LAS
    assert len(scene.doel.server.notifications.received) == received
    assert await ready(scene.tc) == 503

    await restore()
    after = await exchanges(scene)  # the same process: no restart
    assert [r.status_code for r in after] == [200, 200, 201], after[0].json().get("detail")
    assert scene.bron.server.counters.snapshot().started == started + 1
    assert await ready(scene.tc) == 200
    verdict = await verify_chain(scene.tc.store, scene.tc.secret)
    assert verdict.broken is None


# --- SQLite: the database file cannot be written ---------------------------------------------


def chattr(flag: str, paths: list[Path]) -> None:
    """Even root cannot write an immutable file (chattr +i)."""
    tool = shutil.which("chattr")
    assert tool, "chattr (e2fsprogs) is needed to make the SQLite file unwritable as root"
    for path in paths:
        subprocess.run([tool, flag, str(path)], check=flag == "+i")


async def test_sqlite_unwritable_refuses_every_exchange_and_recovers(tmp_path: Path) -> None:
    database = tmp_path / "tc.db"
    # -shm stays writable: it is shared memory, which readers (who still may read) need.
    files = [database, Path(f"{database}-wal")]
    tc = await start_traffic_center(tmp_path / "home", f"sqlite+aiosqlite:///{database}")
    las, scene = await build_scene(tc)

    async def unwritable() -> None:
        chattr("+i", files)

    async def writable() -> None:
        chattr("-i", files)

    try:
        await outage_then_recovery(scene, unwritable, writable)
        # The refusals waited in the node's outbox and are on the chain now.
        refused = [
            item.record
            async for item in tc.store.audit.walk()
            if item.record.result in ("AuditNietBeschikbaar", "OpslagNietBeschikbaar")
        ]
        assert len(refused) == 3
        assert all(r.http_status == 503 for r in refused)
    finally:
        chattr("-i", files)
        await las.stop()
        await tc.stop()


def test_an_unwritable_database_file_is_one_line_for_a_command(tmp_path: Path) -> None:
    """A certificate admin's command on an immutable SQLite file: one line saying why (it
    was a PermissionError traceback from tightening the file's mode), and a command that
    only reads still reads a file that is its owner's alone."""
    home = tmp_path / "home"
    database = home / "traffic-center.db"

    def command(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "traffic_center", "--home", str(home), "school", *args],
            capture_output=True, text=True, env=clean_env(), timeout=60, check=False,
        )  # fmt: skip

    assert (
        command("add", "--brin", "12AB", "--name", "De Regenboog", "--sector", "PO").returncode == 0
    )
    database.chmod(0o644)  # as an older node left it
    chattr("+i", [database])
    try:
        loose = command("list")
        assert (loose.returncode, loose.stderr.count("\n")) == (1, 1), loose.stderr
        assert "readable by its owner only: Operation not permitted" in loose.stderr
        chattr("-i", [database])
        database.chmod(0o600)
        chattr("+i", [database])
        listed = command("list")
        assert listed.returncode == 0, listed.stderr
        assert "12AB" in listed.stdout
        added = command("add", "--brin", "34CD", "--name", "Het College", "--sector", "VO")
        assert (added.returncode, added.stderr.count("\n")) == (1, 1), added.stderr
        assert "its database file is read-only" in added.stderr
    finally:
        chattr("-i", [database])


# --- SQLite: another process holds the write lock ------------------------------------------

# Holds SQLite's write lock until its stdin closes, as a stuck admin shell or a backup would.
LOCK_HOLDER = """
import sqlite3, sys
holder = sqlite3.connect(sys.argv[1], isolation_level=None, timeout=10)
holder.execute("BEGIN IMMEDIATE")
print("locked", flush=True)
sys.stdin.read()
holder.execute("ROLLBACK")
"""
HELD_SECONDS = 1.5
# Far above the loop's busy timeout (store/database.py, milliseconds), far below SQLite's
# long wait (30 s): a request that waited for the lock on the event loop would show.
NOT_STALLED_SECONDS = 0.5


async def timed(answer: Awaitable[httpx.Response]) -> tuple[int, float]:
    started = time.monotonic()
    status = (await answer).status_code
    return status, time.monotonic() - started


async def test_a_write_lock_held_elsewhere_stalls_only_the_writes_behind_it(
    tmp_path: Path,
) -> None:
    """While another process holds the write lock, reads, probes and the other listener
    answer at once, every time; the writes wait in a thread, and go through once the lock is
    released (SQLite's long wait is 30 s; this lock is held for 1.5 s)."""
    database = tmp_path / "tc.db"
    tc = await start_traffic_center(tmp_path / "home", f"sqlite+aiosqlite:///{database}")
    doel, bron = await tc.world.schools("PO", "PO")
    key = scenario_key("gereed")
    assert (await open_session(doel, bron, zoeksleutel=key)).status_code == 201
    holder = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        LOCK_HOLDER,
        str(database),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
    )
    assert holder.stdin is not None
    assert holder.stdout is not None
    try:
        assert await holder.stdout.readline() == b"locked\n"
        locked_at = time.monotonic()
        writes = [
            asyncio.ensure_future(timed(open_session(doel, bron, zoeksleutel=key)))
            for _ in range(3)
        ]
        async with httpx.AsyncClient(base_url=tc.ops_url) as ops:
            reader = doel.new_client()
            while time.monotonic() - locked_at < HELD_SECONDS:
                for status, took in [
                    await timed(ops.get("/healthz")),
                    await timed(ops.get("/metrics")),
                    await timed(reader.get("/v1/crl")),  # a read through the store
                ]:
                    assert status in (200, 404)  # 404: no CRL published yet
                    assert took < NOT_STALLED_SECONDS, took
                await asyncio.sleep(0.05)
        assert not any(write.done() for write in writes)  # queued behind the lock
        holder.stdin.close()
        for status, took in await asyncio.gather(*writes):
            assert status == 201
            assert took < 30  # they waited (not done while the lock was held), then went through
    finally:
        if holder.returncode is None:
            holder.kill()
        await holder.wait()
        await tc.stop()


# --- PostgreSQL: the server is stopped, then started again ------------------------------------


@pytest.fixture
def own_postgres() -> Iterator[ThrowawayPostgres]:
    """A server of this test's own, since it will be stopped."""
    cluster = ThrowawayPostgres()
    cluster.init()
    cluster.start()
    yield cluster
    cluster.stop()
    cluster.remove()


async def test_postgresql_stopped_refuses_every_exchange_and_recovers(
    tmp_path: Path, own_postgres: ThrowawayPostgres
) -> None:
    url = own_postgres.server.url("postgres")
    tc = await start_traffic_center(tmp_path / "home", url)
    las, scene = await build_scene(tc)

    async def stop() -> None:
        await asyncio.to_thread(own_postgres.stop, "fast")

    async def start() -> None:
        await asyncio.to_thread(own_postgres.start)

    try:
        await outage_then_recovery(scene, stop, start)
    finally:
        await las.stop()
        await tc.stop()
