"""The broker: decides every exchange. Grants, checks and closes sessions, answers the endpoint
overview, and authorises each relay, returning an authorised value the relay acts on.

Nobody else reads the store to re-check a rule: the relays get what they may act on from here.
The rules are numbered as in docs/rules.md.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields, replace
from typing import Protocol

import anyio

from traffic_center.broker.caller import Caller, SessionAsked, SessionFound
from traffic_center.domain.errors import (
    AanleverpuntNietActief,
    FeedbackAlreadyGiven,
    KoppelsleutelNotFound,
    NotificationNotRequested,
    OnbekendAanleverpunt,
    ResultNotWitnessed,
    SearchKeyAmbiguous,
    SessieAfwijkend,
    SessieReedsAfgemeld,
    SessionNotFound,
    TrafficCenterError,
    WrongRole,
)
from traffic_center.domain.identifiers import (
    Overdrachtsoort,
    new_koppelsleutel,
    parse_brin,
    parse_endpoint_kind,
    parse_koppelsleutel,
    parse_overdrachtsoort,
    parse_routeringskenmerk,
    parse_sessie_id,
    parse_zoeksleutel,
    refuse_clear_pupil_numbers,
)
from traffic_center.domain.models import Endpoint, School, Session, SessionState, SwvLink
from traffic_center.domain.results import ResultCode, parse_closing_result
from traffic_center.domain.rules import (
    GrantRequest,
    bron_endpoints_for,
    check_doel_kind,
    check_search_key_kind,
    check_swv_pair,
    is_bron_endpoint,
    swv_bron_for,
)
from traffic_center.domain.sessions import SessionCheck, close, ensure_open, verify_check
from traffic_center.store.store import Store

# How long a close waits for a relay in its session that has sent its last byte but not yet
# written its final record (milliseconds, normally); and how often it looks.
DELIVERY_SETTLE_SECONDS = 5.0
DELIVERY_SETTLE_POLL_SECONDS = 0.02


class PartyNote(Protocol):
    """Told the session as soon as it is known to be the caller's, so a refusal after that
    point is still recorded against the session and its parties (the audit entry)."""

    def concerns(self, session: Session, *, bron_routeringskenmerk: str | None = None) -> None: ...

    def between(self, *, bron: Endpoint, doel: Endpoint) -> None:
        """The parties of an exchange outside a session (the SWV flow)."""
        ...


@dataclass(frozen=True, slots=True)
class BrokerLimits:
    session_ttl: dt.timedelta


@dataclass(frozen=True, slots=True)
class SessionRequest:
    """overdrachtRequest, as received; validated by the broker."""

    bron_brin: str
    bron_routeringskenmerk: str | None
    overdrachtsoort: str
    zoeksleutel: str | None
    koppelsleutel: str | None


@dataclass(frozen=True, slots=True)
class CheckRequest:
    """sessiecontroleRequest, as received: the zoeksleutel, or for an swv-dossier the
    koppelsleutel."""

    doel_brin: str
    doel_routeringskenmerk: str
    overdrachtsoort: str
    zoeksleutel: str | None
    koppelsleutel: str | None = None


@dataclass(frozen=True, slots=True)
class GrantedSession:
    session: Session
    bron_endpoints: Sequence[Endpoint]
    replayed: bool


@dataclass(frozen=True, slots=True)
class OpenMarks:
    """One overdrachtRequest, recognisable again without keeping it (rule 7): its
    Idempotency-Key and the request itself, as keyed hashes."""

    idempotency_key_hmac: str | None
    request_hmac: str


@dataclass(frozen=True, slots=True)
class DossierRequest:
    """documentRequest as the doel sends it: the zoeksleutel, or for an swv-dossier the
    koppelsleutel."""

    routeringskenmerk: str
    zoeksleutel: str | None
    aanvraagdatum: dt.date | None
    koppelsleutel: str | None = None


@dataclass(frozen=True, slots=True)
class AuthorisedDossier:
    """A documentRequest the broker allowed: the relay forwards it to ``endpoint``."""

    session: Session
    endpoint: Endpoint
    bron_school: School


@dataclass(frozen=True, slots=True)
class NotificationRequest:
    """meldenNotificatieRequest as the bron sends it."""

    sessie_id: str
    doel_routeringskenmerk: str


@dataclass(frozen=True, slots=True)
class AuthorisedNotification:
    """A notification the broker allowed: the relay delivers it to ``doel_endpoint``."""

    session: Session
    doel_endpoint: Endpoint


@dataclass(frozen=True, slots=True)
class SwvNotificationRequest:
    """meldenNotificatieRequest from a school to its samenwerkingsverband (the SWV flow)."""

    doel_routeringskenmerk: str


@dataclass(frozen=True, slots=True)
class AuthorisedSwvNotification:
    """An SWV notification the broker allowed, its triple recorded under a new koppelsleutel:
    the relay delivers it, with the koppelsleutel, to ``swv_endpoint``."""

    koppelsleutel: str
    school_endpoint: Endpoint
    swv_endpoint: Endpoint


@dataclass(frozen=True, slots=True)
class FeedbackRequest:
    """meldenTerugkoppelingRequest: the SWV's feedback for a koppelsleutel."""

    koppelsleutel: str
    terugkoppeling: str


@dataclass(frozen=True, slots=True)
class AuthorisedFeedback:
    """Feedback the broker allowed and marked as given: the relay delivers it to the school
    endpoint; if that fails, :meth:`Broker.feedback_undelivered` lets the SWV try again."""

    koppelsleutel: str
    link: SwvLink
    school_endpoint: Endpoint
    swv_endpoint: Endpoint
    claimed_at: dt.datetime


class Broker:
    def __init__(
        self,
        store: Store,
        *,
        secret: bytes,
        limits: BrokerLimits,
        clock: Callable[[], dt.datetime],
    ) -> None:
        self._store = store
        self._secret = secret
        self._limits = limits
        self._clock = clock

    # --- overzichtAanleverpunt ----------------------------------------------------------------

    async def list_endpoints(
        self,
        caller: Caller,
        *,
        brin: str | None,
        kind: str | None,
        routeringskenmerk: str | None,
    ) -> Sequence[Endpoint]:
        refuse_clear_pupil_numbers(
            [("brin", brin), ("kind", kind), ("routeringskenmerk", routeringskenmerk)]
        )
        parsed_kind = parse_endpoint_kind(kind) if kind is not None else None
        return await self._store.registry.list_endpoints(
            brin=parse_brin(brin) if brin is not None else None,
            kind=parsed_kind,
            routeringskenmerk=(
                parse_routeringskenmerk(routeringskenmerk) if routeringskenmerk else None
            ),
            active_only=True,
        )

    # --- overdrachtRequest --------------------------------------------------------------------

    async def grant(
        self,
        caller: Caller,
        request: SessionRequest,
        *,
        idempotency_key: str | None,
        note: PartyNote,
    ) -> GrantedSession:
        refuse_clear_pupil_numbers([*guarded_fields(request), ("Idempotency-Key", idempotency_key)])
        search_key_hmac = self._search_key_hmac(request)
        grant = GrantRequest(
            doel_school=caller.school,
            doel_endpoint=caller.endpoint,
            bron_brin=parse_brin(request.bron_brin),
            bron_routeringskenmerk=(
                parse_routeringskenmerk(request.bron_routeringskenmerk)
                if request.bron_routeringskenmerk is not None
                else None
            ),
            overdrachtsoort=parse_overdrachtsoort(request.overdrachtsoort),
        )
        check_search_key_kind(
            grant.overdrachtsoort, koppelsleutel=request.koppelsleutel is not None
        )
        if grant.overdrachtsoort is Overdrachtsoort.SWV_DOSSIER:
            grant = await self._swv_grant(caller, grant, search_key_hmac)
        bron_school, all_bron_endpoints = await self._store.registry.school_with_endpoints(
            grant.bron_brin
        )
        bron_endpoints = bron_endpoints_for(grant, bron_school, all_bron_endpoints)
        assert bron_school is not None
        now = self._clock()
        candidate = Session(
            sessie_id=str(uuid.uuid4()),
            doel_brin=caller.brin,
            doel_routeringskenmerk=caller.routeringskenmerk,
            doel_sector=caller.school.sector,
            bron_brin=bron_school.brin,
            bron_routeringskenmerk=grant.bron_routeringskenmerk,
            overdrachtsoort=grant.overdrachtsoort,
            search_key_hmac=search_key_hmac,
            state=SessionState.GRANTED,
            created_at=now,
            expires_at=now + self._limits.session_ttl,
        )
        session, created = await self._store.sessions.create(
            candidate,
            idempotency_key=self._idempotency_hmac(idempotency_key),
            fingerprint=self._fingerprint(request),
        )
        note.concerns(session)
        return GrantedSession(session, bron_endpoints, replayed=not created)

    def open_marks(self, request: SessionRequest, idempotency_key: str | None) -> OpenMarks:
        """The hashes the session keeps of an open, for any attempt (granted or refused)."""
        return OpenMarks(self._idempotency_hmac(idempotency_key), self._fingerprint(request))

    # --- sessiecontroleRequest ----------------------------------------------------------------

    async def check(
        self, caller: Caller, sessie_id: str, request: CheckRequest, *, note: PartyNote
    ) -> Session:
        refuse_clear_pupil_numbers(guarded_fields(request))
        session = await self._visible_session(caller, sessie_id)
        note.concerns(session, bron_routeringskenmerk=caller.routeringskenmerk)
        if not is_bron_endpoint(session, caller.endpoint):
            raise WrongRole("only the bron of the session checks it")
        label, key = _one_key(request.zoeksleutel, request.koppelsleutel)
        overdrachtsoort = parse_overdrachtsoort(request.overdrachtsoort)
        # Rule 10, as for the dossier: the key's kind must fit the overdrachtsoort asked
        # about (422), before the check compares anything with the session (409).
        check_search_key_kind(overdrachtsoort, koppelsleutel=label == "koppelsleutel")
        check = SessionCheck(
            bron_brin=caller.brin,
            bron_routeringskenmerk=caller.routeringskenmerk,
            doel_brin=parse_brin(request.doel_brin),
            doel_routeringskenmerk=parse_routeringskenmerk(request.doel_routeringskenmerk),
            overdrachtsoort=overdrachtsoort,
            search_key_hmac=self._keyed_hash(label, key),
        )
        checked = verify_check(session, check, self._clock())
        if session.state is SessionState.GRANTED and not await self._store.sessions.transition(
            checked
        ):
            await self._raise_closed(sessie_id)
        return checked

    # --- afmeldingRequest ---------------------------------------------------------------------

    async def close(
        self,
        caller: Caller,
        sessie_id: str,
        *,
        resultaat: str,
        routeringskenmerk: str,
        note: PartyNote,
        read: SessionFound | None = None,
    ) -> Session:
        """afmeldingRequest. ``read``: as ``authorise_dossier``'s."""
        refuse_clear_pupil_numbers(
            [("resultaat", resultaat), ("routeringskenmerk", routeringskenmerk)]
        )
        # The endpoint is read with the session (one read), as named: it is judged only after
        # the session, the result and the name's form are.
        session, found = await self._session_and_named(caller, sessie_id, routeringskenmerk, read)
        note.concerns(session)
        if session.doel_routeringskenmerk != caller.routeringskenmerk:
            raise WrongRole("only the doel of the session closes it")
        result = parse_closing_result(resultaat)
        result_endpoint = parse_routeringskenmerk(routeringskenmerk)
        # close() refuses a closed or expired session before the endpoint is looked at.
        closed = close(session, result=result, routeringskenmerk=result_endpoint, now=self._clock())
        if found is None or not is_bron_endpoint(session, found[0]):
            raise OnbekendAanleverpunt(f"{result_endpoint} is not an endpoint of the bron")
        note.concerns(session, bron_routeringskenmerk=result_endpoint)
        if result is ResultCode.OVERDRACHT_GESLAAGD and not await self._saw_delivery(session):
            raise ResultNotWitnessed()
        if not await self._store.sessions.transition(closed):
            await self._raise_closed(sessie_id)
        return closed

    # --- the relays: documentRequest and meldenNotificatie ------------------------------------

    def bron_endpoint_asks(self, sessie_id: str, routeringskenmerk: str) -> SessionAsked | None:
        """The session and bron endpoint a documentRequest or an afmeldingRequest names, for
        the runner to read with the caller (issue 14); None when they do not parse:
        ``authorise_dossier`` or ``close`` then reads nothing and refuses them, in its order."""
        return _asks(sessie_id, "routeringskenmerk", routeringskenmerk)

    def notification_asks(self, request: NotificationRequest) -> SessionAsked | None:
        """``bron_endpoint_asks`` for meldenNotificatieRequest: its session and doel endpoint."""
        return _asks(request.sessie_id, "doel_routeringskenmerk", request.doel_routeringskenmerk)

    async def authorise_dossier(
        self,
        caller: Caller,
        sessie_id: str,
        request: DossierRequest,
        *,
        note: PartyNote,
        read: SessionFound | None = None,
    ) -> AuthorisedDossier:
        """The relay is its own session check: doel, open session, search key, bron endpoint.

        ``read``: the session and endpoint as read with the caller a moment ago (the runner's
        ``asks``, from ``bron_endpoint_asks``); else they are read here."""
        # Not the keys: their form checks replace the guard (docs/zoeksleutel.md).
        refuse_clear_pupil_numbers([("routeringskenmerk", request.routeringskenmerk)])
        routeringskenmerk = parse_routeringskenmerk(request.routeringskenmerk)
        label, key = _one_key(request.zoeksleutel, request.koppelsleutel)
        # The session and the endpoint named in one read; the endpoint is judged only once
        # the session is known to be the caller's.
        session, named = await self._session_and_named(caller, sessie_id, routeringskenmerk, read)
        # The bron endpoint the doel named is recorded only once it is known to be the bron's:
        # else any school could be named, and would then read this transfer in GET /v1/audit.
        note.concerns(session)
        if session.doel_routeringskenmerk != caller.routeringskenmerk:
            raise WrongRole("only the doel of the session asks for its dossier")
        ensure_open(session, self._clock())
        # Rule 10: an swv-dossier is fetched with its koppelsleutel, every other with the
        # zoeksleutel; rule 4: the key must be the session's.
        check_search_key_kind(session.overdrachtsoort, koppelsleutel=label == "koppelsleutel")
        expected = self._keyed_hash(label, key)
        if not hmac.compare_digest(expected, session.search_key_hmac):
            raise SessieAfwijkend(f"the {label} is not the session's")
        if named is None or not is_bron_endpoint(session, named[0]):
            raise OnbekendAanleverpunt(f"{routeringskenmerk} is not an endpoint of the bron")
        endpoint, bron_school = named
        note.concerns(session, bron_routeringskenmerk=endpoint.routeringskenmerk)
        if not (endpoint.active and bron_school.active):
            raise AanleverpuntNietActief(f"{routeringskenmerk} is not active")
        return AuthorisedDossier(session, endpoint, bron_school)

    async def authorise_notification(
        self,
        caller: Caller,
        request: NotificationRequest,
        *,
        note: PartyNote,
        read: SessionFound | None = None,
    ) -> AuthorisedNotification:
        """Rule 6: only to the doel endpoint that asked this bron, in that very session.

        The session may have been closed since (typically with DossierNogNietGereed): that is
        the point of a notification. ``read``: as ``authorise_dossier``'s.
        """
        # A sessie_id is a UUID (parsed below); only the free-text field can hide a number.
        refuse_clear_pupil_numbers([("doel_routeringskenmerk", request.doel_routeringskenmerk)])
        doel_routeringskenmerk = parse_routeringskenmerk(request.doel_routeringskenmerk)
        if read is None:
            session, found = await self._store.sessions.get_with_endpoint(
                parse_sessie_id(request.sessie_id), doel_routeringskenmerk
            )
        else:
            session, found = read.session, read.endpoint
        # Rule 4: not yours, so it does not exist (404); the doel's own is one it may see,
        # but a notification goes from the bron (403, as on a session check).
        session = _visible_to(caller, session)
        if not is_bron_endpoint(session, caller.endpoint):
            raise WrongRole("only the bron of the session notifies its doel")
        note.concerns(session, bron_routeringskenmerk=caller.routeringskenmerk)
        if session.doel_routeringskenmerk != doel_routeringskenmerk:
            raise NotificationNotRequested(
                f"{doel_routeringskenmerk} did not ask for a dossier in session {session.sessie_id}"
            )
        if found is None or not (found[0].active and found[1].active):
            raise AanleverpuntNietActief(
                f"the doel endpoint {doel_routeringskenmerk} is not active"
            )
        return AuthorisedNotification(session, found[0])

    # --- the SWV flow (rule 10) ----------------------------------------------------------------

    async def authorise_swv_notification(
        self, caller: Caller, request: SwvNotificationRequest, *, note: PartyNote
    ) -> AuthorisedSwvNotification:
        """A school tells its SWV: issue a koppelsleutel and record the triple before the
        notification goes, so the SWV can use the koppelsleutel the moment it arrives."""
        refuse_clear_pupil_numbers([("doel_routeringskenmerk", request.doel_routeringskenmerk)])
        doel_routeringskenmerk = parse_routeringskenmerk(request.doel_routeringskenmerk)
        found = await self._store.registry.endpoint_with_school(doel_routeringskenmerk)
        if found is None:
            raise OnbekendAanleverpunt(f"{doel_routeringskenmerk} is not a registered endpoint")
        swv_endpoint, swv = found
        check_swv_pair(caller.school, caller.endpoint, swv, swv_endpoint)
        note.between(bron=caller.endpoint, doel=swv_endpoint)
        if not (swv_endpoint.active and swv.active):
            raise AanleverpuntNietActief(f"the SWV endpoint {doel_routeringskenmerk} is not active")
        koppelsleutel = new_koppelsleutel()
        await self._store.swv_links.add(
            SwvLink(
                koppelsleutel_hmac=self._keyed_hash("koppelsleutel", koppelsleutel),
                school_brin=caller.brin,
                school_routeringskenmerk=caller.routeringskenmerk,
                swv_brin=swv.brin,
                swv_routeringskenmerk=swv_endpoint.routeringskenmerk,
                created_at=self._clock(),
            )
        )
        return AuthorisedSwvNotification(koppelsleutel, caller.endpoint, swv_endpoint)

    async def authorise_feedback(
        self, caller: Caller, request: FeedbackRequest, *, note: PartyNote
    ) -> AuthorisedFeedback:
        """The SWV's feedback: only for its own recorded triple, and once."""
        refuse_clear_pupil_numbers([("terugkoppeling", request.terugkoppeling)])
        koppelsleutel = parse_koppelsleutel(request.koppelsleutel)
        link = await self._store.swv_links.get(self._keyed_hash("koppelsleutel", koppelsleutel))
        if link is None or link.swv_routeringskenmerk != caller.routeringskenmerk:
            raise KoppelsleutelNotFound()  # another SWV's koppelsleutel does not exist for it
        found = await self._store.registry.endpoint_with_school(link.school_routeringskenmerk)
        assert found is not None  # endpoints are deactivated, never deleted
        school_endpoint, school = found
        note.between(bron=school_endpoint, doel=caller.endpoint)
        if not (school_endpoint.active and school.active):
            raise AanleverpuntNietActief(
                f"the school endpoint {school_endpoint.routeringskenmerk} is not active"
            )
        claimed_at = self._clock()
        if not await self._store.swv_links.claim_feedback(link.koppelsleutel_hmac, at=claimed_at):
            raise FeedbackAlreadyGiven()
        return AuthorisedFeedback(koppelsleutel, link, school_endpoint, caller.endpoint, claimed_at)

    async def feedback_undelivered(self, authorised: AuthorisedFeedback) -> None:
        """The school never confirmed the feedback: it was not given, so it may be sent again."""
        await self._store.swv_links.release_feedback(
            authorised.link.koppelsleutel_hmac, claimed_at=authorised.claimed_at
        )

    async def _swv_grant(self, caller: Caller, grant: GrantRequest, key_hmac: str) -> GrantRequest:
        """Rule 10: the session's bron is the school endpoint of the koppelsleutel's triple."""
        check_doel_kind(grant)  # an OV endpoint is told so, not that the key is unknown
        link = await self._store.swv_links.get(key_hmac)
        bron = swv_bron_for(
            link,
            swv_endpoint=caller.endpoint,
            bron_brin=grant.bron_brin,
            named=grant.bron_routeringskenmerk,
        )
        return replace(grant, bron_routeringskenmerk=bron)

    # --- helpers ------------------------------------------------------------------------------

    def _keyed_hash(self, label: str, value: str) -> str:
        return keyed_hash(self._secret, label, value)

    def _search_key_hmac(self, request: SessionRequest) -> str:
        if (request.zoeksleutel is None) == (request.koppelsleutel is None):
            raise SearchKeyAmbiguous()
        if request.zoeksleutel is not None:
            return self._keyed_hash("zoeksleutel", parse_zoeksleutel(request.zoeksleutel))
        assert request.koppelsleutel is not None
        return self._keyed_hash("koppelsleutel", parse_koppelsleutel(request.koppelsleutel))

    def _idempotency_hmac(self, key: str | None) -> str | None:
        """Rule 7: the key is the caller's free text, so it is kept only as a keyed hash
        (a retry with the same key finds the same hash; nobody reads the key back)."""
        return None if key is None else self._keyed_hash("idempotency-key", key)

    def _fingerprint(self, request: SessionRequest) -> str:
        # Keyed, because the request holds the zoeksleutel.
        canonical = json.dumps(_values(request), sort_keys=True)
        return self._keyed_hash("request", canonical)

    async def _visible_session(self, caller: Caller, sessie_id: str) -> Session:
        return _visible_to(caller, await self._store.sessions.get(parse_sessie_id(sessie_id)))

    async def _session_and_named(
        self, caller: Caller, sessie_id: str, routeringskenmerk: str, read: SessionFound | None
    ) -> tuple[Session, tuple[Endpoint, School] | None]:
        """The session, if the caller may see it, and the endpoint ``routeringskenmerk`` with
        its school: as the runner read them with the caller (``read``), or in one read now."""
        if read is not None:
            return _visible_to(caller, read.session), read.endpoint
        session, found = await self._store.sessions.get_with_endpoint(
            parse_sessie_id(sessie_id), routeringskenmerk
        )
        return _visible_to(caller, session), found

    async def _saw_delivery(self, session: Session) -> bool:
        """ "Closing a session" (docs/rules.md): OverdrachtGeslaagd only where the TC relayed a
        complete dossier in this session, or, peer to peer, where the bron checked the session
        and nothing was relayed in it (then the TC cannot see the transfer itself)."""
        audit = self._store.audit
        if await self._delivery_settled(session.sessie_id):
            return True
        return session.state is SessionState.CHECKED and not await audit.relayed_in(
            session.sessie_id
        )

    async def _delivery_settled(self, sessie_id: str) -> bool:
        """Whether a complete dossier was delivered; a relay still ending is waited for.

        The relay's final record is written just after the doel has the last byte, so a doel
        that closes at once can get here first (on this node or another): while that relay is
        still open, look again for up to ``DELIVERY_SETTLE_SECONDS``."""
        audit = self._store.audit
        deadline = time.monotonic() + DELIVERY_SETTLE_SECONDS
        while not await audit.delivered_in(sessie_id):
            if not await audit.relay_open_in(sessie_id):
                return await audit.delivered_in(sessie_id)  # it may have ended in between
            if time.monotonic() >= deadline:
                return False
            await anyio.sleep(DELIVERY_SETTLE_POLL_SECONDS)
        return True

    async def _raise_closed(self, sessie_id: str) -> None:
        """Lost a race with another node: report what the session became."""
        current = await self._store.sessions.get(sessie_id)
        assert current is not None
        ensure_open(current, self._clock())
        raise SessieReedsAfgemeld()


def keyed_hash(secret: bytes, label: str, value: str) -> str:
    """Rule 7: the search key is kept only as an HMAC under the server secret. Public so the
    qualification can find a test pupil's sessions again from its zoeksleutel."""
    message = f"{label}:{value}".encode()
    return hmac.new(secret, message, hashlib.sha256).hexdigest()


def _asks(sessie_id: str, field: str, routeringskenmerk: str) -> SessionAsked | None:
    """The session and endpoint a relay request names, parsed; None when they do not parse
    (the broker refuses them then, in its order, as without the read ahead)."""
    try:
        refuse_clear_pupil_numbers([(field, routeringskenmerk)])
        return SessionAsked(parse_sessie_id(sessie_id), parse_routeringskenmerk(routeringskenmerk))
    except TrafficCenterError:
        return None


def _visible_to(caller: Caller, session: Session | None) -> Session:
    if session is None or not (
        session.doel_routeringskenmerk == caller.routeringskenmerk
        or is_bron_endpoint(session, caller.endpoint)
    ):
        # Rule 4: to anyone else the session does not exist; no hint either way.
        raise SessionNotFound()
    return session


def _one_key(zoeksleutel: str | None, koppelsleutel: str | None) -> tuple[str, str]:
    """The one key a check or documentRequest names, checked for its form, and which it is."""
    if (zoeksleutel is None) == (koppelsleutel is None):
        raise SearchKeyAmbiguous()
    if zoeksleutel is not None:
        return "zoeksleutel", parse_zoeksleutel(zoeksleutel)
    assert koppelsleutel is not None
    return "koppelsleutel", parse_koppelsleutel(koppelsleutel)


def guarded_fields(request: SessionRequest | CheckRequest) -> list[tuple[str, str | None]]:
    """The fields the PGN guard reads: all but the zoeksleutel, whose form check replaces it
    (a digit run inside a well-formed zoeksleutel is chance, not a pupil number)."""
    return [(name, value) for name, value in _values(request).items() if name != "zoeksleutel"]


def _values(request: SessionRequest | CheckRequest) -> dict[str, str | None]:
    """``asdict(request)`` for these requests of strings alone, without its deep copy and
    its fields() at every call (twice per session opened, issue 14)."""
    names = _SESSION_REQUEST if isinstance(request, SessionRequest) else _CHECK_REQUEST
    return {name: getattr(request, name) for name in names}


_SESSION_REQUEST = tuple(field.name for field in fields(SessionRequest))
_CHECK_REQUEST = tuple(field.name for field in fields(CheckRequest))
