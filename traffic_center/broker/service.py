"""The broker: grants, checks and closes sessions, and answers the endpoint overview."""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import uuid
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

from traffic_center.broker.caller import Caller
from traffic_center.domain.errors import (
    OnbekendAanleverpunt,
    RateLimited,
    SearchKeyAmbiguous,
    SessieReedsAfgemeld,
    SessionNotFound,
    WrongRole,
)
from traffic_center.domain.identifiers import (
    EndpointKind,
    parse_brin,
    parse_endpoint_kind,
    parse_koppelsleutel,
    parse_overdrachtsoort,
    parse_routeringskenmerk,
    parse_sessie_id,
    parse_zoeksleutel,
    refuse_clear_pupil_numbers,
)
from traffic_center.domain.models import Endpoint, Session, SessionState
from traffic_center.domain.results import parse_closing_result
from traffic_center.domain.rules import GrantRequest, bron_endpoints_for
from traffic_center.domain.sessions import SessionCheck, close, ensure_open, verify_check
from traffic_center.store.store import Store


@dataclass(frozen=True, slots=True)
class BrokerLimits:
    session_ttl: dt.timedelta
    sessions_per_minute: int
    endpoint_lists_per_minute: int


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
    """sessiecontroleRequest, as received."""

    doel_brin: str
    doel_routeringskenmerk: str
    overdrachtsoort: str
    zoeksleutel: str


@dataclass(frozen=True, slots=True)
class GrantedSession:
    session: Session
    bron_endpoints: Sequence[Endpoint]
    replayed: bool


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
        await self._rate_limit("endpoints", caller, self._limits.endpoint_lists_per_minute)
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
        self, caller: Caller, request: SessionRequest, *, idempotency_key: str | None
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
        await self._rate_limit("sessions", caller, self._limits.sessions_per_minute)
        registry = self._store.registry
        bron_school = await registry.get_school(grant.bron_brin)
        bron_endpoints = bron_endpoints_for(
            grant, bron_school, await registry.list_endpoints(brin=grant.bron_brin)
        )
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
            idempotency_key=idempotency_key,
            fingerprint=self._fingerprint(request),
        )
        return GrantedSession(session, bron_endpoints, replayed=not created)

    # --- sessiecontroleRequest ----------------------------------------------------------------

    async def check(self, caller: Caller, sessie_id: str, request: CheckRequest) -> Session:
        refuse_clear_pupil_numbers(guarded_fields(request))
        session = await self._visible_session(caller, sessie_id)
        if not self.is_bron(caller, session):
            raise WrongRole("only the bron of the session checks it")
        check = SessionCheck(
            bron_brin=caller.brin,
            bron_routeringskenmerk=caller.routeringskenmerk,
            doel_brin=parse_brin(request.doel_brin),
            doel_routeringskenmerk=parse_routeringskenmerk(request.doel_routeringskenmerk),
            overdrachtsoort=parse_overdrachtsoort(request.overdrachtsoort),
            search_key_hmac=self.keyed_hash("zoeksleutel", parse_zoeksleutel(request.zoeksleutel)),
        )
        checked = verify_check(session, check, self._clock())
        if session.state is SessionState.GRANTED and not await self._store.sessions.transition(
            checked
        ):
            await self._raise_closed(sessie_id)
        return checked

    # --- afmeldingRequest ---------------------------------------------------------------------

    async def close(
        self, caller: Caller, sessie_id: str, *, resultaat: str, routeringskenmerk: str
    ) -> Session:
        refuse_clear_pupil_numbers(
            [("resultaat", resultaat), ("routeringskenmerk", routeringskenmerk)]
        )
        session = await self._visible_session(caller, sessie_id)
        if session.doel_routeringskenmerk != caller.routeringskenmerk:
            raise WrongRole("only the doel of the session closes it")
        result = parse_closing_result(resultaat)
        result_endpoint = parse_routeringskenmerk(routeringskenmerk)
        # close() refuses a closed or expired session before the endpoint is looked at.
        closed = close(session, result=result, routeringskenmerk=result_endpoint, now=self._clock())
        await self._ensure_bron_endpoint(session, result_endpoint)
        if not await self._store.sessions.transition(closed):
            await self._raise_closed(sessie_id)
        return closed

    # --- for the relay ------------------------------------------------------------------------

    async def session_for(self, caller: Caller, sessie_id: str) -> Session:
        """The session as the caller may see it; 404 for anyone who is not a party."""
        return await self._visible_session(caller, sessie_id)

    def keyed_hash(self, label: str, value: str) -> str:
        """Rule 7: the search key is kept only as an HMAC under the server secret."""
        message = f"{label}:{value}".encode()
        return hmac.new(self._secret, message, hashlib.sha256).hexdigest()

    # --- helpers ------------------------------------------------------------------------------

    def _search_key_hmac(self, request: SessionRequest) -> str:
        if (request.zoeksleutel is None) == (request.koppelsleutel is None):
            raise SearchKeyAmbiguous()
        if request.zoeksleutel is not None:
            return self.keyed_hash("zoeksleutel", parse_zoeksleutel(request.zoeksleutel))
        assert request.koppelsleutel is not None
        return self.keyed_hash("koppelsleutel", parse_koppelsleutel(request.koppelsleutel))

    def _fingerprint(self, request: SessionRequest) -> str:
        # Keyed, because the request holds the zoeksleutel.
        canonical = json.dumps(asdict(request), sort_keys=True)
        return self.keyed_hash("request", canonical)

    async def _visible_session(self, caller: Caller, sessie_id: str) -> Session:
        session = await self._store.sessions.get(parse_sessie_id(sessie_id))
        if session is None or not (
            session.doel_routeringskenmerk == caller.routeringskenmerk
            or self.is_bron(caller, session)
        ):
            # Design rule 4: to anyone else the session does not exist; no hint either way.
            raise SessionNotFound()
        return session

    @staticmethod
    def is_bron(caller: Caller, session: Session) -> bool:
        if session.bron_routeringskenmerk is not None:
            return session.bron_routeringskenmerk == caller.routeringskenmerk
        return session.bron_brin == caller.brin and caller.endpoint.kind is EndpointKind.OV

    async def _ensure_bron_endpoint(self, session: Session, routeringskenmerk: str) -> None:
        endpoint = await self._store.registry.get_endpoint(routeringskenmerk)
        if endpoint is None or endpoint.brin != session.bron_brin:
            raise OnbekendAanleverpunt(f"{routeringskenmerk} is not an endpoint of the bron")

    async def _raise_closed(self, sessie_id: str) -> None:
        """Lost a race with another node: report what the session became."""
        current = await self._store.sessions.get(sessie_id)
        assert current is not None
        ensure_open(current, self._clock())
        raise SessieReedsAfgemeld()

    async def _rate_limit(self, what: str, caller: Caller, per_minute: int) -> None:
        now = self._clock()
        window_start = int(now.timestamp()) // 60 * 60
        hits = await self._store.rate_limits.hit(
            f"{what}:{caller.routeringskenmerk}", window_start=window_start
        )
        if hits > per_minute:
            retry_after = max(1, window_start + 60 - int(now.timestamp()))
            raise RateLimited(
                f"at most {per_minute} {what} requests a minute per endpoint",
                retry_after_seconds=retry_after,
            )


def guarded_fields(request: SessionRequest | CheckRequest) -> list[tuple[str, str | None]]:
    """The fields the PGN guard reads: all but the zoeksleutel, whose form check replaces it
    (a digit run inside a well-formed zoeksleutel is chance, not a pupil number)."""
    return [(name, value) for name, value in asdict(request).items() if name != "zoeksleutel"]
