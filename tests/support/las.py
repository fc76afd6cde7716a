"""Schools with a running reference LAS, registered at a Traffic Center under test."""

from __future__ import annotations

import asyncio
import secrets
import string
from dataclasses import dataclass, field
from typing import Any

from tests.support.pupils import new_pgn
from tests.support.server import TrafficCenterUnderTest
from tests.support.world import Party
from traffic_center.admin.registry import new_endpoint
from traffic_center.domain.identifiers import Sector
from traffic_center.las.config import LasConfig
from traffic_center.las.doel import ClientTLS
from traffic_center.las.pupils import TEST_PUPILS, TEST_SCHEME_KEY, Roster
from traffic_center.las.server import LasServer, uvicorn_config
from traffic_center.server.embedded import QuietServer, ServerThread


@dataclass
class LasParty:
    """A school endpoint whose registered URL is a reference LAS we run."""

    party: Party
    server: LasServer

    @property
    def routeringskenmerk(self) -> str:
        return self.party.routeringskenmerk

    @property
    def brin(self) -> str:
        return self.party.brin


def fixed_answer(
    status: int,
    headers: list[tuple[str, str]],
    body: bytes,
    *,
    requests_seen: list[dict[str, str]] | None = None,
) -> Any:
    """An ASGI app answering every request alike: for answers the reference LAS never gives.

    ``requests_seen`` collects each request's headers (lower-case names).
    """
    raw_headers = [(name.encode(), value.encode()) for name, value in headers]

    async def app(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        if requests_seen is not None:
            requests_seen.append({k.decode().lower(): v.decode() for k, v in scope["headers"]})
        await send({"type": "http.response.start", "status": status, "headers": raw_headers})
        await send({"type": "http.response.body", "body": body})

    return app


class AppServer:
    """Any ASGI app behind the same mTLS listener as the reference LAS, in a thread."""

    def __init__(self, config: LasConfig, app: Any) -> None:
        self.config = config
        self._server = QuietServer(uvicorn_config(config, app))
        self._thread = ServerThread(self._server, name="app")

    def start(self) -> AppServer:
        self._thread.start(timeout=10)
        return self

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self._server.bound_port}{self.config.path}"

    def stop(self) -> None:
        self._thread.stop(timeout=15)


@dataclass
class LasWorld:
    """Makes LAS-backed schools on one Traffic Center and stops their servers afterwards."""

    tc: TrafficCenterUnderTest
    servers: list[LasServer | AppServer] = field(default_factory=list)

    async def config_for(self, party: Party, *, sector: str, notify_after: float) -> LasConfig:
        prefix = self.tc.settings.home / f"las-{party.routeringskenmerk}"
        await self.tc.certificates.issue_server(hosts=["127.0.0.1"], out=prefix)
        return LasConfig(
            cert=prefix.with_name(prefix.name + ".pem"),
            key=prefix.with_name(prefix.name + ".key"),
            ca=self.tc.ca_pem,
            sector=Sector(sector),
            brin=party.brin,
            tc_url=self.tc.url,
            client_tls=ClientTLS(party.cert, party.key, self.tc.ca_pem),
            notify_after=notify_after,
        )

    async def school(
        self,
        sector: str,
        *,
        las_sector: str | None = None,
        notify_after: float = 0.2,
        kind: str = "OV",
    ) -> LasParty:
        """A school whose endpoint is a reference LAS (``las_sector``: what the LAS believes;
        ``kind`` SWV with sector SWV: a samenwerkingsverband's SWV endpoint)."""
        party = await self.tc.world.school(sector, register_endpoint=False)
        config = await self.config_for(
            party, sector=las_sector or sector, notify_after=notify_after
        )
        server = await asyncio.to_thread(LasServer(config, pupils=PUPILS).start)
        self.servers.append(server)
        await self.register(party, server.url, kind=kind)
        return LasParty(party, server)

    async def school_with_app(self, sector: str, app: Any) -> tuple[Party, AppServer]:
        """A school whose endpoint is ``app``, for answers the reference LAS never gives."""
        party = await self.tc.world.school(sector, register_endpoint=False)
        config = await self.config_for(party, sector=sector, notify_after=0)
        server = await asyncio.to_thread(AppServer(config, app).start)
        self.servers.append(server)
        await self.register(party, server.url)
        return party, server

    async def register(self, party: Party, url: str, *, kind: str = "OV") -> None:
        await self.tc.registry.add_endpoint(
            new_endpoint(
                routeringskenmerk=party.routeringskenmerk, brin=party.brin, url=url, kind=kind
            )
        )

    async def stop(self) -> None:
        await asyncio.gather(*(asyncio.to_thread(s.stop) for s in self.servers))


# One pupil administration behind every reference LAS the tests run in this process, so a test
# can enroll a pupil without knowing which school will be asked (as each once read a scenario
# from the zoeksleutel itself).
PUPILS = Roster(TEST_SCHEME_KEY, TEST_PUPILS)


def letters(count: int) -> str:
    """A random token without digits: a run of digits could look like a BSN (and be refused)."""
    return "".join(secrets.choice(string.ascii_letters) for _ in range(count))


def scenario_key(scenario: str, size: int | None = None, *, marker: str | None = None) -> str:
    """The zoeksleutel of a new pupil of every reference LAS these tests run, whose dossier
    request gets ``scenario`` (``"onbekend"``: a pupil no LAS holds)."""
    pgn = new_pgn()
    if scenario == "onbekend":
        return PUPILS.zoeksleutel(pgn)
    text = scenario if size is None else f"{scenario}-{size}"
    return PUPILS.enroll(pgn, f"{text}-m{marker}" if marker else text)
