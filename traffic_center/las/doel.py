"""The doel side of the reference LAS: asking the Traffic Center for a dossier and streaming it.

The doel names the pupil by PGN; :class:`DoelClient` derives the zoeksleutel v1 from it with
its scheme key (``docs/zoeksleutel.md``), so the PGN itself never leaves this process.

Opening a session is retried the way the TC asks (``docs/vendors.md``): after 429 (or 503) with
``Retry-After``, that many seconds later, and after an answer lost to a read timeout, at once;
every attempt of one open carries the same ``Idempotency-Key``, so a retry never opens a second
session.

Errors raised by :class:`DoelClient` (a broken dossier stream is an outcome, not an error: it
comes back as a :class:`FetchResult` with ``complete=False``; a PGN that is not 9 digits, or a
scheme key that is not 32 bytes, is a ValueError before anything is sent)::

    DoelError
    ├── TrafficCenterRefused      the TC answered a broker message with a problem (status, code)
    └── TrafficCenterUnreachable  no answer at all: connection, TLS handshake or timeout
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import json
import ssl
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Protocol

import httpx

from traffic_center.domain.identifiers import SCHEME_KEY_BYTES, derive_zoeksleutel
from traffic_center.domain.las_contract import RELEASE_HEADER, TRANSACTION_HEADER
from traffic_center.domain.results import ResultCode, best_result, closing_result_for
from traffic_center.las.pupils import TEST_SCHEME_KEY

# A dossier chunk may take a while when the bron is slow, but a silent peer must not hang a
# doel forever; connecting should be quick on any network a school uses.
DEFAULT_TIMEOUT = httpx.Timeout(30.0, connect=10.0)
# Problem bodies are small; a bron or TC sending more than this is not sending a problem.
_MAX_PROBLEM_BYTES = 64 * 1024
_GRANTED = "SessieToegekend"  # timeline label for a granted session; not an OSO result code
# How often one session open is tried: the first time and two retries (docs/vendors.md).
OPEN_ATTEMPTS = 3
# A Retry-After longer than this is handed back to the caller (a LAS schedules it) rather than
# waited out inside one call.
MAX_RETRY_AFTER_SECONDS = 60.0
# The statuses after which the TC's Retry-After says when the same request may be sent again.
_RETRY_STATUSES = frozenset({429, 503})


@dataclass(frozen=True, slots=True)
class ClientTLS:
    """A school endpoint's client certificate, and the CA bundle that verifies the TC."""

    cert: Path
    key: Path
    ca: Path

    def ssl_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=str(self.ca))
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.load_cert_chain(str(self.cert), str(self.key))
        return context


class ChunkSink(Protocol):
    """Where dossier chunks go as they arrive: a binary file, a socket, a hasher…"""

    def write(self, data: bytes, /) -> object: ...


class DoelError(Exception):
    """Base of the doel client's errors."""


class TrafficCenterRefused(DoelError):
    def __init__(
        self, status: int, code: str, detail: str | None = None, *, retry_after: float | None = None
    ) -> None:
        self.status, self.code, self.detail = status, code, detail
        self.retry_after = retry_after  # seconds, from the answer's Retry-After header
        super().__init__(f"{status} {code}: {detail or ''}".rstrip(": "))


class TrafficCenterUnreachable(DoelError):
    def __init__(self, message: str, *, timed_out: bool = False) -> None:
        # Sent, but no answer in time: the TC may have acted on it (a retry needs the same key).
        self.timed_out = timed_out
        super().__init__(message)


@dataclass(frozen=True, slots=True)
class BronEndpoint:
    routeringskenmerk: str
    url: str


@dataclass(frozen=True, slots=True)
class GrantedSession:
    sessie_id: str
    bron_endpoints: tuple[BronEndpoint, ...]
    expires_at: str


@dataclass(frozen=True, slots=True)
class FetchResult:
    """How one documentRequest through the TC ended."""

    status: int  # 0 when no response arrived
    resultaat: str  # OverdrachtGeslaagd, the problem's code, or OverdrachtMislukt
    bytes: int
    sha256: str | None  # of the bytes received as they travelled; None when no dossier came
    transactie_id: str | None
    vrijgave: str | None
    elapsed_ms: float
    complete: bool
    detail: str | None = None

    @property
    def succeeded(self) -> bool:
        return self.resultaat == ResultCode.OVERDRACHT_GESLAAGD

    @property
    def closing_result(self) -> ResultCode:
        """The result this fetch contributes to the afmelding; odd codes count as a failure."""
        return closing_result_for(self.resultaat)


@dataclass(frozen=True, slots=True)
class TransferStep:
    """One line of the demo's timeline: who did what, with which result."""

    actor: str
    action: str
    resultaat: str
    status: int
    elapsed_ms: float
    routeringskenmerk: str | None = None
    bytes: int = 0
    sha256: str | None = None


@dataclass(slots=True)
class TransferRecord:
    sessie_id: str
    resultaat: ResultCode
    steps: list[TransferStep] = field(default_factory=list)
    fetch: FetchResult | None = None  # the successful fetch, else the last one


class DoelClient:
    """A doel LAS talking to the Traffic Center with its own client certificate.

    Pass ``tls`` for real mTLS, or ``transport`` (e.g. ``httpx.MockTransport``) in unit tests.
    ``scheme_key`` is the zoeksleutel v1 scheme key; the default is the public test key, which
    only test school 00YY's pupils may be looked up with.
    """

    def __init__(
        self,
        tc_url: str,
        *,
        tls: ClientTLS | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        timeout: httpx.Timeout | float = DEFAULT_TIMEOUT,
        scheme_key: bytes = TEST_SCHEME_KEY,
        open_attempts: int = OPEN_ATTEMPTS,
    ) -> None:
        if tls is None and transport is None:
            raise ValueError("give the client certificate (tls) or a transport")
        if len(scheme_key) != SCHEME_KEY_BYTES:
            raise ValueError(f"the scheme key is {SCHEME_KEY_BYTES} bytes, not {len(scheme_key)}")
        self._scheme_key = scheme_key
        self._open_attempts = max(1, open_attempts)
        verify: ssl.SSLContext | bool = tls.ssl_context() if tls is not None else True
        self._client = httpx.AsyncClient(
            base_url=tc_url.rstrip("/"),
            verify=verify,
            transport=transport,
            timeout=timeout,
            # The TC relays and hashes the bytes as they travel; asking for them unencoded
            # keeps our digest comparable with its record (a bron may still compress:
            # _read_answer hashes the raw bytes either way).
            headers={"Accept-Encoding": "identity"},
        )

    async def __aenter__(self) -> DoelClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._client.aclose()

    def zoeksleutel(self, pgn: str) -> str:
        """The pupil's zoeksleutel v1 under this client's scheme key."""
        return derive_zoeksleutel(self._scheme_key, pgn)

    # --- the broker messages ------------------------------------------------------------------

    async def open_session(
        self,
        bron_brin: str,
        pgn: str,
        overdrachtsoort: str = "overstapdossier",
        bron_routeringskenmerk: str | None = None,
        *,
        idempotency_key: str | None = None,
    ) -> GrantedSession:
        """overdrachtRequest: ``POST /v1/sessions``, for the pupil with this PGN.

        Without ``idempotency_key`` a new one is made for this open (and kept for its retries).
        """
        body: dict[str, Any] = {
            "bron_brin": bron_brin,
            "overdrachtsoort": overdrachtsoort,
            "zoeksleutel": self.zoeksleutel(pgn),
        }
        if bron_routeringskenmerk is not None:
            body["bron_routeringskenmerk"] = bron_routeringskenmerk
        return await self._grant(body, idempotency_key or new_idempotency_key())

    async def open_swv_session(self, bron_brin: str, koppelsleutel: str) -> GrantedSession:
        """overdrachtRequest of an SWV (the SWV flow): an swv-dossier by koppelsleutel."""
        body = {
            "bron_brin": bron_brin,
            "overdrachtsoort": "swv-dossier",
            "koppelsleutel": koppelsleutel,
        }
        return await self._grant(body, new_idempotency_key())

    async def give_feedback(self, koppelsleutel: str, terugkoppeling: str) -> dict[str, Any]:
        """meldenTerugkoppelingRequest: ``POST /v1/swv/feedback``, relayed once to the school."""
        body = {"koppelsleutel": koppelsleutel, "terugkoppeling": terugkoppeling}
        return await self._post_json("/v1/swv/feedback", body, expect=200)

    async def _grant(self, body: Mapping[str, Any], idempotency_key: str) -> GrantedSession:
        """``POST /v1/sessions``, retried as the TC asks, every time with the same key."""
        headers = {"Idempotency-Key": idempotency_key}
        attempt = 1
        while True:
            try:
                answer = await self._post_json("/v1/sessions", body, headers=headers, expect=201)
                break
            except DoelError as failed:
                wait = _retry_wait(failed)
                if wait is None or attempt >= self._open_attempts:
                    raise
            await asyncio.sleep(wait)
            attempt += 1
        return GrantedSession(
            sessie_id=str(answer["sessie_id"]),
            bron_endpoints=tuple(
                BronEndpoint(str(e["routeringskenmerk"]), str(e["url"]))
                for e in answer["bron_endpoints"]
            ),
            expires_at=str(answer["expires_at"]),
        )

    async def close(
        self, sessie_id: str, resultaat: ResultCode | str, routeringskenmerk: str
    ) -> dict[str, Any]:
        """afmeldingRequest: ``POST /v1/sessions/{id}/close``; returns the final state."""
        body = {"resultaat": str(resultaat), "routeringskenmerk": routeringskenmerk}
        return await self._post_json(f"/v1/sessions/{sessie_id}/close", body, expect=200)

    async def fetch_dossier(
        self,
        sessie_id: str,
        routeringskenmerk: str,
        pgn: str | None,
        aanvraagdatum: dt.date | str | None = None,
        sink: ChunkSink | None = None,
        *,
        koppelsleutel: str | None = None,
    ) -> FetchResult:
        """documentRequest through the TC, streamed: size and SHA-256 are computed on the fly.

        The pupil by PGN (its zoeksleutel is sent), or for an swv-dossier the koppelsleutel.
        """
        if (pgn is None) == (koppelsleutel is None):
            raise ValueError("name the pupil by PGN, or an swv-dossier by koppelsleutel")
        if isinstance(aanvraagdatum, dt.date):
            aanvraagdatum = aanvraagdatum.isoformat()
        key = {"zoeksleutel": self.zoeksleutel(pgn)} if pgn is not None else {}
        body = {
            "routeringskenmerk": routeringskenmerk,
            **key,
            "aanvraagdatum": aanvraagdatum,
        }
        if koppelsleutel is not None:
            body["koppelsleutel"] = koppelsleutel
        started = time.perf_counter()
        try:
            async with self._client.stream(
                "POST", f"/v1/sessions/{sessie_id}/dossier", json=body
            ) as response:
                return await _read_answer(response, sink, started)
        except httpx.TransportError as exc:
            # No response at all (refused, handshake, timeout before the headers).
            return FetchResult(
                status=0,
                resultaat=ResultCode.OVERDRACHT_MISLUKT,
                bytes=0,
                sha256=None,
                transactie_id=None,
                vrijgave=None,
                elapsed_ms=_ms_since(started),
                complete=False,
                detail=type(exc).__name__,
            )

    # --- the whole exchange -------------------------------------------------------------------

    async def transfer(
        self,
        bron_brin: str,
        pgn: str,
        *,
        overdrachtsoort: str = "overstapdossier",
        bron_routeringskenmerk: str | None = None,
        aanvraagdatum: dt.date | str | None = None,
    ) -> TransferRecord:
        """Open a session, ask each bron endpoint until one delivers, close with the best result.

        Refusals of the broker messages (open, close) raise :class:`TrafficCenterRefused`.
        """
        started = time.perf_counter()
        session = await self.open_session(bron_brin, pgn, overdrachtsoort, bron_routeringskenmerk)
        return await self._fetch_and_close(session, started, pgn, None, aanvraagdatum)

    async def transfer_swv(self, bron_brin: str, koppelsleutel: str) -> TransferRecord:
        """The SWV's side of the SWV flow: an swv-dossier by koppelsleutel, fetched and closed."""
        started = time.perf_counter()
        session = await self.open_swv_session(bron_brin, koppelsleutel)
        return await self._fetch_and_close(session, started, None, koppelsleutel, None)

    async def _fetch_and_close(
        self,
        session: GrantedSession,
        started: float,
        pgn: str | None,
        koppelsleutel: str | None,
        aanvraagdatum: dt.date | str | None,
    ) -> TransferRecord:
        record = TransferRecord(session.sessie_id, ResultCode.OVERDRACHT_MISLUKT)
        record.steps.append(
            TransferStep("doel → TC", "overdrachtRequest", _GRANTED, 201, _ms_since(started))
        )
        attempts: list[tuple[BronEndpoint, FetchResult]] = []
        for endpoint in session.bron_endpoints:
            fetched = await self.fetch_dossier(
                session.sessie_id,
                endpoint.routeringskenmerk,
                pgn,
                aanvraagdatum,
                koppelsleutel=koppelsleutel,
            )
            attempts.append((endpoint, fetched))
            record.fetch = fetched
            record.steps.append(_fetch_step(endpoint, fetched))
            if fetched.succeeded:
                break
        if attempts:  # the TC never grants a session without an endpoint to ask
            await self._close_transfer(record, attempts)
        return record

    async def _close_transfer(
        self, record: TransferRecord, attempts: list[tuple[BronEndpoint, FetchResult]]
    ) -> None:
        record.resultaat = best_result(fetched.closing_result for _, fetched in attempts)
        # The afmelding names the endpoint that gave the best result.
        best_endpoint = next(e for e, f in attempts if f.closing_result is record.resultaat)
        started = time.perf_counter()
        await self.close(record.sessie_id, record.resultaat, best_endpoint.routeringskenmerk)
        record.steps.append(
            TransferStep("doel → TC", "afmeldingRequest", record.resultaat, 200, _ms_since(started))
        )

    # --- plumbing -----------------------------------------------------------------------------

    async def _post_json(
        self,
        path: str,
        body: Mapping[str, Any],
        *,
        expect: int,
        headers: Mapping[str, str] | None = None,
    ) -> dict[str, Any]:
        try:
            response = await self._client.post(path, json=body, headers=headers)
        except httpx.TransportError as exc:
            raise TrafficCenterUnreachable(
                f"{path}: {type(exc).__name__}: {exc}",
                timed_out=isinstance(exc, httpx.ReadTimeout),
            ) from exc
        if response.status_code != expect:
            code, detail = _problem_of(response.content)
            raise TrafficCenterRefused(
                response.status_code, code, detail, retry_after=retry_after_of(response)
            )
        answer = response.json()
        if not isinstance(answer, dict):
            raise TrafficCenterRefused(response.status_code, "OngeldigAntwoord", "not an object")
        return answer


def new_idempotency_key() -> str:
    """A key for one session open: random, so it never names a pupil (the TC refuses a key
    that looks like a PGN) and never meets another open's key."""
    return str(uuid.uuid4())


def retry_after_of(response: httpx.Response) -> float | None:
    """Retry-After in seconds (RFC 9110 §10.2.3: the TC sends delay-seconds); None when
    absent or not a number of seconds."""
    value = response.headers.get("Retry-After", "").strip()
    return float(value) if value.isdigit() else None


def _retry_wait(failed: DoelError) -> float | None:
    """How long to wait before the same open again; None: do not retry it."""
    if isinstance(failed, TrafficCenterUnreachable):
        return 0.0 if failed.timed_out else None
    if not isinstance(failed, TrafficCenterRefused) or failed.status not in _RETRY_STATUSES:
        return None
    if failed.retry_after is None or failed.retry_after > MAX_RETRY_AFTER_SECONDS:
        return None
    return failed.retry_after


async def _read_answer(
    response: httpx.Response, sink: ChunkSink | None, started: float
) -> FetchResult:
    transactie_id = response.headers.get(TRANSACTION_HEADER)
    vrijgave = response.headers.get(RELEASE_HEADER)
    if response.status_code != 200:
        code, detail = _problem_of(await _read_limited(response))
        return FetchResult(
            status=response.status_code,
            resultaat=code,
            bytes=0,
            sha256=None,
            transactie_id=transactie_id,
            vrijgave=vrijgave,
            elapsed_ms=_ms_since(started),
            complete=True,
            detail=detail,
        )
    digest, size, complete, detail = hashlib.sha256(), 0, True, None
    try:
        # Raw: the bytes that travelled, as the TC hashed and counted them. A body the bron
        # sent with a Content-Encoding reaches the sink still encoded, as that header says.
        async for chunk in response.aiter_raw():
            digest.update(chunk)
            size += len(chunk)
            if sink is not None:
                sink.write(chunk)
    except httpx.TransportError as exc:
        # The stream broke: what arrived is not the dossier, whatever its size.
        complete, detail = False, type(exc).__name__
    return FetchResult(
        status=200,
        resultaat=ResultCode.OVERDRACHT_GESLAAGD if complete else ResultCode.OVERDRACHT_MISLUKT,
        bytes=size,
        sha256=digest.hexdigest(),
        transactie_id=transactie_id,
        vrijgave=vrijgave,
        elapsed_ms=_ms_since(started),
        complete=complete,
        detail=detail,
    )


async def _read_limited(response: httpx.Response) -> bytes:
    body = bytearray()
    try:
        async for chunk in response.aiter_bytes():
            body += chunk
            if len(body) > _MAX_PROBLEM_BYTES:
                break
    except httpx.TransportError:
        pass  # a refusal whose body broke off is still a refusal; its code may be lost
    return bytes(body)


def _problem_of(body: bytes) -> tuple[str, str | None]:
    """The problem+json ``code`` and ``detail``; OverdrachtMislukt when there is no problem."""
    try:
        problem = json.loads(body)
    except ValueError:
        return ResultCode.OVERDRACHT_MISLUKT, None
    if not isinstance(problem, dict) or not isinstance(problem.get("code"), str):
        return ResultCode.OVERDRACHT_MISLUKT, None
    detail = problem.get("detail")
    return problem["code"], detail if isinstance(detail, str) else None


def _fetch_step(endpoint: BronEndpoint, fetched: FetchResult) -> TransferStep:
    return TransferStep(
        actor="doel → TC → bron",
        action="documentRequest",
        resultaat=fetched.resultaat,
        status=fetched.status,
        elapsed_ms=fetched.elapsed_ms,
        routeringskenmerk=endpoint.routeringskenmerk,
        bytes=fetched.bytes,
        sha256=fetched.sha256,
    )


def _ms_since(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 1)
