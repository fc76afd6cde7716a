"""The bron side of the reference LAS: the two routes the Traffic Center calls.

``POST {path}/dossier`` answers a relayed documentRequest with a streamed XML dossier or a
problem+json result code; ``POST {path}/notification`` takes a relayed notificatieRequest
(on an SWV endpoint: with a koppelsleutel); ``POST {path}/terugkoppeling`` takes an SWV's
feedback. Only the TC's relay certificate may call any of them. In the SWV flow this LAS is
the school: configured ``swv_meldingen`` (PGN → SWV endpoint) are notified at start-up, and a
dossier request by koppelsleutel is answered for the pupil it was issued for. Which answer a dossier request gets is up to
the pupil whose zoeksleutel it names: a file ``<PGN>.xml`` in the dossiers directory, else the
pupil's scenario (see :mod:`traffic_center.las.pupils` and :mod:`traffic_center.las.scenarios`).

The state it keeps lives in :mod:`traffic_center.las.state`, request parsing and problems in
:mod:`traffic_center.las.messages`, the response bodies in :mod:`traffic_center.las.streams`.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime as dt
import math
import re
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Coroutine, Mapping
from pathlib import Path
from typing import Any

import httpx
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from traffic_center.domain.errors import InvalidInput
from traffic_center.domain.las_contract import (
    DOSSIER_PATH,
    FEEDBACK_PATH,
    NOTIFICATION_PATH,
    RELEASE_HEADER,
    TRANSACTION_HEADER,
)
from traffic_center.domain.results import ResultCode
from traffic_center.domain.rules import ParentRelease, required_release
from traffic_center.las.config import LasConfig
from traffic_center.las.dossier import (
    GENERATED_SPEC,
    DossierTemplate,
    generated_dossier,
    measured_dossier,
    realistic_dossier,
)
from traffic_center.las.gegevensset import DossierSpec
from traffic_center.las.messages import (
    CALLER_REFUSED,
    INVALID_INPUT,
    DossierRequest,
    is_relay_caller,
    parse_dossier_request,
    parse_feedback_request,
    parse_notification_request,
    problem,
    read_json_body,
    refusal_problem,
)
from traffic_center.las.notifier import TcNotifier
from traffic_center.las.pupils import TEST_PUPILS, Roster
from traffic_center.las.scenarios import (
    NOT_FOUND,
    NOT_READY,
    REFUSALS,
    UNKNOWN,
    Refusal,
    Scenario,
    ScenarioKind,
)
from traffic_center.las.state import (
    DossierCounters,
    NotificationInbox,
    PendingDossier,
    ReadinessBook,
    ReceivedFeedback,
    ReceivedNotification,
    SwvCases,
)
from traffic_center.las.streams import (
    DossierStream,
    broken_off,
    chunks_of,
    file_chunks,
    until_disconnected,
)

# A dossier file is named by the pupil's number: the bron derives its zoeksleutel to match.
_PGN_FILE = re.compile(r"[0-9]{9}\.xml")
# trickle: slow enough that a client can hang up mid-stream, fast enough for a test.
TRICKLE_CHUNK_BYTES = 1024
TRICKLE_INTERVAL_SECONDS = 0.05

Event = dict[str, object]
EventSink = Callable[[Event], None]


# --- the application -------------------------------------------------------------------------


class ReferenceLas:
    """The bron endpoint's state and its ASGI app (``.app``). Build one per server.

    ``pupils``: a roster shared with other endpoints (one school's administration behind
    several endpoints); by default test school 00YY's pupils and the configured ones.
    """

    def __init__(
        self,
        config: LasConfig,
        *,
        on_event: EventSink | None = None,
        tc_transport: httpx.AsyncBaseTransport | None = None,
        pupils: Roster | None = None,
    ) -> None:
        self.config = config
        if pupils is None:
            pupils = Roster(config.scheme_key, {**TEST_PUPILS, **config.pupils})
        self.pupils = pupils
        self.counters = DossierCounters()
        self.notifications = NotificationInbox()
        self.swv_cases = SwvCases()
        self._emit: EventSink = on_event or (lambda event: None)
        self._readiness = ReadinessBook()
        self._tasks: set[asyncio.Task[None]] = set()
        self._notifier = self._build_notifier(tc_transport)
        self.app = Starlette(
            routes=[
                Route(config.path + DOSSIER_PATH, self._dossier, methods=["POST"]),
                Route(config.path + NOTIFICATION_PATH, self._notification, methods=["POST"]),
                Route(config.path + FEEDBACK_PATH, self._feedback, methods=["POST"]),
            ],
            exception_handlers={HTTPException: _http_problem},
            lifespan=self._lifespan,
        )

    def _build_notifier(self, transport: httpx.AsyncBaseTransport | None) -> TcNotifier | None:
        # Without a TC to tell, a nietgereed dossier just becomes ready.
        if self.config.tc_url is None or (self.config.client_tls is None and transport is None):
            return None
        return TcNotifier(self.config.tc_url, tls=self.config.client_tls, transport=transport)

    @contextlib.asynccontextmanager
    async def _lifespan(self, app: Starlette) -> AsyncIterator[None]:
        for pgn, swv_routeringskenmerk in self.config.swv_meldingen.items():
            self._background(self._melden_swv(pgn, swv_routeringskenmerk))
        try:
            yield
        finally:
            for task in self._tasks:
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
            if self._notifier is not None:
                await self._notifier.aclose()

    # --- routes -------------------------------------------------------------------------------

    async def _dossier(self, request: Request) -> Response:
        if not is_relay_caller(request):
            return self._refuse(403, CALLER_REFUSED, "Only the Traffic Center relay may call")
        try:
            ask = parse_dossier_request(await read_json_body(request), request.headers)
        except InvalidInput as exc:
            return self._refuse(422, INVALID_INPUT, "The request is not valid", exc.detail)
        self.counters.start()
        try:
            return await self._answer(ask, request)
        except BaseException:
            # No response to report the end: count it here (a stream reports its own end).
            self.counters.finish(completed=False)
            raise

    async def _notification(self, request: Request) -> Response:
        if not is_relay_caller(request):
            return self._refuse(403, CALLER_REFUSED, "Only the Traffic Center relay may call")
        try:
            note = parse_notification_request(await read_json_body(request), request.headers)
        except InvalidInput as exc:
            return self._refuse(422, INVALID_INPUT, "The request is not valid", exc.detail)
        received = ReceivedNotification(
            sessie_id=note.sessie_id,
            bron_brin=note.bron_brin,
            bron_routeringskenmerk=note.bron_routeringskenmerk,
            transactie_id=request.headers.get(TRANSACTION_HEADER),
            received_at=dt.datetime.now(dt.UTC),
            koppelsleutel=note.koppelsleutel,
        )
        self.notifications.record(received)
        self._emit(
            {
                "event": "notification",
                "sessie_id": note.sessie_id,
                "koppelsleutel": note.koppelsleutel,
                "bron_brin": note.bron_brin,
                "bron_routeringskenmerk": note.bron_routeringskenmerk,
            }
        )
        return JSONResponse({"resultaat": ResultCode.NOTIFICATIE_ONTVANGEN.value})

    async def _feedback(self, request: Request) -> Response:
        """The SWV's feedback on a koppelsleutel this school was issued (the SWV flow)."""
        if not is_relay_caller(request):
            return self._refuse(403, CALLER_REFUSED, "Only the Traffic Center relay may call")
        try:
            feedback = parse_feedback_request(await read_json_body(request))
        except InvalidInput as exc:
            return self._refuse(422, INVALID_INPUT, "The request is not valid", exc.detail)
        self.swv_cases.record_feedback(
            ReceivedFeedback(
                koppelsleutel=feedback.koppelsleutel,
                swv_brin=feedback.swv_brin,
                swv_routeringskenmerk=feedback.swv_routeringskenmerk,
                transactie_id=request.headers.get(TRANSACTION_HEADER),
                received_at=dt.datetime.now(dt.UTC),
            )
        )
        # Metadata only: the feedback's text stays out of the log.
        self._emit(
            {
                "event": "terugkoppeling",
                "koppelsleutel": feedback.koppelsleutel,
                "swv_brin": feedback.swv_brin,
                "swv_routeringskenmerk": feedback.swv_routeringskenmerk,
            }
        )
        return JSONResponse({"resultaat": ResultCode.TERUGKOPPELING_ONTVANGEN.value})

    def _refuse(self, status: int, code: str, title: str, detail: str | None = None) -> Response:
        self._emit({"event": "refused", "status": status, "resultaat": code})
        return problem(status, code, title, detail)

    # --- answering a dossier request ----------------------------------------------------------

    async def _answer(self, ask: DossierRequest, request: Request) -> Response:
        refused = await self._check_session(ask)
        if refused is not None:
            return refused
        if ask.koppelsleutel is not None:
            # The SWV flow: the koppelsleutel stands for the pupil this school notified about.
            zoeksleutel = self.swv_cases.zoeksleutel_for(ask.koppelsleutel)
            if zoeksleutel is None:
                return self._refused(ask, UNKNOWN, NOT_FOUND)
            ask = dataclasses.replace(ask, zoeksleutel=zoeksleutel)
        assert ask.zoeksleutel is not None  # the request named exactly one key
        file = self._dossier_file(ask.zoeksleutel)
        if file is not None:
            size = file.stat().st_size
            return self._stream(ask, "bestand", file_chunks(file), size, self._release(ask))
        scenario = self.pupils.scenario_for(ask.zoeksleutel)
        if scenario.kind is ScenarioKind.HANGT:
            return await self._hang(ask, request)
        if scenario.kind is ScenarioKind.NIET_GEREED and not self._ready(ask):
            return self._refused(ask, scenario, NOT_READY, headers=self._retry_after())
        if scenario.kind in REFUSALS:
            return self._refused(ask, scenario, REFUSALS[scenario.kind])
        return self._serve(ask, scenario)

    async def _check_session(self, ask: DossierRequest) -> Response | None:
        """Ask the TC whether this request fits its session; its refusal (4xx) is passed on."""
        if not self.config.check_session or self._notifier is None:
            return None
        body = {
            "doel_brin": ask.doel_brin,
            "doel_routeringskenmerk": ask.doel_routeringskenmerk,
            "overdrachtsoort": ask.overdrachtsoort.value,
        }
        if ask.zoeksleutel is not None:
            body["zoeksleutel"] = ask.zoeksleutel
        if ask.koppelsleutel is not None:
            body["koppelsleutel"] = ask.koppelsleutel
        status, code = await self._notifier.check_session(ask.sessie_id, body)
        self._emit({"event": "sessiecontrole", "sessie_id": ask.sessie_id, "status": status})
        if 400 <= status < 500:
            self.counters.finish(completed=True)
            code = code or "SessieOngeldig"
            return problem(status, code, "The Traffic Center refused the session check")
        return None

    def _serve(self, ask: DossierRequest, scenario: Scenario) -> Response:
        name, kind = scenario.kind.value, scenario.kind
        if kind in (ScenarioKind.GEREED, ScenarioKind.NIET_GEREED, ScenarioKind.ZONDER_VRIJGAVE):
            return self._realistic(ask, scenario, DossierTemplate.STANDARD)
        if kind is ScenarioKind.BIJLAGEN:
            return self._realistic(ask, scenario, DossierTemplate.ATTACHMENTS)
        assert scenario.size is not None  # every other scenario is a sized one
        release = self._release(ask)
        spec = dataclasses.replace(
            GENERATED_SPEC,
            bron_sector=self.config.sector,
            doel_sector=ask.doel_sector,
            overdrachtsoort=ask.overdrachtsoort,
            release=release,
        )
        generated = generated_dossier(scenario.size, scenario.marker, spec=spec)
        if kind is ScenarioKind.AFBREKEN:
            return self._stream(ask, name, broken_off(generated), generated.size, release)
        if kind is ScenarioKind.TRICKLE:
            slow = chunks_of(
                generated.chunks(TRICKLE_CHUNK_BYTES), interval=TRICKLE_INTERVAL_SECONDS
            )
            return self._stream(ask, name, slow, generated.size, release)
        # liegt: the same bytes, but chunked, so only counting tells the TC how big it is.
        length = None if kind is ScenarioKind.LIEGT else generated.size
        return self._stream(ask, name, chunks_of(generated.chunks()), length, release)

    def _realistic(
        self, ask: DossierRequest, scenario: Scenario, template: DossierTemplate
    ) -> Response:
        # zondervrijgave: no header, and a dossier whose inzage block says why.
        attest = scenario.kind is not ScenarioKind.ZONDER_VRIJGAVE
        release = self._release(ask) if attest else None
        spec = DossierSpec(
            brin=self.config.brin,
            bron_sector=self.config.sector,
            doel_sector=ask.doel_sector,
            overdrachtsoort=ask.overdrachtsoort,
            release=release,
        )
        measured = measured_dossier(template, spec)
        body = chunks_of(realistic_dossier(template, spec))
        return self._stream(ask, scenario.kind.value, body, measured.size, release)

    def _release(self, ask: DossierRequest) -> ParentRelease | None:
        """What this bron attests: the release the sector pair needs (domain rule 8)."""
        return required_release(self.config.sector, ask.doel_sector)

    def _stream(
        self,
        ask: DossierRequest,
        scenario: str,
        body: AsyncGenerator[bytes, None],
        length: int | None,
        release: ParentRelease | None,
    ) -> Response:
        headers: dict[str, str] = {}
        if length is not None:
            headers["Content-Length"] = str(length)
        if release is not None:
            headers[RELEASE_HEADER] = release.value

        def ended(completed: bool, sent: int) -> None:
            self.counters.finish(completed=completed)
            result = ResultCode.OVERDRACHT_GESLAAGD if completed else ResultCode.OVERDRACHT_MISLUKT
            self._emit_dossier(ask, scenario, 200, result, sent, completed)

        return DossierStream(body, headers=headers, on_end=ended)

    def _refused(
        self,
        ask: DossierRequest,
        scenario: Scenario,
        refusal: Refusal,
        *,
        headers: Mapping[str, str] | None = None,
    ) -> Response:
        self.counters.finish(completed=True)
        self._emit_dossier(ask, scenario.kind.value, refusal.status, refusal.code, 0, True)
        return refusal_problem(refusal, headers=headers)

    async def _hang(self, ask: DossierRequest, request: Request) -> Response:
        # Cancelled instead (the server stops)? Then _dossier counts the abort.
        await until_disconnected(request)
        self.counters.finish(completed=False)
        self._emit_dossier(ask, ScenarioKind.HANGT.value, None, None, 0, False)
        return Response(status_code=204)  # nobody is left to read it

    def _emit_dossier(
        self,
        ask: DossierRequest,
        scenario: str,
        status: int | None,  # None: nothing was answered
        resultaat: str | None,
        sent: int,
        completed: bool,
    ) -> None:
        # Metadata only: never the zoeksleutel, never a byte of the dossier.
        self._emit(
            {
                "event": "dossier",
                "sessie_id": ask.sessie_id,
                "transactie_id": ask.transactie_id,
                "scenario": scenario,
                "status": status,
                "resultaat": None if resultaat is None else str(resultaat),
                "bytes": sent,
                "outcome": "completed" if completed else "aborted",
            }
        )

    def _dossier_file(self, zoeksleutel: str) -> Path | None:
        """``<PGN>.xml`` in the dossiers directory, for the pupil this zoeksleutel names.

        Looked up on every request (a few HMACs per file), so a file added later is served.
        """
        if self.config.dossiers is None:
            return None
        for candidate in sorted(self.config.dossiers.glob("*.xml")):
            if (
                _PGN_FILE.fullmatch(candidate.name)
                and candidate.is_file()
                and self.pupils.zoeksleutel(candidate.stem) == zoeksleutel
            ):
                return candidate
        return None

    # --- nietgereed ---------------------------------------------------------------------------

    def _ready(self, ask: DossierRequest) -> bool:
        assert ask.zoeksleutel is not None
        pending = self._readiness.get(ask.zoeksleutel)
        if pending is None:
            pending = PendingDossier(ask.sessie_id, ask.doel_routeringskenmerk)
            self._readiness.add(ask.zoeksleutel, pending)
            self._background(self._become_ready(pending))
        return pending.ready

    def _background(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _become_ready(self, pending: PendingDossier) -> None:
        await asyncio.sleep(self.config.notify_after)
        pending.ready = True
        if self._notifier is None:
            return
        # OSO: only the doel endpoint that asked may be notified, for the session it asked in.
        status = await self._notifier.notify(pending.sessie_id, pending.doel_routeringskenmerk)
        self._emit({"event": "notified", "sessie_id": pending.sessie_id, "status": status})

    # --- the SWV flow: this LAS as the school ---------------------------------------------------

    async def _melden_swv(self, pgn: str, swv_routeringskenmerk: str) -> None:
        """Tell the SWV about this pupil's case; remember the koppelsleutel the TC issues."""
        if self._notifier is None:
            return
        status, koppelsleutel = await self._notifier.notify_swv(swv_routeringskenmerk)
        if koppelsleutel is not None:
            self.swv_cases.add(koppelsleutel, self.pupils.zoeksleutel(pgn))
        self._emit(
            {
                "event": "swv-gemeld",
                "swv_routeringskenmerk": swv_routeringskenmerk,
                "koppelsleutel": koppelsleutel,
                "status": status,
            }
        )

    def _retry_after(self) -> dict[str, str]:
        return {"Retry-After": str(max(1, math.ceil(self.config.notify_after)))}


async def _http_problem(request: Request, exc: Exception) -> Response:
    """Unknown paths and methods get problem+json too, like every other answer."""
    status = exc.status_code if isinstance(exc, HTTPException) else 500
    code = {404: "NietGevonden", 405: "MethodeNietToegestaan"}.get(status, "Fout")
    return problem(status, code, f"HTTP {status}")
