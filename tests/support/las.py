"""Schools with a running reference LAS, registered at a Traffic Center under test."""

from __future__ import annotations

import asyncio
import secrets
import string
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import uvicorn

from tests.support.server import TrafficCenterUnderTest
from tests.support.world import Party
from traffic_center.admin.registry import new_endpoint
from traffic_center.domain.identifiers import Sector
from traffic_center.las.config import LasConfig
from traffic_center.las.doel import ClientTLS
from traffic_center.las.server import LasServer, uvicorn_config


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


class AppServer:
    """Any ASGI app behind the same mTLS listener as the reference LAS, in a thread."""

    def __init__(self, config: LasConfig, app: Any) -> None:
        self.config = config
        self._server = uvicorn.Server(uvicorn_config(config, app))
        self._server.capture_signals = _no_signals  # type: ignore[method-assign]
        self._thread = threading.Thread(
            target=lambda: asyncio.run(self._server.serve()), daemon=True
        )

    def start(self) -> AppServer:
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("the app server did not start")
            time.sleep(0.01)
        return self

    @property
    def url(self) -> str:
        port = self._server.servers[0].sockets[0].getsockname()[1]
        return f"https://127.0.0.1:{port}{self.config.path}"

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=15)


def _no_signals() -> Any:
    import contextlib

    return contextlib.nullcontext()


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
        self, sector: str, *, las_sector: str | None = None, notify_after: float = 0.2
    ) -> LasParty:
        """A school whose endpoint is a reference LAS (``las_sector``: what the LAS believes)."""
        party = await self.tc.world.school(sector, register_endpoint=False)
        config = await self.config_for(
            party, sector=las_sector or sector, notify_after=notify_after
        )
        server = await asyncio.to_thread(LasServer(config).start)
        self.servers.append(server)
        await self.register(party, server.url)
        return LasParty(party, server)

    async def school_with_app(self, sector: str, app: Any) -> tuple[Party, AppServer]:
        """A school whose endpoint is ``app``, for answers the reference LAS never gives."""
        party = await self.tc.world.school(sector, register_endpoint=False)
        config = await self.config_for(party, sector=sector, notify_after=0)
        server = await asyncio.to_thread(AppServer(config, app).start)
        self.servers.append(server)
        await self.register(party, server.url)
        return party, server

    async def register(self, party: Party, url: str) -> None:
        await self.tc.registry.add_endpoint(
            new_endpoint(routeringskenmerk=party.routeringskenmerk, brin=party.brin, url=url)
        )

    async def stop(self) -> None:
        await asyncio.gather(*(asyncio.to_thread(s.stop) for s in self.servers))


def letters(count: int) -> str:
    """A random token without digits: a run of digits could look like a BSN (and be refused)."""
    return "".join(secrets.choice(string.ascii_letters) for _ in range(count))


def scenario_key(scenario: str, size: int | None = None, *, marker: str | None = None) -> str:
    """A zoeksleutel steering the reference LAS (test school 00YY), unique per call."""
    parts = ["00YY", scenario]
    if size is not None:
        parts.append(str(size))
    parts.append(f"m{marker}" if marker else "x" + letters(12))
    if marker:
        parts.append("x" + letters(8))
    return "-".join(parts)
