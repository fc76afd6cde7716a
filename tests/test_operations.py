"""A Traffic Center process as operators run it: workers, the audit chain under load, metrics
in the exposition format, and a graceful drain on SIGTERM."""

from __future__ import annotations

import asyncio
import hashlib
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator

import httpx
import pytest

from tests.support.processes import clean_env
from tests.support.pupils import new_pgn
from traffic_center.demo.sandbox import BRON, Sandbox
from traffic_center.las.doel import DoelClient
from traffic_center.las.dossier import generated_digest
from traffic_center.las.pupils import pupil_with

MB = 1024 * 1024
TRANSFERS_PER_CLIENT = 88  # 4 clients × 88 transfers × 3 exchanges > 1000; 4 kinds each
SMALL_PUPIL = "999990056"  # the bron LAS holds them with a generated 5000-byte dossier
DRAIN_PUPIL = "999990068"  # … and a 50 MB one


@pytest.fixture(scope="module")
async def workers(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Sandbox]:
    world = Sandbox(
        tmp_path_factory.mktemp("workers"),
        tc_env={"TC_WORKERS": "2", "TC_RATE_LIMIT_SESSIONS_PER_MINUTE": "100000"},
        pupils={SMALL_PUPIL: "grootte-5000"},
    )
    await world.start()
    yield world
    codes = await world.stop()
    assert set(codes.values()) == {0}, codes


async def mixed_workload(doel: DoelClient, client_number: int) -> list[str]:
    """Transfers that succeed, are refused by the bron, or are not ready: 3 exchanges each."""
    outcomes = []
    # A pupil the bron does not hold (new_pgn) gets DossierNietGevonden.
    pupils = (SMALL_PUPIL, None, pupil_with("gereed"), pupil_with("verouderd"))
    for n in range(TRANSFERS_PER_CLIENT):
        record = await doel.transfer(BRON.brin, pupils[n % 4] or new_pgn())
        outcomes.append(str(record.resultaat))
    return outcomes


def audit_verify(sandbox: Sandbox) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "traffic_center",
            "--home",
            str(sandbox.root / "tc"),
            "audit",
            "verify",
        ],
        capture_output=True,
        text=True,
        env=clean_env(),
        timeout=120,
        check=False,
    )


async def test_1000_exchanges_from_4_clients_on_2_workers_make_one_intact_chain(
    workers: Sandbox,
) -> None:
    before = audit_verify(workers)
    assert before.returncode == 0, before.stdout + before.stderr
    records_before = int(before.stdout.split()[1])

    clients = [workers.doel_client() for _ in range(4)]
    try:
        results = await asyncio.gather(*(mixed_workload(c, i) for i, c in enumerate(clients)))
    finally:
        for client in clients:
            await client.aclose()
    outcomes = [o for per_client in results for o in per_client]
    assert outcomes.count("OverdrachtGeslaagd") == 2 * TRANSFERS_PER_CLIENT
    assert outcomes.count("DossierNietGevonden") == TRANSFERS_PER_CLIENT  # a quarter of 4 × 88
    assert outcomes.count("DossierVerouderd") == TRANSFERS_PER_CLIENT

    after = audit_verify(workers)
    assert after.returncode == 0, after.stdout + after.stderr
    exchanges = 4 * TRANSFERS_PER_CLIENT * 3
    # Each relayed documentRequest has two records: started (before forwarding) and final.
    relays = 4 * TRANSFERS_PER_CLIENT
    assert after.stdout.strip() == f"OK {records_before + exchanges + relays} records"

    # The supervisor's /metrics adds up both workers.
    async with httpx.AsyncClient(base_url=workers.ops_url) as ops:
        metrics = (await ops.get("/metrics")).text
    relayed = re.findall(
        r'^traffic_center_exchanges_total\{result="([A-Za-z]+)",type="documentRequest"\} ([0-9.e+]+)$',
        metrics,
        flags=re.MULTILINE,
    )
    assert sum(float(v) for _, v in relayed) == 4 * TRANSFERS_PER_CLIENT
    assert "traffic_center_relay_bytes_total" in metrics
    assert "traffic_center_ready 1.0" in metrics


async def test_metrics_pass_the_prometheus_exposition_lint(workers: Sandbox) -> None:
    promtool = shutil.which("promtool")
    assert promtool, "promtool (Debian package prometheus) is needed; scripts/test installs it"
    async with httpx.AsyncClient(base_url=workers.ops_url) as ops:
        metrics = (await ops.get("/metrics")).text
    assert "traffic_center_relay_duration_seconds_bucket" in metrics
    lint = await asyncio.to_thread(
        subprocess.run,
        [promtool, "check", "metrics"],
        input=metrics,
        capture_output=True,
        text=True,
        check=False,
    )
    assert lint.returncode == 0, lint.stdout + lint.stderr


# --- drain ---------------------------------------------------------------------------------


async def test_sigterm_during_a_50_mb_relay_lets_it_finish_refuses_new_work_and_exits(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    sandbox = Sandbox(
        tmp_path_factory.mktemp("drain"),
        tc_env={"TC_DRAIN_SECONDS": "20"},
        pupils={DRAIN_PUPIL: f"grootte-{50 * MB}"},
    )
    await sandbox.start()
    try:
        assert sandbox.tc is not None
        size = 50 * MB
        async with sandbox.doel_client() as doel:
            session = await doel.open_session(BRON.brin, DRAIN_PUPIL)
            key = doel.zoeksleutel(DRAIN_PUPIL)
        tls = sandbox.doel_tls()
        body = {
            "routeringskenmerk": session.bron_endpoints[0].routeringskenmerk,
            "zoeksleutel": key,
        }
        digest, received, signalled_at = hashlib.sha256(), 0, 0.0
        async with (
            httpx.AsyncClient(
                base_url=sandbox.tc_url, verify=tls.ssl_context(), timeout=60
            ) as client,
            client.stream(
                "POST", f"/v1/sessions/{session.sessie_id}/dossier", json=body
            ) as response,
        ):
            assert response.status_code == 200
            async for chunk in response.aiter_raw():
                digest.update(chunk)
                before, received = received, received + len(chunk)
                if before == 0:
                    sandbox.tc.process.send_signal(signal.SIGTERM)
                    signalled_at = time.monotonic()
                    await asyncio.sleep(0.3)
                    await assert_draining(sandbox)
                if before // (256 * 1024) != received // (256 * 1024):
                    await asyncio.sleep(0.01)  # a slow doel: the relay outlives the signal
        assert received == size
        assert digest.hexdigest() == generated_digest(size)
        exit_code = await asyncio.to_thread(sandbox.tc.process.wait, 25)
        assert exit_code == 0
        assert time.monotonic() - signalled_at < 20 + 5
    finally:
        await sandbox.stop()


async def assert_draining(sandbox: Sandbox) -> None:
    """While a relay is still streaming: not ready, and no new connections accepted."""
    async with httpx.AsyncClient(base_url=sandbox.ops_url) as ops:
        ready = await ops.get("/readyz")
    assert ready.status_code == 503
    assert ready.json()["checks"]["not_draining"] is False
    tls = sandbox.doel_tls()
    async with httpx.AsyncClient(base_url=sandbox.tc_url, verify=tls.ssl_context()) as fresh:
        with pytest.raises(httpx.ConnectError):
            await fresh.get("/v1/whoami")
