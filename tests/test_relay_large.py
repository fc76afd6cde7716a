"""Large dossiers through real processes: the bytes arrive intact, the TC's memory stays flat.

A Traffic Center process and two reference LAS processes (the demo's sandbox), with this test
as the doel; the TC's resident memory is sampled every 10 ms while it relays.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from traffic_center.demo.memory import RssSampler
from traffic_center.demo.sandbox import BRON, Sandbox
from traffic_center.las.dossier import generated_digest

MB = 1024 * 1024
GB = 1024 * MB
# The bron LAS process holds these pupils: PGN → a generated dossier of that many bytes.
PUPIL_OF_SIZE = {50 * MB: "999990056", GB: "999990068"}


@pytest.fixture(scope="module")
async def sandbox(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Sandbox]:
    root = tmp_path_factory.mktemp("sandbox")
    (root / "tc-tmp").mkdir()
    world = Sandbox(
        root,
        # The TC's own temporary directory, so the test can see whether it spooled anything.
        tc_env={"TC_RELAY_MAX_DOSSIER_BYTES": str(2 * GB), "TMPDIR": str(root / "tc-tmp")},
        pupils={pgn: f"grootte-{size}" for size, pgn in PUPIL_OF_SIZE.items()},
    )
    await world.start()
    yield world
    codes = await world.stop()
    assert set(codes.values()) == {0}, codes


async def relay(sandbox: Sandbox, size: int) -> tuple[int, str | None, bool, int, int]:
    """Fetch a generated dossier of ``size`` bytes through the TC; also the TC's RSS."""
    assert sandbox.tc is not None
    pgn = PUPIL_OF_SIZE[size]
    async with sandbox.doel_client() as doel:
        session = await doel.open_session(BRON.brin, pgn)
        routeringskenmerk = session.bron_endpoints[0].routeringskenmerk
        sampler = RssSampler(sandbox.tc.pid)
        idle = sampler.rss()
        with sampler:
            fetched = await doel.fetch_dossier(session.sessie_id, routeringskenmerk, pgn)
    return fetched.bytes, fetched.sha256, fetched.complete, idle, sampler.peak


async def test_a_50_mb_dossier_arrives_intact(sandbox: Sandbox) -> None:
    size, sha256, complete, _, _ = await relay(sandbox, 50 * MB)
    assert complete
    assert size == 50 * MB
    assert sha256 == generated_digest(50 * MB)


async def test_a_1_gb_dossier_arrives_intact_and_the_tc_s_memory_stays_flat(
    sandbox: Sandbox,
) -> None:
    size, sha256, complete, idle, peak = await relay(sandbox, GB)
    assert complete
    assert size == GB
    assert sha256 == generated_digest(GB)
    print(f"TC RSS idle {idle / MB:.1f} MB, peak {peak / MB:.1f} MB while relaying 1 GB")
    assert peak - idle < 50 * MB


async def test_the_tc_wrote_no_temporary_files_and_its_home_holds_no_dossier(
    sandbox: Sandbox,
) -> None:
    assert list((sandbox.root / "tc-tmp").iterdir()) == []
    home = sandbox.root / "tc"
    big = [p for p in home.rglob("*") if p.is_file() and p.stat().st_size > 10 * MB]
    assert big == []
