"""The qualification sandbox: a Traffic Center, test school 00YY's reference LAS as the bron,
and a doel endpoint made for the vendor (school 99DL), all on loopback.

A vendor points its doel at it with the certificate it prints; `qualify doel` then judges what
that doel did from the Traffic Center's own records (its sessions and its audit log).
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from traffic_center.admin.sandbox import DEV_SCHOOLS, SandboxSchool
from traffic_center.admin.store import open_signed_store
from traffic_center.broker.service import keyed_hash
from traffic_center.demo.sandbox import Sandbox
from traffic_center.domain.audit import AuditRecord
from traffic_center.domain.identifiers import derive_zoeksleutel
from traffic_center.domain.models import Session
from traffic_center.exchanges.service import OPEN_ATTEMPT_EVENT
from traffic_center.las.doel import ClientTLS, DoelClient
from traffic_center.las.pupils import TEST_SCHEME_KEY, pupil_with

# Test school 00YY (its reference LAS serves the test pupils) and the vendor's doel: a VO
# school, so a PO→VO overstapdossier is allowed (docs/rules.md).
QUALIFY_BRON = DEV_SCHOOLS[2]
VENDOR_DOEL = SandboxSchool(
    "doel-99dl", "99DL", "Kwalificatieschool 99DL", "VO", "00000007000099100001"
)
# A pupil of the sandbox only: the bron declares 200,000 bytes, sends about half and hangs up.
AFBREKEN_PGN = "999990056"
AFBREKEN_SCENARIO = "afbreken-200000"
# `qualify doel`'s 429: the real rate limiter with a 2-second window and one session open per
# window for the doel, so a second open within 2 s is answered 429 with a Retry-After of a few
# seconds (broker/rate_limits.py). 30 a minute is one per 2-second window.
SESSION_WINDOW_SECONDS = 2
SESSIONS_PER_MINUTE = 30
RETRY_TASK = (
    f"one session open per {SESSION_WINDOW_SECONDS} s: open the next session at once; on 429 "
    "wait Retry-After, then retry the same open with the same Idempotency-Key"
)
# The 00YY reference LAS checks each session at the TC before it serves a dossier, as a
# conforming bron does (`las serve --check-session`).
BRON_LAS_OPTIONS = ("--check-session",)


@dataclass(frozen=True, slots=True)
class Assignment:
    """One pupil the vendor's doel must fetch, and what its doel must then do."""

    scenario: str
    pgn: str
    task: str


ASSIGNMENTS: tuple[Assignment, ...] = (
    Assignment("gereed", pupil_with("gereed"), "fetch the dossier; close as OverdrachtGeslaagd"),
    Assignment(
        "nietgereed",
        pupil_with("nietgereed"),
        "close as DossierNogNietGereed; after the notification, ask again in a new session, "
        "fetch, close as OverdrachtGeslaagd",
    ),
    Assignment(
        "afbreken",
        AFBREKEN_PGN,
        "the stream breaks off halfway: never use the bytes; close as OverdrachtMislukt",
    ),
)


@dataclass(frozen=True, slots=True)
class OpenAttempt:
    """One overdrachtRequest as the TC saw it (its debug line ``session_open_attempt``)."""

    arrived_at: dt.datetime
    result: str  # SessieToegekend, or the refusal's code (TeVeelVerzoeken: 429)
    retry_after_seconds: int | None
    idempotency_key_hmac: str | None  # the key as the session keeps it; never the key
    request_hmac: str  # the same request (pupil, bron, soort) has the same HMAC


@dataclass(frozen=True, slots=True)
class Evidence:
    """What the Traffic Center recorded about the vendor's doel."""

    sessions: Sequence[Session]
    records: Sequence[AuditRecord]  # every audit record about the doel, in chain order
    scenario_of: Mapping[str, str]  # sessie_id → scenario, by the pupil's zoeksleutel
    # Every session open at the sandbox TC, in order (only the vendor's doel opens sessions).
    attempts: Sequence[OpenAttempt] = ()


@dataclass
class QualifySandbox:
    root: Path
    port: int | None = None
    notify_after_seconds: float = 1.0
    # `qualify doel`: one session open per SESSION_WINDOW_SECONDS, so the doel meets a 429.
    limit_sessions: bool = False
    world: Sandbox = field(init=False)

    def __post_init__(self) -> None:
        self.world = Sandbox(
            self.root,
            # Debug: the TC's line for every session open attempt (OPEN_ATTEMPT_EVENT).
            tc_env={"TC_LOG_LEVEL": "debug", **(_session_limits() if self.limit_sessions else {})},
            notify_after_seconds=self.notify_after_seconds,
            pupils={AFBREKEN_PGN: AFBREKEN_SCENARIO},
            parties=(QUALIFY_BRON, VENDOR_DOEL),
            port=self.port,
            las_options={QUALIFY_BRON.key: BRON_LAS_OPTIONS},
        )

    async def start(self) -> None:
        try:
            await self.world.start()
        except BaseException:
            await self.world.stop()
            raise

    async def stop(self) -> dict[str, int]:
        return await self.world.stop()

    @property
    def tc_url(self) -> str:
        return self.world.tc_url

    @property
    def vendor_tls(self) -> ClientTLS:
        return self.world.doel_tls(VENDOR_DOEL)

    def vendor_client(self) -> DoelClient:
        return self.world.doel_client(VENDOR_DOEL)

    def description(self) -> dict[str, Any]:
        """Everything a vendor needs to point its doel (or its LAS) at the sandbox."""
        tls = self.vendor_tls
        bron_tls = self.world.doel_tls(QUALIFY_BRON)  # for a vendor's own bron (--sandbox-checks)
        return {
            "tc_url": self.world.tc_url,
            "ops_url": self.world.ops_url,
            "ca": str(self.world.ca_pem),
            "doel": {
                "brin": VENDOR_DOEL.brin,
                "routeringskenmerk": VENDOR_DOEL.routeringskenmerk,
                "cert": str(tls.cert),
                "key": str(tls.key),
                "notification_url": self.world.las[VENDOR_DOEL.key].url,
            },
            "bron": {
                "brin": QUALIFY_BRON.brin,
                "routeringskenmerk": QUALIFY_BRON.routeringskenmerk,
                "url": self.world.las[QUALIFY_BRON.key].url,
                "cert": str(bron_tls.cert),
                "key": str(bron_tls.key),
            },
            "scheme_key": TEST_SCHEME_KEY.hex(),
            "pupils": {a.scenario: a.pgn for a in ASSIGNMENTS},
            # One session open per this many seconds (a second one is answered 429); None: the
            # ordinary budgets.
            "session_window_seconds": SESSION_WINDOW_SECONDS if self.limit_sessions else None,
            "logs": str(self.world.log_dir),
        }

    async def wait_for_notification(self, sessie_id: str, *, within: float = 30.0) -> None:
        """Until the vendor's doel endpoint was told about this session (the test doels)."""
        await asyncio.to_thread(
            self.world.las[VENDOR_DOEL.key].process.wait_for_event,
            lambda event: (
                event.get("sessie_id") == sessie_id
                and "notification" in str(event.get("event", ""))
            ),
            timeout=within,
        )

    async def evidence(self) -> Evidence:
        """The vendor doel's sessions and audit records, read from the TC's store."""
        assert self.world.settings is not None
        async with open_signed_store(self.world.settings) as (store, secret):
            sessions = await store.sessions.involving(VENDOR_DOEL.routeringskenmerk)
            mine = {
                s.sessie_id
                for s in sessions
                if s.doel_routeringskenmerk == VENDOR_DOEL.routeringskenmerk
            }
            records = [
                chained.record
                async for chained in store.audit.walk()
                if chained.record.doel_routeringskenmerk == VENDOR_DOEL.routeringskenmerk
                or chained.record.sessie_id in mine
            ]
        by_hmac = {
            keyed_hash(
                secret, "zoeksleutel", derive_zoeksleutel(TEST_SCHEME_KEY, a.pgn)
            ): a.scenario
            for a in ASSIGNMENTS
        }
        doel_sessions = [s for s in sessions if s.sessie_id in mine]
        scenario_of = {
            s.sessie_id: by_hmac[s.search_key_hmac]
            for s in doel_sessions
            if s.search_key_hmac in by_hmac
        }
        return Evidence(doel_sessions, records, scenario_of, self.open_attempts())

    def open_attempts(self) -> list[OpenAttempt]:
        """The TC's debug lines for session opens, from its output as it ran."""
        assert self.world.tc is not None
        return [
            _attempt(event)
            for event in list(self.world.tc.events)
            if event.get("event") == OPEN_ATTEMPT_EVENT
        ]


def _session_limits() -> dict[str, str]:
    return {
        "TC_RATE_LIMIT_WINDOW_SECONDS": str(SESSION_WINDOW_SECONDS),
        "TC_RATE_LIMIT_SESSIONS_PER_MINUTE": str(SESSIONS_PER_MINUTE),
    }


def _attempt(event: Mapping[str, Any]) -> OpenAttempt:
    retry_after = event.get("retry_after_seconds")
    key = event.get("idempotency_key_hmac")
    return OpenAttempt(
        arrived_at=dt.datetime.fromisoformat(str(event["arrived_at"])),
        result=str(event["result"]),
        retry_after_seconds=int(retry_after) if retry_after is not None else None,
        idempotency_key_hmac=str(key) if key is not None else None,
        request_hmac=str(event["request_hmac"]),
    )


def describe(sandbox: QualifySandbox) -> str:
    """The sandbox as a block a person reads."""
    info = sandbox.description()
    doel, bron = info["doel"], info["bron"]
    lines = [
        f"Traffic Center   {info['tc_url']}   (ops {info['ops_url']})",
        f"CA               {info['ca']}",
        f"your doel        {doel['brin']} {doel['routeringskenmerk']}",
        f"  certificate    {doel['cert']}",
        f"  key            {doel['key']}",
        f"bron             {bron['brin']} {bron['routeringskenmerk']} (reference LAS)",
        f"scheme key       {info['scheme_key']} (public test key: test pupils only)",
        "pupils to fetch from bron 00YY:",
        *(f"  {a.scenario:<11} {a.pgn}  {a.task}" for a in ASSIGNMENTS),
        *([f"  {'retry':<11} {'(any)':<9}  {RETRY_TASK}"] if sandbox.limit_sessions else []),
    ]
    return "\n".join(lines) + "\n"
