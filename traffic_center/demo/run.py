"""The demo: from nothing to two transfers and the SWV flow over mTLS, told as a timeline, and
back to nothing."""

from __future__ import annotations

import asyncio
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

from traffic_center.demo.sandbox import BRON, DOEL, SWV, Sandbox
from traffic_center.domain.audit import AuditType, Phase
from traffic_center.domain.results import ResultCode
from traffic_center.las.doel import TransferRecord, TransferStep
from traffic_center.las.pupils import pupil_with

NOTIFICATION_SECONDS = 30.0


@dataclass
class Timeline:
    """Readable lines: time since start, who, what, result, bytes, SHA-256, milliseconds."""

    out: TextIO
    started: float = field(default_factory=time.perf_counter)

    def note(self, text: str) -> None:
        print(f"{self._clock()}  {text}", file=self.out, flush=True)

    def step(self, step: TransferStep) -> None:
        size = f"{step.bytes:>9,} B" if step.bytes else " " * 11
        digest = f"sha256 {step.sha256[:16]}…" if step.sha256 and step.bytes else ""
        self.note(
            f"  {step.actor:<17} {step.action:<18} {step.resultaat:<22} {size} "
            f"{step.elapsed_ms:>8.1f} ms  {digest}".rstrip()
        )

    def transfer(self, record: TransferRecord) -> None:
        for step in record.steps:
            self.step(step)

    def _clock(self) -> str:
        return f"[{time.perf_counter() - self.started:6.2f} s]"


async def run_demo(*, keep: bool = False, out: TextIO = sys.stdout) -> int:
    root = Path(tempfile.mkdtemp(prefix="traffic-center-demo-"))
    timeline = Timeline(out)
    sandbox = Sandbox(root, notify_after_seconds=1.0, swv_pupil=pupil_with("gereed"))
    ok = False
    try:
        timeline.note(f"building a CA, certificates and a store in {root}")
        await sandbox.start()
        timeline.note(
            f"Traffic Center on {sandbox.tc_url} (mTLS); bron LAS {BRON.name} ({BRON.brin}, "
            f"{BRON.sector}) on {sandbox.las[BRON.key].url}; doel LAS {DOEL.name} "
            f"({DOEL.brin}, {DOEL.sector}) on {sandbox.las[DOEL.key].url}; SWV LAS {SWV.name} "
            f"({SWV.brin}, endpoint kind {SWV.kind}) on {sandbox.las[SWV.key].url}"
        )
        ok = await _transfers(sandbox, timeline) and await _swv_flow(sandbox, timeline)
    finally:
        codes = await sandbox.stop()
        stopped = ", ".join(f"{name} exited {code}" for name, code in codes.items())
        timeline.note(f"stopped: {stopped}")
        if keep:
            timeline.note(f"kept {root} (certificates, store, logs)")
        else:
            shutil.rmtree(root, ignore_errors=True)
    timeline.note(
        "demo complete: both transfers and the SWV dossier delivered" if ok else "demo FAILED"
    )
    return 0 if ok else 1


async def _transfers(sandbox: Sandbox, timeline: Timeline) -> bool:
    async with sandbox.doel_client() as doel:
        timeline.note(f"1. transfer {BRON.brin} → {DOEL.brin}: the dossier is ready")
        # Test school 00YY's pupils; the doel derives each one's zoeksleutel from the PGN.
        first = await doel.transfer(BRON.brin, pupil_with("gereed"))
        timeline.transfer(first)

        timeline.note("2. a late transfer: not ready yet, then a notification, then delivered")
        late_pupil = pupil_with("nietgereed")
        late = await doel.transfer(BRON.brin, late_pupil)
        timeline.transfer(late)
        notification = await asyncio.to_thread(
            sandbox.las[DOEL.key].process.wait_for_event,
            lambda event: (
                event.get("sessie_id") == late.sessie_id
                and "notification" in str(event.get("event", ""))
            ),
            timeout=NOTIFICATION_SECONDS,
        )
        timeline.note(
            f"  bron → TC → doel  notification        {ResultCode.NOTIFICATIE_ONTVANGEN:<22} "
            f"(session {str(notification['sessie_id'])[:8]}…)"
        )
        second = await doel.transfer(BRON.brin, late_pupil)
        timeline.transfer(second)
    recorded = [await _compare_with_record(sandbox, t, timeline) for t in (first, second)]
    return (
        first.resultaat is ResultCode.OVERDRACHT_GESLAAGD
        and late.resultaat is ResultCode.DOSSIER_NOG_NIET_GEREED
        and second.resultaat is ResultCode.OVERDRACHT_GESLAAGD
        and all(recorded)
    )


async def _swv_flow(sandbox: Sandbox, timeline: Timeline) -> bool:
    """The SWV flow: the school told its SWV at start-up (a koppelsleutel), the SWV fetches
    the dossier with it and sends its feedback, once."""
    timeline.note(f"3. the SWV flow: {BRON.brin} asks its samenwerkingsverband {SWV.brin} for help")
    notification = await asyncio.to_thread(
        sandbox.las[SWV.key].process.wait_for_event,
        lambda event: event.get("event") == "notification" and bool(event.get("koppelsleutel")),
        timeout=NOTIFICATION_SECONDS,
    )
    koppelsleutel = str(notification["koppelsleutel"])
    timeline.note(
        f"  school → TC → SWV notification        {ResultCode.NOTIFICATIE_ONTVANGEN:<22} "
        f"(koppelsleutel {koppelsleutel[:8]}…)"
    )
    async with sandbox.doel_client(SWV) as swv:
        transfer = await swv.transfer_swv(BRON.brin, koppelsleutel)
        timeline.transfer(transfer)
        started = time.perf_counter()
        answer = await swv.give_feedback(koppelsleutel, "Toelaatbaarheidsverklaring afgegeven")
        elapsed = round((time.perf_counter() - started) * 1000, 1)
    timeline.step(
        TransferStep("SWV → TC → school", "terugkoppeling", str(answer["resultaat"]), 200, elapsed)
    )
    received = await asyncio.to_thread(
        sandbox.las[BRON.key].process.wait_for_event,
        lambda event: (
            event.get("event") == "terugkoppeling" and event.get("koppelsleutel") == koppelsleutel
        ),
        timeout=NOTIFICATION_SECONDS,
    )
    return (
        transfer.resultaat is ResultCode.OVERDRACHT_GESLAAGD
        and received["swv_routeringskenmerk"] == SWV.routeringskenmerk
        and await _compare_with_record(sandbox, transfer, timeline)
    )


async def _compare_with_record(
    sandbox: Sandbox, transfer: TransferRecord, timeline: Timeline
) -> bool:
    """The TC's own record of the relay: the same size and SHA-256 the doel received."""
    fetched = transfer.fetch
    records = [
        r
        for r in await sandbox.exchange_records(transfer.sessie_id)
        if r.type is AuditType.DOSSIER and r.phase is Phase.FINAL
    ]
    if fetched is None or not records:
        timeline.note(f"  no record of session {transfer.sessie_id} at the TC")
        return False
    record = records[-1]
    same = (record.size_bytes, record.sha256) == (fetched.bytes, fetched.sha256)
    timeline.note(
        f"  TC record {record.transaction_id[:8]}…: {record.result}, {record.size_bytes:,} B, "
        f"sha256 {(record.sha256 or '')[:16]}… "
        + ("= what the doel received" if same else "DIFFERS from what the doel received")
    )
    return same
