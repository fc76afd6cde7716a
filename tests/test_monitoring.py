"""What a node tells its operators: probes and scrapes that never wait on the store, and the
metrics an operator expects (build, process, handshakes refused, relays while they stream)."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import re
import signal
import sqlite3
import ssl
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from prometheus_client import CollectorRegistry

from tests.support.las import LasWorld, scenario_key
from tests.support.messages import open_session
from tests.support.server import TrafficCenterUnderTest, start_traffic_center
from tests.support.world import (
    client_context,
    unique_brin,
    unique_routeringskenmerk,
    unregistered_certificate,
)
from traffic_center.demo.sandbox import Sandbox
from traffic_center.exchanges.dossiers import BYTES_PER_METRIC_UPDATE
from traffic_center.observability.metrics import Metrics, upstream_error_codes
from traffic_center.pki.ca import CertificateAuthority, write_issued

MB = 1024 * 1024
POLLS = 6


def sample(tc: TrafficCenterUnderTest, name: str, **labels: str) -> float:
    return tc.metrics_registry.get_sample_value(name, labels) or 0.0


async def eventually(check: object, *, seconds: float = 5.0) -> None:
    """Poll a zero-argument callable until it returns True (bounded)."""
    assert callable(check)
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, "not within the bound"
        await asyncio.sleep(0.05)


# --- a locked SQLite store -------------------------------------------------------------------


@pytest.fixture
async def sqlite_tc(tmp_path: Path) -> AsyncIterator[TrafficCenterUnderTest]:
    running = await start_traffic_center(tmp_path, f"sqlite+aiosqlite:///{tmp_path / 'tc.db'}")
    yield running
    await running.stop()


@contextmanager
def exclusive_lock(database: Path) -> Iterator[None]:
    """Another connection holding SQLite's write lock, as a stuck admin shell or backup would."""
    holder = sqlite3.connect(database, isolation_level=None, timeout=10)
    try:
        holder.execute("BEGIN EXCLUSIVE")
        yield
        holder.execute("ROLLBACK")
    finally:
        holder.close()


async def timed_get(client: httpx.AsyncClient, path: str) -> tuple[int, float, str]:
    started = time.monotonic()
    response = await client.get(path)
    return response.status_code, time.monotonic() - started, response.text


async def test_a_locked_store_never_delays_a_probe_or_a_scrape(
    sqlite_tc: TrafficCenterUnderTest,
) -> None:
    """/metrics and /healthz answer 200 within 1 s, /readyz 503 within 2 s, every time; the
    node is ready again once the lock is gone."""
    async with httpx.AsyncClient(base_url=sqlite_tc.ops_url, timeout=10) as ops:
        assert (await ops.get("/readyz")).status_code == 200
        with exclusive_lock(sqlite_tc.settings.home / "tc.db"):
            locked_at = time.monotonic()
            # Stale after 1 s (three heartbeats of 0.25 s, at least 1 s): 503 by 2 s.
            await asyncio.sleep(2.0)
            for _ in range(POLLS):
                for path in ("/metrics", "/healthz"):
                    status, took, _ = await timed_get(ops, path)
                    assert (status, took < 1.0) == (200, True), (path, status, took)
                status, took, body = await timed_get(ops, "/readyz")
                assert (status, took < 2.0) == (503, True), (status, took, body)
                assert '"store":false' in body
                _, _, metrics = await timed_get(ops, "/metrics")
                assert "traffic_center_ready 0.0" in metrics
                silence = re.search(
                    r"^traffic_center_store_seconds_since_success (\S+)$", metrics, re.M
                )
                assert silence
                assert float(silence[1]) >= 1.0
                await asyncio.sleep(0.3)
            assert time.monotonic() - locked_at < 30  # all within SQLite's busy timeout
        deadline = time.monotonic() + 10
        while (await ops.get("/readyz")).status_code != 200:
            assert time.monotonic() < deadline, "not ready again after the lock was released"
            await asyncio.sleep(0.1)


# --- what /metrics says ----------------------------------------------------------------------


async def test_metrics_name_the_build_the_process_and_the_backlog(
    tc: TrafficCenterUnderTest,
) -> None:
    party = await tc.world.school("PO")
    assert (await party.client().get("/v1/whoami")).status_code == 200
    async with httpx.AsyncClient(base_url=tc.ops_url) as ops:
        body = (await ops.get("/metrics")).text
    assert re.search(
        r'^traffic_center_build_info\{python="[\d.]+",version="[^"]+"\} 1\.0$', body, re.M
    )
    for name in (
        "process_resident_memory_bytes",
        "process_cpu_seconds_total",
        "traffic_center_sessions_open",
        "traffic_center_audit_open_exchanges",
        "traffic_center_audit_outbox_pending",
        "traffic_center_certificate_soonest_expiry_seconds",
        "traffic_center_crl_next_update_seconds",
    ):
        assert re.search(rf"^{name}(\{{.*\}})? ", body, re.M), name
    for reason in ("no_certificate", "unknown_ca", "revoked", "expired", "other"):
        assert f'traffic_center_tls_handshakes_refused_total{{reason="{reason}"}}' in body
    for reason in ("CertificaatIngetrokken", "VerkeerdeRol", "EigenAanleverpuntOnbekend"):
        # Every refusal's series from the start, whether or not one happened yet.
        assert f'traffic_center_refused_callers_total{{reason="{reason}"}}' in body, reason
    for code in ("AanleverpuntOnbereikbaar", "OverdrachtMislukt", "DoelLeestNiet"):
        # A failed relay's series at 0 before any failed: increase() sees the first one.
        assert (
            f'traffic_center_upstream_errors_total{{code="{code}",type="documentRequest"}} 0.0'
            in body
        ), code
    for found in ("before_use", "under_request", "out_of_turn"):  # at 0: a rate() has a start
        assert f'traffic_center_upstream_stale_connections_total{{found="{found}"}} 0.0' in body
    assert "_created" not in body
    # HTTP buckets reach past any relay's read timeout, up to minutes.
    assert re.search(
        r'^traffic_center_http_request_duration_seconds_bucket\{[^}]*le="600.0"[^}]*\} 1\.0$',
        body,
        re.M,
    )


async def test_open_sessions_are_counted_in_the_background(tc: TrafficCenterUnderTest) -> None:
    las = LasWorld(tc)
    try:
        bron, doel = await las.school("PO"), await las.school("VO")
        before = sample(tc, "traffic_center_sessions_open")
        async with httpx.AsyncClient(base_url=tc.ops_url) as ops:

            async def gauge() -> float:
                match = re.search(
                    r"^traffic_center_sessions_open (\S+)$", (await ops.get("/metrics")).text, re.M
                )
                assert match
                return float(match[1])

            baseline = await gauge()
            opened = await open_session(doel.party, bron.party, zoeksleutel=scenario_key("gereed"))
            assert opened.status_code == 201
            deadline = time.monotonic() + 5
            while await gauge() < baseline + 1:
                assert time.monotonic() < deadline, "the open-sessions gauge did not follow"
                await asyncio.sleep(0.1)
        assert before == 0.0  # not in the vendor registry: the ops listener's own gauge
    finally:
        await las.stop()


# --- refused TLS handshakes ------------------------------------------------------------------


async def refused(tc: TrafficCenterUnderTest, context: ssl.SSLContext) -> None:
    async with httpx.AsyncClient(base_url=tc.url, verify=context, timeout=10) as client:
        with pytest.raises(httpx.TransportError):
            await client.get("/v1/whoami")


async def test_refused_handshakes_are_counted_by_reason(
    tc: TrafficCenterUnderTest, tmp_path: Path
) -> None:
    name = "traffic_center_tls_handshakes_refused_total"
    stranger = CertificateAuthority.create(tmp_path / "other-ca", name="Not the TC")
    write_issued(
        stranger.issue_client_certificate(
            routeringskenmerk=unique_routeringskenmerk(), brin=unique_brin(), name="Impostor"
        ),
        tmp_path / "impostor",
    )
    now = dt.datetime.now(dt.UTC)
    await unregistered_certificate(
        tc.certificates,
        name="Expired",
        out=tmp_path / "expired",
        not_before=now - dt.timedelta(days=30),
        not_after=now - dt.timedelta(days=1),
    )
    attempts = {
        "no_certificate": client_context(tc.ca_pem, None, None),
        "unknown_ca": client_context(
            tc.ca_pem, tmp_path / "impostor.pem", tmp_path / "impostor.key"
        ),
        "expired": client_context(tc.ca_pem, tmp_path / "expired.pem", tmp_path / "expired.key"),
    }
    for reason, context in attempts.items():
        before = {r: sample(tc, name, reason=r) for r in attempts}
        await refused(tc, context)
        await eventually(lambda r=reason, b=before: sample(tc, name, reason=r) == b[r] + 1)
        others = {r: sample(tc, name, reason=r) for r in attempts if r != reason}
        assert others == {r: before[r] for r in others}, reason
    # A client that connects and hangs up was not refused: no count.
    total = sum(sample(tc, name, reason=r) for r in attempts)
    _, writer = await asyncio.open_connection("127.0.0.1", tc.server.vendor.bound_port)
    writer.close()
    await writer.wait_closed()
    await asyncio.sleep(0.3)
    assert sum(sample(tc, name, reason=r) for r in attempts) == total


# --- relays ----------------------------------------------------------------------------------


async def test_relay_bytes_are_counted_while_the_dossier_streams(
    tc: TrafficCenterUnderTest,
) -> None:
    las = LasWorld(tc)
    try:
        bron, doel = await las.school("PO"), await las.school("VO")
        size = 32 * MB
        key = scenario_key("grootte", size)
        opened = await open_session(doel.party, bron.party, zoeksleutel=key)
        sessie_id = opened.json()["sessie_id"]
        before = sample(tc, "traffic_center_relay_bytes_total")
        body = {"routeringskenmerk": bron.routeringskenmerk, "zoeksleutel": key}
        client = doel.party.new_client()
        async with client.stream("POST", f"/v1/sessions/{sessie_id}/dossier", json=body) as answer:
            assert answer.status_code == 200
            received = 0
            chunks = answer.aiter_raw()
            async for chunk in chunks:
                received += len(chunk)
                if received >= 4 * MB:
                    break
            midway = sample(tc, "traffic_center_relay_bytes_total") - before
            # The relay adds to the counter a megabyte at a time, so it may trail what the
            # doel has by less than that; it must not wait for the end of the dossier.
            assert received - BYTES_PER_METRIC_UPDATE < midway < size, (received, midway)
            async for chunk in chunks:
                received += len(chunk)
        assert received == size
        await eventually(lambda: sample(tc, "traffic_center_relay_bytes_total") - before == size)
    finally:
        await las.stop()


async def test_a_refused_relay_has_a_duration_too(tc: TrafficCenterUnderTest) -> None:
    """Relay durations cover every outcome, not only a streamed dossier."""
    las = LasWorld(tc)
    try:
        doel = await las.school("VO")
        bron = await las.school("PO")
        count = "traffic_center_relay_duration_seconds_count"
        kinds = ("documentRequest", "meldenNotificatieRequest")
        before = {kind: sample(tc, count, type=kind) for kind in kinds}
        missing = str(uuid.uuid4())
        dossier = await doel.party.client().post(
            f"/v1/sessions/{missing}/dossier",
            json={
                "routeringskenmerk": bron.routeringskenmerk,
                "zoeksleutel": scenario_key("gereed"),
            },
        )
        notification = await bron.party.client().post(
            "/v1/notifications",
            json={"sessie_id": missing, "doel_routeringskenmerk": doel.routeringskenmerk},
        )
        assert (dossier.status_code, notification.status_code) == (404, 404)
        assert {
            kind: sample(tc, count, type=kind) - before[kind] for kind in kinds
        } == dict.fromkeys(kinds, 1.0)
    finally:
        await las.stop()


# --- with --workers --------------------------------------------------------------------------


@pytest.fixture
async def workers(tmp_path: Path) -> AsyncIterator[Sandbox]:
    world = Sandbox(tmp_path, tc_env={"TC_WORKERS": "2"})
    await world.start()
    yield world
    codes = await world.stop()
    assert set(codes.values()) == {0}, codes


def children(pid: int) -> set[int]:
    found: set[int] = set()
    for task in Path(f"/proc/{pid}/task").iterdir():
        found.update(int(child) for child in (task / "children").read_text().split())
    return found


def metrics_directory(pids: set[int]) -> Path:
    """The supervisor's multiprocess directory, from a worker's environment."""
    for pid in pids:
        for entry in Path(f"/proc/{pid}/environ").read_bytes().split(b"\0"):
            if entry.startswith(b"PROMETHEUS_MULTIPROC_DIR="):
                return Path(entry.split(b"=", 1)[1].decode())
    raise AssertionError("no worker with PROMETHEUS_MULTIPROC_DIR")


def live_gauge_pids(directory: Path) -> set[int]:
    return {int(p.stem.rsplit("_", 1)[1]) for p in directory.glob("gauge_livesum_*.db")}


async def test_workers_export_every_process_and_forget_a_dead_worker(workers: Sandbox) -> None:
    directory = metrics_directory(children(workers.tc.pid))
    deadline = time.monotonic() + 30
    while len(live := live_gauge_pids(directory)) != 2:  # the workers may still be starting
        assert time.monotonic() < deadline, live
        await asyncio.sleep(0.2)
    async with httpx.AsyncClient(base_url=workers.ops_url) as ops:
        body = (await ops.get("/metrics")).text
        assert "traffic_center_build_info{" in body
        for worker in ("supervisor", "0", "1"):
            assert re.search(
                rf'^process_resident_memory_bytes\{{worker="{worker}"\}} [1-9]', body, re.M
            ), worker
        assert "_created" not in body

        victim = min(live)
        os.kill(victim, signal.SIGKILL)
        deadline = time.monotonic() + 20
        while victim in (live := live_gauge_pids(directory)) or len(live) != 2:
            assert time.monotonic() < deadline, f"dead worker {victim} not forgotten: {live}"
            await asyncio.sleep(0.2)
        assert (await ops.get("/metrics")).status_code == 200
    # Replaced, and said so at a level operators page on.
    died = [
        json.loads(line)
        for line in workers.tc.log_path.read_text().splitlines()
        if f"Child process [{victim}] died" in line
    ]
    assert [entry["level"] for entry in died] == ["error"], died


def test_operations_guide_names_every_metric_and_every_failed_relay_code() -> None:
    """docs/operations.md is the operator's list: a metric (or a code a failed relay is
    counted under) that is not in it is one a dashboard or an alert cannot be written for."""
    guide = (Path(__file__).parents[1] / "docs" / "operations.md").read_text()
    registry = CollectorRegistry()
    Metrics(registry)
    for family in registry.collect():
        name = family.name + ("_total" if family.type == "counter" else "")
        assert f"`{name}`" in guide, name
    row = next(
        line for line in guide.splitlines() if "`traffic_center_upstream_errors_total`" in line
    )
    for code in upstream_error_codes():
        assert f"`{code}`" in row, code
