"""Nodes as an operator runs them: readiness that holds under load, and a node that dies.

A relay records *started* before its first byte and *final* after its last; a node killed in
between leaves an incomplete exchange that a surviving node closes as ``Onvolledig``.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.support.las import LasParty, LasWorld, scenario_key
from tests.support.messages import open_session
from tests.support.pupils import new_pgn
from tests.support.server import TrafficCenterUnderTest
from traffic_center.cli.context import open_store
from traffic_center.demo.processes import ChildProcess, child_env, free_port
from traffic_center.demo.sandbox import BRON, DOEL, Sandbox
from traffic_center.domain.audit import INCOMPLETE, AuditRecord, AuditType, Phase

HEARTBEAT = "0.5"
GRACE = "2"


# --- readiness under a steady load --------------------------------------------------------


async def relay_loop(doel: LasParty, bron: LasParty, until: float) -> int:
    """Sessions and 100 kB dossiers back to back; how many arrived whole."""
    done = 0
    client = doel.party.new_client()
    while time.monotonic() < until:
        key = scenario_key("grootte", 100_000)
        opened = await open_session(doel.party, bron.party, zoeksleutel=key)
        assert opened.status_code == 201, opened.text
        sessie_id = opened.json()["sessie_id"]
        body = {"routeringskenmerk": bron.routeringskenmerk, "zoeksleutel": key}
        answered = await client.post(f"/v1/sessions/{sessie_id}/dossier", json=body)
        assert answered.status_code == 200, answered.text
        assert len(answered.content) == 100_000
        done += 1
    return done


async def test_readyz_never_flaps_under_a_steady_load_of_relays(
    tc: TrafficCenterUnderTest, las: LasWorld
) -> None:
    bron, doel = await las.school("PO"), await las.school("VO")
    until = time.monotonic() + 6
    statuses: list[int] = []

    async def poll() -> None:
        async with httpx.AsyncClient(base_url=tc.ops_url) as ops:
            while time.monotonic() < until:
                statuses.append((await ops.get("/readyz", timeout=5)).status_code)
                await asyncio.sleep(0.1)

    relayed = await asyncio.gather(poll(), *(relay_loop(doel, bron, until) for _ in range(4)))
    assert sum(relayed[1:]) >= 20, "the load was not steady enough to mean anything"
    assert len(statuses) >= 30
    assert set(statuses) == {200}, f"{statuses.count(503)} of {len(statuses)} polls said 503"


# --- a node killed mid-relay --------------------------------------------------------------


def audit_verify(home: Path) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "traffic_center", "--home", str(home), "audit", "verify"],
        capture_output=True,
        text=True,
        env=child_env(),
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout.strip()


async def dossier_records(sandbox: Sandbox, sessie_id: str) -> list[AuditRecord]:
    assert sandbox.settings is not None
    async with open_store(sandbox.settings) as store:
        return [r for r in await store.audit.for_session(sessie_id) if r.type is AuditType.DOSSIER]


async def second_node(sandbox: Sandbox) -> tuple[ChildProcess, str]:
    """Another `serve` on the same home and store, as a second machine would run it."""
    assert sandbox.settings is not None
    ops_port = free_port()
    node = ChildProcess(
        "traffic-center-b",
        ["--home", str(sandbox.settings.home), "serve"],
        log_dir=sandbox.log_dir,
        env=child_env(
            TC_PORT=str(free_port()),
            TC_OPS_PORT=str(ops_port),
            TC_LOG_LEVEL="warning",
            TC_NODE_HEARTBEAT_SECONDS=HEARTBEAT,
            TC_ORPHAN_GRACE_SECONDS=GRACE,
        ),
    )
    ops_url = f"http://127.0.0.1:{ops_port}"
    deadline = time.monotonic() + 30
    async with httpx.AsyncClient(base_url=ops_url) as ops:
        while True:
            with contextlib.suppress(httpx.TransportError):
                if (await ops.get("/readyz")).status_code == httpx.codes.OK:
                    return node, ops_url
            assert node.process.poll() is None, node.tail()
            assert time.monotonic() < deadline, node.tail()
            await asyncio.sleep(0.1)


async def test_a_node_killed_mid_relay_leaves_an_incomplete_exchange_a_survivor_closes(
    tmp_path: Path,
) -> None:
    trickling = new_pgn()  # 1 KiB every 50 ms: minutes, if let run
    sandbox = Sandbox(
        tmp_path / "world",
        tc_env={"TC_NODE_HEARTBEAT_SECONDS": HEARTBEAT, "TC_ORPHAN_GRACE_SECONDS": GRACE},
        pupils={trickling: "trickle-4000000"},
    )
    await sandbox.start()
    node_b: ChildProcess | None = None
    try:
        assert sandbox.tc is not None
        assert sandbox.settings is not None
        node_b, _ = await second_node(sandbox)
        home = sandbox.settings.home
        doel = sandbox.doel_client()
        key = doel.zoeksleutel(trickling)
        granted = await doel.open_session(BRON.brin, trickling)
        await doel.aclose()

        received = 0
        async with httpx.AsyncClient(
            base_url=sandbox.tc_url, verify=sandbox.doel_tls(DOEL).ssl_context(), timeout=30
        ) as client:
            body = {"routeringskenmerk": BRON.routeringskenmerk, "zoeksleutel": key}
            url = f"/v1/sessions/{granted.sessie_id}/dossier"
            with contextlib.suppress(httpx.TransportError):
                async with client.stream("POST", url, json=body) as response:
                    assert response.status_code == 200
                    async for chunk in response.aiter_raw():
                        received += len(chunk)
                        if received >= 8 * 1024:
                            sandbox.tc.process.send_signal(signal.SIGKILL)
                        if sandbox.tc.process.poll() is not None:
                            break
        sandbox.tc.process.wait(10)
        assert 8 * 1024 <= received < 4_000_000

        [started] = await dossier_records(sandbox, granted.sessie_id)
        assert (started.phase, started.result) == (Phase.STARTED, "Gestart")
        assert audit_verify(home).startswith("OK ")

        deadline = time.monotonic() + 20
        while len(found := await dossier_records(sandbox, granted.sessie_id)) < 2:
            assert time.monotonic() < deadline, "no surviving node closed the orphan"
            await asyncio.sleep(0.2)
        _, final = found
        assert (final.phase, final.result) == (Phase.FINAL, INCOMPLETE)
        assert final.transaction_id == started.transaction_id
        assert final.node_id is not None
        assert final.node_id != started.node_id
        assert final.subject == f"node {started.node_id}"
        assert audit_verify(home).startswith("OK ")
    finally:
        if node_b is not None:
            await asyncio.to_thread(node_b.stop)
        await sandbox.stop()
