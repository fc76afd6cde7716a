"""`qualify doel` against real doels over real TLS: the reference DoelClient passes; a doel
that closes a truncated transfer as OverdrachtGeslaagd is reported by name."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from traffic_center.domain.results import ResultCode
from traffic_center.las.doel import TrafficCenterRefused
from traffic_center.las.pupils import pupil_with
from traffic_center.qualify.doel import qualify_doel
from traffic_center.qualify.report import Report
from traffic_center.qualify.sandbox import (
    AFBREKEN_PGN,
    QUALIFY_BRON,
    QualifySandbox,
)

BRIN = QUALIFY_BRON.brin


@pytest.fixture
async def sandbox(tmp_path: Path) -> AsyncIterator[QualifySandbox]:
    world = QualifySandbox(tmp_path / "sandbox", notify_after_seconds=0.5)
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


async def test_the_reference_doel_passes(sandbox: QualifySandbox, tmp_path: Path) -> None:
    report = Report("qualify doel", out=io.StringIO())
    await qualify_doel(sandbox, report, wait_seconds=30, drive=reference_doel)
    assert report.ok, [c for c in report.checks if not c.passed]
    assert {c.scenario for c in report.checks} == {
        "gereed",
        "nietgereed",
        "afbreken",
        "every session",
    }


async def test_a_truncated_transfer_closed_as_a_success_is_reported(
    sandbox: QualifySandbox, tmp_path: Path
) -> None:
    report = Report("qualify doel", out=io.StringIO())
    await qualify_doel(sandbox, report, wait_seconds=30, drive=overconfident_doel)
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
    document = json.loads(report_json.read_text())
    assert document["ok"] is False
    assert "fetched the ready dossier" in {c["name"] for c in document["checks"]}
    assert "<testsuites" in junit.read_text()
