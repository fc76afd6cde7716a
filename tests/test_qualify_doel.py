"""`qualify doel` against real doels over real TLS: the reference DoelClient passes; a doel
that closes a truncated transfer as OverdrachtGeslaagd, one that retries a 429 at once and one
that changes its Idempotency-Key on the retry are each reported by name."""

from __future__ import annotations

import asyncio
import io
import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from traffic_center.domain.audit import AuditType
from traffic_center.domain.results import ResultCode
from traffic_center.las.doel import (
    DoelClient,
    GrantedSession,
    TrafficCenterRefused,
    new_idempotency_key,
)
from traffic_center.las.pupils import pupil_with
from traffic_center.qualify.doel import RETRY, SAME_KEY, WAITED, qualify_doel
from traffic_center.qualify.report import Report
from traffic_center.qualify.sandbox import (
    AFBREKEN_PGN,
    QUALIFY_BRON,
    QualifySandbox,
)

BRIN = QUALIFY_BRON.brin


@pytest.fixture
async def sandbox(tmp_path: Path) -> AsyncIterator[QualifySandbox]:
    world = QualifySandbox(tmp_path / "sandbox", notify_after_seconds=0.5, limit_sessions=True)
    await world.start()
    try:
        yield world
    finally:
        await world.stop()


async def reference_doel(sandbox: QualifySandbox) -> None:
    async with sandbox.vendor_client() as doel:
        await doel.transfer(BRIN, pupil_with("gereed"))
        await doel.transfer(BRIN, AFBREKEN_PGN)
        late = await doel.transfer(BRIN, pupil_with("nietgereed"))
        assert late.resultaat is ResultCode.DOSSIER_NOG_NIET_GEREED
        await sandbox.wait_for_notification(late.sessie_id)
        await doel.transfer(BRIN, pupil_with("nietgereed"))


async def overconfident_doel(sandbox: QualifySandbox) -> None:
    """The reference doel, except that a dossier that broke off is closed as a success."""
    async with sandbox.vendor_client() as doel:
        await doel.transfer(BRIN, pupil_with("gereed"))
        late = await doel.transfer(BRIN, pupil_with("nietgereed"))
        await sandbox.wait_for_notification(late.sessie_id)
        await doel.transfer(BRIN, pupil_with("nietgereed"))
        session = await doel.open_session(BRIN, AFBREKEN_PGN)
        bron = session.bron_endpoints[0].routeringskenmerk
        fetched = await doel.fetch_dossier(session.sessie_id, bron, AFBREKEN_PGN)
        assert not fetched.complete
        with pytest.raises(TrafficCenterRefused) as refused:
            await doel.close(session.sessie_id, ResultCode.OVERDRACHT_GESLAAGD, bron)
        assert refused.value.code == "ResultaatNietVastgesteld"
        await doel.close(session.sessie_id, ResultCode.OVERDRACHT_MISLUKT, bron)


# One open at a time, as the doels below do; each opens the next session at once.
Opener = Callable[[DoelClient, str], Awaitable[GrantedSession]]


async def impatient_open(doel: DoelClient, pgn: str) -> GrantedSession:
    """Retries a 429 at once (same key), and only after that waits as told."""
    key, at_once = new_idempotency_key(), True
    while True:
        try:
            return await doel.open_session(BRIN, pgn, idempotency_key=key)
        except TrafficCenterRefused as refused:
            if refused.status != 429 or refused.retry_after is None:
                raise
            await asyncio.sleep(0.0 if at_once else refused.retry_after)
            at_once = False


SENT_KEYS: list[str] = []  # what forgetful_open sent, to look for in the TC's output


async def forgetful_open(doel: DoelClient, pgn: str) -> GrantedSession:
    """Waits Retry-After, then retries with a new key."""
    while True:
        SENT_KEYS.append(key := new_idempotency_key())
        try:
            return await doel.open_session(BRIN, pgn, idempotency_key=key)
        except TrafficCenterRefused as refused:
            if refused.status != 429 or refused.retry_after is None:
                raise
            await asyncio.sleep(refused.retry_after)


def doel_opening_with(opener: Opener) -> Callable[[QualifySandbox], Awaitable[None]]:
    """The reference doel's work, each session opened by ``opener`` (no retries of its own)."""

    async def fetch_and_close(doel: DoelClient, pgn: str) -> str:
        session = await opener(doel, pgn)
        bron = session.bron_endpoints[0].routeringskenmerk
        fetched = await doel.fetch_dossier(session.sessie_id, bron, pgn)
        await doel.close(session.sessie_id, fetched.closing_result, bron)
        return session.sessie_id

    async def drive(sandbox: QualifySandbox) -> None:
        tls = sandbox.vendor_tls
        async with DoelClient(sandbox.tc_url, tls=tls, open_attempts=1) as doel:
            await fetch_and_close(doel, pupil_with("gereed"))
            await fetch_and_close(doel, AFBREKEN_PGN)
            late = await fetch_and_close(doel, pupil_with("nietgereed"))
            await sandbox.wait_for_notification(late)
            await fetch_and_close(doel, pupil_with("nietgereed"))

    return drive


async def test_the_reference_doel_passes(sandbox: QualifySandbox, tmp_path: Path) -> None:
    report = Report("qualify doel", out=io.StringIO())
    await qualify_doel(sandbox, report, wait_seconds=90, drive=reference_doel)
    assert report.ok, [c for c in report.checks if not c.passed]
    assert {c.scenario for c in report.checks} == {
        "gereed",
        "nietgereed",
        "afbreken",
        "every session",
        RETRY,
    }
    evidence = await sandbox.evidence()
    # It met the sandbox's 429 and came back: the retry check judged something real.
    assert any(a.result == "TeVeelVerzoeken" for a in evidence.attempts)
    # 00YY's reference LAS checked every delivered session at the TC before it served it.
    for sessie_id in {r.sessie_id for r in evidence.records if r.result == "OverdrachtGeslaagd"}:
        seen = [r.type for r in evidence.records if r.sessie_id == sessie_id]
        assert AuditType.CHECK in seen, seen


async def test_a_doel_that_retries_a_429_at_once_is_reported(sandbox: QualifySandbox) -> None:
    report = Report("qualify doel", out=io.StringIO())
    await qualify_doel(sandbox, report, wait_seconds=90, drive=doel_opening_with(impatient_open))
    assert {(c.scenario, c.name) for c in report.failed} == {(RETRY, WAITED)}
    (check,) = report.failed
    assert "429 again" in check.got, check.got
    assert "Retry-After" in check.expected
    assert check.reproduce is not None
    assert "Idempotency-Key" in check.reproduce


async def test_a_doel_that_changes_its_key_on_a_retry_is_reported(
    sandbox: QualifySandbox,
) -> None:
    report = Report("qualify doel", out=io.StringIO())
    await qualify_doel(sandbox, report, wait_seconds=90, drive=doel_opening_with(forgetful_open))
    assert {(c.scenario, c.name) for c in report.failed} == {(RETRY, SAME_KEY)}
    (check,) = report.failed
    assert "key differs" in check.got, check.got
    # The TC saw the keys as HMACs only: none of them in its output, in clear.
    assert sandbox.world.tc is not None
    output = sandbox.world.tc.log_path.read_text()
    assert "session_open_attempt" in output
    assert SENT_KEYS
    assert not [key for key in SENT_KEYS if key in output]
    assert check.reproduce is not None
    assert "/v1/sessions" in check.reproduce


async def test_a_truncated_transfer_closed_as_a_success_is_reported(
    sandbox: QualifySandbox, tmp_path: Path
) -> None:
    report = Report("qualify doel", out=io.StringIO())
    await qualify_doel(sandbox, report, wait_seconds=90, drive=overconfident_doel)
    assert not report.ok
    failed = {(c.scenario, c.name) for c in report.failed}
    assert failed == {("afbreken", "never closed a truncated transfer as OverdrachtGeslaagd")}
    (check,) = report.failed
    assert "409 ResultaatNietVastgesteld" in check.got
    assert check.reproduce is not None
    assert "/close" in check.reproduce


def test_the_command_judges_a_doel_that_never_came(tmp_path: Path) -> None:
    """No doel at all within --wait: every scenario fails, exit 1, JUnit and JSON written."""
    junit, report_json = tmp_path / "doel.xml", tmp_path / "doel.json"
    done = subprocess.run(
        [
            *(sys.executable, "-m", "traffic_center", "qualify", "doel", "--wait", "2"),
            *("--junit", str(junit), "--json", str(report_json)),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        env={k: v for k, v in os.environ.items() if not k.startswith("TC_")},
    )
    assert done.returncode == 1, done.stderr
    assert AFBREKEN_PGN in done.stderr  # what the doel must fetch was printed
    # The table on stdout, the progress on stderr (README: as `qualify bron`).
    assert "FAIL gereed: " in done.stdout
    assert "FAIL gereed: " not in done.stderr
    document = json.loads(report_json.read_text())
    assert document["ok"] is False
    assert "fetched the ready dossier" in {c["name"] for c in document["checks"]}
    assert "<testsuites" in junit.read_text()
