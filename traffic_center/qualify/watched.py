"""`qualify bron --sandbox-checks`: what only a Traffic Center sees of a vendor's bron.

The vendor runs its LAS against a running sandbox (``traffic-center sandbox``): with the
client certificate the sandbox made for test school 00YY and the sandbox TC's URL. The
qualifier points 00YY's endpoint at the vendor's ``--url``, asks as the sandbox's doel (99DL)
through the TC, and judges from the TC's audit records:

- ``calls the session check first``: a ``sessiecontroleRequest`` from 00YY's endpoint in the
  session, answered ``SessieValide``, recorded before the relay's final ``documentRequest``
  record (a dossier served after a refused check fails);
- ``refuses a request its session does not match``: the relay's call in a real session of
  another pupil, with the ready pupil's zoeksleutel, gets anything but the dossier (the TC
  answers its check ``SessieAfwijkend``);
- ``notifies after not ready``: after a 409 for the not-ready pupil, a final
  ``meldenNotificatieRequest`` record in that session within ``--notify-within`` seconds.

With these checks every scenario of :mod:`.bron` calls the vendor in a real session of the
sandbox (opened here as 99DL), so a bron that checks its sessions answers them as it would
the relay; the not-ready scenario's session is the one the notification must come for (a
second not-ready request would find the dossier already pending).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field

from traffic_center.admin.registry import RegistryAdmin
from traffic_center.admin.store import open_signed_store, open_store, utc_now
from traffic_center.domain.audit import AuditRecord, AuditType, Phase
from traffic_center.domain.errors import InvalidInput
from traffic_center.domain.results import ResultCode
from traffic_center.las.doel import ClientTLS, DoelClient, DoelError
from traffic_center.pki.ca import CA_CERT_FILE
from traffic_center.qualify.bron import BronTarget, dossier_call, send
from traffic_center.qualify.report import Report
from traffic_center.qualify.sandbox import QUALIFY_BRON, VENDOR_DOEL
from traffic_center.settings import Settings

WATCHED = "via-tc"
CHECK_FIRST = "calls the session check first"
NOTIFIES = "notifies after not ready"
MISMATCH = "refuses a request its session does not match"
DEFAULT_NOTIFY_WITHIN = 60.0
POLL_SECONDS = 0.2


@dataclass(frozen=True, slots=True)
class WatchedTarget:
    settings: Settings  # the running sandbox TC's home (--home)
    tc_url: str
    url: str  # the vendor's bron endpoint
    gereed_pgn: str
    nietgereed_pgn: str
    scheme_key: bytes
    notify_within: float = DEFAULT_NOTIFY_WITHIN

    @property
    def doel_tls(self) -> ClientTLS:
        """The sandbox's doel certificate, where `traffic-center sandbox` wrote it."""
        directory = self.settings.home.parent / f"las-{VENDOR_DOEL.key}"
        return ClientTLS(
            directory / "client.pem", directory / "client.key", self.settings.ca_dir / CA_CERT_FILE
        )


def check_sandbox(target: WatchedTarget) -> None:
    """Usage mistakes before the first call: a home that is not a sandbox's."""
    tls = target.doel_tls
    for path in (tls.cert, tls.key, tls.ca):
        if not path.is_file():
            raise InvalidInput(
                f"--sandbox-checks: {path}: no such file (--home must be the tc/ directory of "
                "a running `traffic-center sandbox`)"
            )


@dataclass(frozen=True, slots=True)
class Answered:
    sessie_id: str
    status: int | None
    at: float  # time.monotonic()


@dataclass
class SandboxSessions:
    """The :class:`~.bron.Sessions` of the sandbox: real sessions, opened as its doel 99DL."""

    doel: DoelClient
    doel_brin: str = VENDOR_DOEL.brin
    doel_routeringskenmerk: str = VENDOR_DOEL.routeringskenmerk
    answers: dict[str, Answered] = field(default_factory=dict)
    refused: dict[str, str] = field(default_factory=dict)  # scenario → why no session

    async def open(self, scenario: str, pgn: str) -> str:
        try:
            session = await self.doel.open_session(
                QUALIFY_BRON.brin, pgn, bron_routeringskenmerk=QUALIFY_BRON.routeringskenmerk
            )
        except DoelError as exc:
            self.refused[scenario] = str(exc)
            return str(uuid.uuid4())
        return session.sessie_id

    def answered(self, scenario: str, sessie_id: str, status: int | None) -> None:
        self.answers[scenario] = Answered(sessie_id, status, time.monotonic())


@contextlib.asynccontextmanager
async def sandbox_sessions(target: WatchedTarget) -> AsyncIterator[SandboxSessions]:
    """00YY's endpoint pointed at the vendor's URL, and a doel client to open sessions; the
    endpoint back where it was afterwards (it was left at the vendor's URL: the sandbox's
    reference pupils were gone until the vendor noticed and moved it back)."""
    was = await _point_bron_at(target, target.url)
    try:
        async with DoelClient(
            target.tc_url, tls=target.doel_tls, scheme_key=target.scheme_key
        ) as doel:
            yield SandboxSessions(doel)
    finally:
        await _point_bron_at(target, was)


async def qualify_watched(
    target: WatchedTarget, report: Report, sessions: SandboxSessions, bron: BronTarget
) -> None:
    with report.scenario(WATCHED):
        await _check_first(target, report, sessions.doel)
        await _refuses_mismatch(target, report, sessions, bron)
        await _notifies(target, report, sessions)


async def _point_bron_at(target: WatchedTarget, url: str) -> str:
    """00YY's endpoint moved to ``url``; the URL it had."""
    async with open_signed_store(target.settings) as (store, secret):
        endpoint = await store.registry.get_endpoint(QUALIFY_BRON.routeringskenmerk)
        if endpoint is None:
            raise InvalidInput(
                f"the sandbox has no endpoint {QUALIFY_BRON.routeringskenmerk}: is "
                f"{target.settings.home} a qualification sandbox?"
            )
        if endpoint.url != url:
            admin = RegistryAdmin(store, secret=secret, clock=utc_now)
            await admin.move_endpoint(QUALIFY_BRON.routeringskenmerk, url=url)
        return endpoint.url


async def _records(target: WatchedTarget, sessie_id: str) -> Sequence[AuditRecord]:
    async with open_store(target.settings) as store:
        return await store.audit.for_session(sessie_id)


def _reproduce(target: WatchedTarget, pgn: str) -> str:
    tls = target.doel_tls
    return (
        f"open a session as doel {VENDOR_DOEL.routeringskenmerk} (--cert {tls.cert}) at "
        f"{target.tc_url} for pupil {pgn} of {QUALIFY_BRON.brin}, fetch its dossier, then "
        f"traffic-center --home {target.settings.home} audit for the session"
    )


async def _check_first(target: WatchedTarget, report: Report, doel: DoelClient) -> None:
    reproduce = _reproduce(target, target.gereed_pgn)
    try:
        session = await doel.open_session(
            QUALIFY_BRON.brin,
            target.gereed_pgn,
            bron_routeringskenmerk=QUALIFY_BRON.routeringskenmerk,
        )
        fetched = await doel.fetch_dossier(
            session.sessie_id, QUALIFY_BRON.routeringskenmerk, target.gereed_pgn
        )
    except DoelError as exc:
        report.expect(
            WATCHED,
            CHECK_FIRST,
            False,
            expected="a dossier through the TC",
            got=str(exc),
            reproduce=reproduce,
        )
        return
    with contextlib.suppress(DoelError):
        await doel.close(session.sessie_id, fetched.closing_result, QUALIFY_BRON.routeringskenmerk)
    records = await _records(target, session.sessie_id)
    relay_final = next(
        (
            i
            for i, r in enumerate(records)
            if r.type is AuditType.DOSSIER and r.phase is Phase.FINAL
        ),
        len(records),
    )
    checks = [
        r
        for r in records[:relay_final]
        if r.type is AuditType.CHECK
        and r.phase is Phase.FINAL
        and r.bron_routeringskenmerk in (None, QUALIFY_BRON.routeringskenmerk)
    ]
    # Only a check the TC confirmed counts: a bron that serves whatever its check was answered
    # has not checked anything (docs/vendors.md: "answer only SessieValide").
    confirmed = any(r.result == ResultCode.SESSIE_VALIDE for r in checks)
    seen = ", ".join(f"{r.type}({r.phase}) {r.result}" for r in records) or "no records"
    got = f"HTTP {fetched.status}; the TC recorded: {seen}"
    if checks and not confirmed and fetched.status == 200:
        answered = ", ".join(sorted({str(r.result) for r in checks}))
        got = (
            f"served the dossier although the TC answered its session check {answered}: "
            f"answer only after SessieValide ({got})"
        )
    report.expect(
        WATCHED,
        CHECK_FIRST,
        confirmed,
        expected="a sessiecontroleRequest answered SessieValide in the session before the "
        "relay's final record",
        got=got,
        reproduce=reproduce,
    )


async def _refuses_mismatch(
    target: WatchedTarget, report: Report, sessions: SandboxSessions, bron: BronTarget
) -> None:
    """A real session for the unknown pupil, asked for the ready pupil: the TC answers the
    bron's check SessieAfwijkend, so only a bron that skips or ignores it serves the dossier."""
    sessie_id = await sessions.open(MISMATCH, bron.pupils["onbekend"])
    call = dossier_call(
        bron,
        target.gereed_pgn,
        aanvraagdatum=None,
        sessie_id=sessie_id,
        doel=(sessions.doel_brin, sessions.doel_routeringskenmerk),
    )
    expected = "any answer but the dossier: the TC answers this session check SessieAfwijkend"
    if MISMATCH in sessions.refused:
        got = f"not run: no session ({sessions.refused[MISMATCH]})"
        report.expect(WATCHED, MISMATCH, False, expected=expected, got=got)
        return
    answer = await send(bron, call, bron.relay)
    served = answer.response is not None and answer.response.status_code == 200
    report.expect(
        WATCHED,
        MISMATCH,
        answer.response is not None and not served,
        expected=expected,
        got=answer.summary(),
        reproduce=call.curl(bron),
    )


async def _notifies(target: WatchedTarget, report: Report, sessions: SandboxSessions) -> None:
    reproduce = _reproduce(target, target.nietgereed_pgn)
    expected = (
        f"HTTP 409 {ResultCode.DOSSIER_NOG_NIET_GEREED}, then a meldenNotificatieRequest "
        f"through the TC within {target.notify_within:g} s"
    )
    answer = sessions.answers.get("nietgereed")
    if answer is None or answer.status != 409 or "nietgereed" in sessions.refused:
        got = (
            f"no session: {sessions.refused['nietgereed']}"
            if "nietgereed" in sessions.refused
            else "no answer"
            if answer is None or answer.status is None
            else f"HTTP {answer.status} for the not-ready pupil"
        )
        report.expect(WATCHED, NOTIFIES, False, expected=expected, got=got, reproduce=reproduce)
        return
    deadline = answer.at + target.notify_within
    notified: AuditRecord | None = None
    while True:
        notified = next(
            (
                r
                for r in await _records(target, answer.sessie_id)
                if r.type is AuditType.NOTIFICATION and r.phase is Phase.FINAL
            ),
            None,
        )
        if notified is not None or time.monotonic() >= deadline:
            break
        await asyncio.sleep(POLL_SECONDS)
    got = (
        f"none within {target.notify_within:g} s"
        if notified is None
        else f"{notified.result} (HTTP {notified.http_status}), "
        f"{time.monotonic() - answer.at:.1f} s after the 409 at the latest"
    )
    report.expect(
        WATCHED, NOTIFIES, notified is not None, expected=expected, got=got, reproduce=reproduce
    )
