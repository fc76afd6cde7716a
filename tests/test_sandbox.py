"""`traffic-center sandbox` as a vendor runs it: it prints where everything is, a doel with
the printed certificate fetches a 00YY dossier through it (00YY's reference LAS checks the
session at the TC first), and SIGTERM stops it all."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from traffic_center.admin.store import open_store
from traffic_center.domain.audit import AuditRecord, AuditType, Phase
from traffic_center.domain.results import ResultCode
from traffic_center.las.doel import ClientTLS, DoelClient, TransferRecord
from traffic_center.las.pupils import pupil_with
from traffic_center.settings import Settings

STOP_WITHIN_SECONDS = 20.0


def _children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        text = (task / "children").read_text().split()
        found += [int(child) for child in text]
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


async def _fetch_gereed(ready: dict[str, Any]) -> TransferRecord:
    doel = ready["doel"]
    tls = ClientTLS(Path(doel["cert"]), Path(doel["key"]), Path(ready["ca"]))
    async with DoelClient(ready["tc_url"], tls=tls) as client:
        return await client.transfer("00YY", ready["pupils"]["gereed"])


async def _records(tc_home: Path, sessie_id: str) -> list[AuditRecord]:
    """What the sandbox's TC recorded about a session, read from its store."""
    async with open_store(Settings(home=tc_home)) as store:
        return list(await store.audit.for_session(sessie_id))


def test_the_sandbox_serves_a_vendor_doel_and_stops_on_sigterm(tmp_path: Path) -> None:
    home = tmp_path / "sandbox"
    process = subprocess.Popen(
        [sys.executable, "-m", "traffic_center", "sandbox", "--home", str(home)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={k: v for k, v in os.environ.items() if not k.startswith("TC_")},
    )
    try:
        assert process.stdout is not None
        ready = json.loads(process.stdout.readline())
        assert ready["event"] == "sandbox_ready"
        assert ready["tc_url"].startswith("https://127.0.0.1:")
        assert ready["ops_url"].startswith("http://127.0.0.1:")
        assert ready["bron"]["brin"] == "00YY"
        assert ready["pupils"]["gereed"] == pupil_with("gereed")
        doel = ready["doel"]
        for path in (ready["ca"], doel["cert"], doel["key"]):
            assert Path(path).is_file()
            assert Path(path).is_relative_to(home)
        children = _children(process.pid)
        assert len(children) == 3  # the TC and two reference LAS processes

        record = asyncio.run(_fetch_gereed(ready))
        assert record.resultaat == "OverdrachtGeslaagd"
        assert record.fetch is not None
        assert record.fetch.bytes > 0
        # 00YY's reference LAS runs with --check-session: the TC answered its
        # sessiecontroleRequest in this session before the relay's final record.
        seen = [
            (r.type, r.phase, r.result)
            for r in asyncio.run(_records(home / "tc", record.sessie_id))
        ]
        check = (AuditType.CHECK, Phase.FINAL, ResultCode.SESSIE_VALIDE.value)
        relayed = (AuditType.DOSSIER, Phase.FINAL, ResultCode.OVERDRACHT_GESLAAGD.value)
        assert check in seen, seen
        assert relayed in seen, seen
        assert seen.index(check) < seen.index(relayed), seen

        started = time.monotonic()
        process.send_signal(signal.SIGTERM)
        assert process.wait(STOP_WITHIN_SECONDS) == 0
        assert time.monotonic() - started < STOP_WITHIN_SECONDS
        assert json.loads(process.stdout.readline())["event"] == "sandbox_stopped"
        assert [pid for pid in children if _alive(pid)] == []
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
