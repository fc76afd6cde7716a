"""`qualify doel`: judge a vendor's doel client from what the Traffic Center recorded.

The doel fetches the sandbox's test pupils (:data:`~traffic_center.qualify.sandbox.ASSIGNMENTS`)
through the sandbox TC; afterwards its sessions and the audit log say what it did: how it
opened, fetched and closed each session, whether it asked again after a notification, and
whether it ever sent a clear pupil number. Nothing the doel says about itself counts.

The sandbox allows the doel one session open per
:data:`~traffic_center.qualify.sandbox.SESSION_WINDOW_SECONDS`: the real rate limiter answers
the next one 429 with Retry-After. The TC's line for every open attempt (its time, result,
Retry-After and the Idempotency-Key's HMAC) says whether the doel waited that long before it
retried the same open, and whether it sent the same key again.
"""

from __future__ import annotations

import asyncio
import io
import time
from collections.abc import Awaitable, Callable, Sequence

from traffic_center.domain.audit import AuditRecord, AuditType, Phase
from traffic_center.domain.errors import RateLimited
from traffic_center.domain.identifiers import derive_zoeksleutel
from traffic_center.domain.models import Session, SessionState
from traffic_center.domain.results import ResultCode
from traffic_center.las.pupils import TEST_SCHEME_KEY, pupil_with
from traffic_center.qualify.report import Report
from traffic_center.qualify.sandbox import (
    QUALIFY_BRON,
    SESSION_WINDOW_SECONDS,
    Evidence,
    OpenAttempt,
    QualifySandbox,
)

# How the vendor's doel is driven in-process (the tests, a reference run); None: a real vendor
# drives it from outside while `qualify doel` waits.
DoelDriver = Callable[[QualifySandbox], Awaitable[None]]

GESLAAGD = ResultCode.OVERDRACHT_GESLAAGD.value
NIET_GEREED = ResultCode.DOSSIER_NOG_NIET_GEREED.value
MISLUKT = ResultCode.OVERDRACHT_MISLUKT.value
# What the TC answers a close it cannot hold to what it relayed (docs/vendors.md §4).
REFUSED_CLOSE = "ResultaatNietVastgesteld"
CLEAR_PGN = "PgnNietToegestaan"
RATE_LIMITED = RateLimited.code
RETRY = "retry after 429"
WAITED = "waited Retry-After before retrying an open answered 429"
SAME_KEY = "retried the open with the same Idempotency-Key"
POLL_SECONDS = 1.0


async def qualify_doel(
    sandbox: QualifySandbox,
    report: Report,
    *,
    wait_seconds: float,
    drive: DoelDriver | None = None,
) -> Report:
    """Let the doel work (``drive``, or until it is done or ``wait_seconds`` passed), then judge."""
    if drive is not None:
        await asyncio.wait_for(drive(sandbox), timeout=wait_seconds)
    else:
        await _wait_until_done(sandbox, wait_seconds)
    judge(
        await sandbox.evidence(),
        report,
        curl=_curl_prefix(sandbox),
        retries=sandbox.limit_sessions,
    )
    return report


async def _wait_until_done(sandbox: QualifySandbox, wait_seconds: float) -> None:
    """Until every check would pass (the doel finished), or the time is up."""
    deadline = time.monotonic() + wait_seconds
    while time.monotonic() < deadline:
        trial = Report("trial", out=io.StringIO())
        judge(await sandbox.evidence(), trial, curl="", retries=sandbox.limit_sessions)
        if trial.ok:
            return
        await asyncio.sleep(POLL_SECONDS)


def judge(evidence: Evidence, report: Report, *, curl: str, retries: bool = False) -> None:
    """Every check, one scenario at a time, from the TC's records; ``retries`` when the
    sandbox limited the doel's session opens (it met a 429)."""
    judge_gereed(evidence, report, curl)
    judge_nietgereed(evidence, report, curl)
    judge_afbreken(evidence, report, curl)
    judge_all_sessions(evidence, report, curl)
    if retries:
        judge_retries(evidence, report, curl)


def judge_gereed(evidence: Evidence, report: Report, curl: str) -> None:
    with report.scenario("gereed"):
        delivered = [s for s in _of(evidence, "gereed") if _delivered(evidence, s)]
        report.expect(
            "gereed",
            "fetched the ready dossier",
            bool(delivered),
            expected="a session for the gereed pupil with a complete documentRequest",
            got=_summary(evidence, "gereed"),
            reproduce=f'{curl}/v1/sessions -d \'{{"bron_brin": "00YY", …}}\'',
        )
        _expect_closed_as(
            report,
            "gereed",
            "a delivered transfer",
            delivered,
            GESLAAGD,
            curl,
            nothing="no delivered session",
        )


def judge_nietgereed(evidence: Evidence, report: Report, curl: str) -> None:
    with report.scenario("nietgereed"):
        sessions = _of(evidence, "nietgereed")
        not_ready = [s for s in sessions if _dossier_results(evidence, s) & {NIET_GEREED}]
        _expect_closed_as(
            report,
            "nietgereed",
            "a not-ready transfer",
            not_ready,
            NIET_GEREED,
            curl,
            nothing=_summary(evidence, "nietgereed"),
            expected=f"a session answered {NIET_GEREED}, closed as {NIET_GEREED}",
        )
        notified = _notifications(evidence, {s.sessie_id for s in not_ready})
        # From the moment the notification was forwarded: a quick doel asks again before the
        # TC has written the notification's final record (after the doel's receipt).
        told_at = (notified[0].forwarded_at or notified[0].recorded_at) if notified else None
        after = [
            s
            for s in sessions
            if told_at is not None and s.created_at > told_at and _delivered(evidence, s)
        ]
        report.expect(
            "nietgereed",
            "asked again after the notification, in a new session, and got the dossier",
            bool(after) and all(s.result == GESLAAGD for s in after),
            expected=(
                "after the meldenNotificatieRequest record: a new session, a complete "
                f"documentRequest, closed as {GESLAAGD}"
            ),
            got=(
                "no notification recorded (the doel never got DossierNogNietGereed)"
                if not notified
                else ", ".join(_closed_as(s) for s in after)
                or "no delivered session after the notification"
            ),
        )


def judge_afbreken(evidence: Evidence, report: Report, curl: str) -> None:
    with report.scenario("afbreken"):
        relayed = [s for s in _of(evidence, "afbreken") if _dossier_results(evidence, s)]
        report.expect(
            "afbreken",
            "asked for the dossier that breaks off",
            bool(relayed),
            expected="a session for the afbreken pupil with a documentRequest",
            got=_summary(evidence, "afbreken"),
        )
        refused = [
            r
            for r in evidence.records
            if r.type is AuditType.CLOSE
            and r.result == REFUSED_CLOSE
            and evidence.scenario_of.get(r.sessie_id or "") == "afbreken"
        ]
        report.expect(
            "afbreken",
            "never closed a truncated transfer as OverdrachtGeslaagd",
            not refused,
            expected=f"no afmeldingRequest with {GESLAAGD} for a dossier that broke off",
            got=(
                f"{len(refused)} close(s) as {GESLAAGD} refused with 409 {REFUSED_CLOSE} "
                f"(session {', '.join(sorted({str(r.sessie_id)[:8] for r in refused}))}…)"
                if refused
                else "none"
            ),
            reproduce=_close_line(
                curl,
                [s for s in relayed if s.sessie_id in {r.sessie_id for r in refused}],
                GESLAAGD,
            ),
        )
        _expect_closed_as(
            report,
            "afbreken",
            "a truncated transfer",
            relayed,
            MISLUKT,
            curl,
            nothing="no session with a relay",
        )


def judge_all_sessions(evidence: Evidence, report: Report, curl: str) -> None:
    with report.scenario("every session"):
        opened = [r for r in evidence.records if r.type is AuditType.SESSION]
        refused = [r for r in opened if r.http_status not in (200, 201)]
        report.expect(
            "every session",
            "opened sessions the TC granted",
            bool(opened) and not refused,
            expected="every overdrachtRequest answered 201 SessieToegekend",
            got=", ".join(f"{r.http_status} {r.result}" for r in refused)
            or f"{len(opened)} granted",
        )
        unclosed = [s for s in evidence.sessions if s.state is not SessionState.CLOSED]
        report.expect(
            "every session",
            "closed every session it opened",
            bool(evidence.sessions) and not unclosed,
            expected="every session CLOSED with an afmeldingRequest",
            got=", ".join(f"{s.sessie_id[:8]}… {s.state.value}" for s in unclosed)
            or f"{len(evidence.sessions)} closed",
            reproduce=_close_line(curl, unclosed, "<resultaat>"),
        )
        clear = [r for r in evidence.records if r.result == CLEAR_PGN]
        report.expect(
            "every session",
            "never sent a clear pupil number",
            not clear,
            expected=f"no request refused with {CLEAR_PGN}",
            got=", ".join(f"{r.type.value} {r.http_status} {r.result}" for r in clear) or "none",
        )


def judge_retries(evidence: Evidence, report: Report, curl: str) -> None:
    """After a 429 on an open: the same open again, no sooner than Retry-After, same key."""
    with report.scenario(RETRY):
        refused = [a for a in evidence.attempts if a.result == RATE_LIMITED]
        retried = [(a, _retry_of(evidence.attempts, a)) for a in refused]
        reproduce = _twice_line(curl)
        never = f"no session open answered 429 (open two within {SESSION_WINDOW_SECONDS} s)"
        early = [(a, b) for a, b in retried if b is None or _waited(a, b) < _retry_after(a)]
        report.expect(
            RETRY,
            WAITED,
            bool(refused) and not early,
            expected="after 429 with Retry-After N: the same open again, N seconds later or more",
            got=(", ".join(_wait_said(a, b) for a, b in early) if early else _waits(retried))
            or never,
            reproduce=reproduce,
        )
        other_key = [(a, b) for a, b in retried if b is not None and not _same_key(a, b)]
        report.expect(
            RETRY,
            SAME_KEY,
            bool(refused) and any(b is not None for _, b in retried) and not other_key,
            expected="an Idempotency-Key on the refused open, and the same key on its retry",
            got=", ".join(_keys_said(a, b) for a, b in other_key)
            or (f"{len(retried)} retried with the same key" if refused else never),
            reproduce=reproduce,
        )


# --- reading the records -------------------------------------------------------------------


def _retry_of(attempts: Sequence[OpenAttempt], refused: OpenAttempt) -> OpenAttempt | None:
    """The next attempt at the same open (the same request) after a refused one."""
    return next(
        (
            a
            for a in attempts
            if a.request_hmac == refused.request_hmac and a.arrived_at > refused.arrived_at
        ),
        None,
    )


def _retry_after(attempt: OpenAttempt) -> float:
    return float(attempt.retry_after_seconds or 0)


def _waited(refused: OpenAttempt, retry: OpenAttempt) -> float:
    return (retry.arrived_at - refused.arrived_at).total_seconds()


def _wait_said(refused: OpenAttempt, retry: OpenAttempt | None) -> str:
    if retry is None:
        return f"429 (Retry-After {refused.retry_after_seconds}) and never the same open again"
    again = "429 again" if retry.result == RATE_LIMITED else retry.result
    return (
        f"retried {_waited(refused, retry):.2f} s after a 429 with Retry-After "
        f"{refused.retry_after_seconds} ({again})"
    )


def _waits(retried: Sequence[tuple[OpenAttempt, OpenAttempt | None]]) -> str:
    return ", ".join(
        f"waited {_waited(a, b):.1f} s of Retry-After {a.retry_after_seconds}"
        for a, b in retried
        if b is not None
    )


def _same_key(refused: OpenAttempt, retry: OpenAttempt) -> bool:
    return (
        refused.idempotency_key_hmac is not None
        and retry.idempotency_key_hmac == refused.idempotency_key_hmac
    )


def _keys_said(refused: OpenAttempt, retry: OpenAttempt) -> str:
    if refused.idempotency_key_hmac is None:
        return "the refused open carried no Idempotency-Key"
    if retry.idempotency_key_hmac is None:
        return "the retry carried no Idempotency-Key"
    return (
        f"the retry's key differs (HMAC {retry.idempotency_key_hmac[:8]}…, "
        f"refused open's {refused.idempotency_key_hmac[:8]}…)"
    )


def _twice_line(curl: str) -> str | None:
    """Two opens back to back with one key: the second is answered 429 with Retry-After."""
    if not curl:
        return None
    body = (
        f'{{"bron_brin": "{QUALIFY_BRON.brin}", "overdrachtsoort": "overstapdossier", '
        f'"zoeksleutel": "{derive_zoeksleutel(TEST_SCHEME_KEY, pupil_with("gereed"))}"}}'
    )
    one = f"{curl}/v1/sessions -i -H 'Idempotency-Key: try-1' -d '{body}'"
    return f"{one}; {one}  # the second: 429 and Retry-After; again after it: the same session"


def _of(evidence: Evidence, scenario: str) -> list[Session]:
    return [s for s in evidence.sessions if evidence.scenario_of.get(s.sessie_id) == scenario]


def _dossier_records(evidence: Evidence, session: Session) -> list[AuditRecord]:
    return [
        r
        for r in evidence.records
        if r.sessie_id == session.sessie_id
        and r.type is AuditType.DOSSIER
        and r.phase is Phase.FINAL
    ]


def _dossier_results(evidence: Evidence, session: Session) -> set[str]:
    return {r.result for r in _dossier_records(evidence, session)}


def _expect_closed_as(
    report: Report,
    scenario: str,
    what: str,
    sessions: list[Session],
    result: str,
    curl: str,
    *,
    nothing: str,
    expected: str | None = None,
) -> None:
    """The check that every one of ``sessions`` was closed with ``result``."""
    report.expect(
        scenario,
        f"closed {what} as {result}",
        bool(sessions) and all(s.result == result for s in sessions),
        expected=expected or f"resultaat {result}",
        got=", ".join(_closed_as(s) for s in sessions) or nothing,
        reproduce=_close_line(curl, sessions, result),
    )


def _delivered(evidence: Evidence, session: Session) -> bool:
    return GESLAAGD in _dossier_results(evidence, session)


def _notifications(evidence: Evidence, sessie_ids: set[str]) -> list[AuditRecord]:
    return [
        r
        for r in evidence.records
        if r.type is AuditType.NOTIFICATION and r.phase is Phase.FINAL and r.sessie_id in sessie_ids
    ]


def _summary(evidence: Evidence, scenario: str) -> str:
    sessions = _of(evidence, scenario)
    if not sessions:
        return "no session for this pupil"
    parts = []
    for s in sessions:
        results = ", ".join(sorted(_dossier_results(evidence, s))) or "no documentRequest"
        parts.append(f"{s.sessie_id[:8]}…: {results}; {_closed_as(s)}")
    return " | ".join(parts)


def _closed_as(session: Session) -> str:
    if session.state is SessionState.CLOSED:
        return f"closed as {session.result}"
    return f"{session.state.value.lower()}, not closed"


def _curl_prefix(sandbox: QualifySandbox) -> str:
    tls = sandbox.vendor_tls
    return (
        f"curl --cacert {tls.ca} --cert {tls.cert} --key {tls.key} "
        f"-H 'Content-Type: application/json' {sandbox.tc_url}"
    )


def _close_line(curl: str, sessions: Sequence[Session], resultaat: str) -> str | None:
    if not sessions or not curl:
        return None
    session = sessions[0]
    # A session opened without naming the bron's endpoint has none yet: the close names the
    # one the dossier was fetched from (it printed "None").
    bron = session.bron_routeringskenmerk or "<the bron endpoint you fetched from>"
    body = f'{{"resultaat": "{resultaat}", "routeringskenmerk": "{bron}"}}'
    return f"{curl}/v1/sessions/{session.sessie_id}/close -d '{body}'"
