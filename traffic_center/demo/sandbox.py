"""A whole OSO world on loopback: a CA, a Traffic Center and one reference LAS per school.

Everything lives under one directory, made for the occasion: the CA, every certificate and
key, the SQLite store and each process's log. The demo and the benchmarks build one, use it,
and stop it; nothing keeps running afterwards.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from traffic_center.admin.sandbox import (
    DEV_SCHOOLS,
    DEV_SWV,
    PROVISIONAL_LAS_URL,
    SandboxBuilder,
    SandboxSchool,
)
from traffic_center.admin.store import open_signed_store, open_store, utc_now
from traffic_center.demo.processes import ChildProcess, child_env, free_port
from traffic_center.domain.audit import AuditRecord
from traffic_center.las.doel import ClientTLS, DoelClient
from traffic_center.pki.ca import CA_CERT_FILE, CertificateAuthority
from traffic_center.settings import Settings

READY_SECONDS = 30.0

# The demo's parties: a primary school (bron) and a secondary school (doel), PO→VO; with
# ``swv_pupil`` also the bron's samenwerkingsverband (the SWV flow).
BRON, DOEL = DEV_SCHOOLS[:2]
SWV = DEV_SWV


@dataclass
class LasProcess:
    school: SandboxSchool
    directory: Path
    process: ChildProcess
    url: str


@dataclass
class Sandbox:
    root: Path
    # Extra TC_* settings for the Traffic Center process, e.g. TC_RELAY_MAX_DOSSIER_BYTES.
    tc_env: dict[str, str] = field(default_factory=dict)
    notify_after_seconds: float = 1.0
    # Pupils each LAS holds on top of test school 00YY's: PGN → scenario (las serve --pupil).
    pupils: dict[str, str] = field(default_factory=dict)
    # The SWV flow: an SWV LAS too, and the bron tells it about this pupil at start-up.
    swv_pupil: str | None = None
    # Other parties than the demo's (e.g. the qualification's 00YY bron and a vendor's doel).
    parties: tuple[SandboxSchool, ...] | None = None
    port: int | None = None  # the Traffic Center's vendor port; None picks a free one
    # Extra `las serve` options per school key (e.g. 00YY's --check-session in qualification).
    las_options: dict[str, tuple[str, ...]] = field(default_factory=dict)
    las: dict[str, LasProcess] = field(default_factory=dict)
    tc: ChildProcess | None = None
    settings: Settings | None = None

    @property
    def log_dir(self) -> Path:
        return self.root / "logs"

    @property
    def ca_pem(self) -> Path:
        return self.root / "tc" / "ca" / CA_CERT_FILE

    @property
    def tc_url(self) -> str:
        assert self.settings is not None
        return f"https://127.0.0.1:{self.settings.port}"

    @property
    def ops_url(self) -> str:
        assert self.settings is not None
        return f"http://127.0.0.1:{self.settings.ops_port}"

    async def start(self) -> None:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        port = self.port if self.port is not None else free_port()
        self.settings = Settings(home=self.root / "tc", port=port, ops_port=free_port())
        await self._issue_certificates()
        for school in self.schools:
            self.las[school.key] = await asyncio.to_thread(self._start_las, school)
        await self._register_schools()
        self.tc = ChildProcess(
            "traffic-center",
            ["--home", str(self.settings.home), "serve"],
            log_dir=self.log_dir,
            env=child_env(
                **{
                    "TC_PORT": str(self.settings.port),
                    "TC_OPS_PORT": str(self.settings.ops_port),
                    "TC_LOG_LEVEL": "warning",
                    **self.tc_env,
                }
            ),
        )
        await self._wait_until_ready()

    async def stop(self) -> dict[str, int]:
        """Stop every process (SIGTERM, then SIGKILL); their exit codes by name."""
        codes: dict[str, int] = {}
        # The TC first: it closes its pooled connections to the LAS processes, which then
        # have nothing left to wait for.
        if self.tc is not None:
            codes[self.tc.name] = await asyncio.to_thread(self.tc.stop)
        children = [las.process for las in self.las.values()]
        stopped = await asyncio.gather(*(asyncio.to_thread(c.stop) for c in children))
        codes.update({child.name: code for child, code in zip(children, stopped, strict=True)})
        return codes

    @property
    def schools(self) -> tuple[SandboxSchool, ...]:
        if self.parties is not None:
            return self.parties
        return (BRON, DOEL, SWV) if self.swv_pupil is not None else (BRON, DOEL)

    async def exchange_records(self, sessie_id: str) -> Sequence[AuditRecord]:
        """What the Traffic Center recorded about a session's exchanges (metadata only)."""
        assert self.settings is not None
        async with open_store(self.settings) as store:
            return await store.audit.for_session(sessie_id)

    def doel_tls(self, school: SandboxSchool = DOEL) -> ClientTLS:
        """A school's client certificate, as its LAS presents it to the Traffic Center."""
        directory = self.root / f"las-{school.key}"
        return ClientTLS(directory / "client.pem", directory / "client.key", self.ca_pem)

    def doel_client(self, school: SandboxSchool = DOEL) -> DoelClient:
        return DoelClient(self.tc_url, tls=self.doel_tls(school))

    # --- building ------------------------------------------------------------------------------

    async def _issue_certificates(self) -> None:
        assert self.settings is not None
        home = self.settings.home
        ca = CertificateAuthority.create(self.settings.ca_dir, name="OSO Traffic Center demo CA")
        async with open_signed_store(self.settings) as (store, secret):
            builder = SandboxBuilder(ca, store, secret=secret, clock=utc_now)
            await builder.server_certificate(home / "server", hosts=["127.0.0.1", "localhost"])
            await builder.relay_certificate(home / "relay")
            for school in self.schools:
                directory = self.root / f"las-{school.key}"
                await builder.server_certificate(directory / "server", hosts=["127.0.0.1"])
                # Registered before its certificate is issued, at a URL its LAS (started with
                # that certificate) replaces once it listens: `_register_schools`.
                await builder.register(school, url=PROVISIONAL_LAS_URL)
                await builder.client_certificate(school, directory / "client")

    def _start_las(self, school: SandboxSchool) -> LasProcess:
        directory = self.root / f"las-{school.key}"
        process = ChildProcess(
            f"las-{school.key}",
            [
                *("las", "serve", "--port", "0", "--ca", str(self.ca_pem)),
                *("--cert", str(directory / "server.pem"), "--key", str(directory / "server.key")),
                *("--sector", school.sector, "--brin", school.brin),
                *("--tc-url", self.tc_url, "--notify-after", str(self.notify_after_seconds)),
                *("--client-cert", str(directory / "client.pem")),
                *("--client-key", str(directory / "client.key")),
                *(f"--pupil={pgn}={scenario}" for pgn, scenario in self.pupils.items()),
                *self._swv_melding(school),
                *self.las_options.get(school.key, ()),
            ],
            log_dir=self.log_dir,
            env=child_env(),
        )
        listening = process.wait_for_event(
            lambda event: event.get("event") == "listening", timeout=READY_SECONDS
        )
        return LasProcess(school, directory, process, str(listening["url"]))

    def _swv_melding(self, school: SandboxSchool) -> list[str]:
        if self.swv_pupil is None or school is not BRON:
            return []
        return [f"--swv-melding={self.swv_pupil}={SWV.routeringskenmerk}"]

    async def _register_schools(self) -> None:
        assert self.settings is not None
        ca = CertificateAuthority.load(self.settings.ca_dir)
        async with open_signed_store(self.settings) as (store, secret):
            builder = SandboxBuilder(ca, store, secret=secret, clock=utc_now)
            for las in self.las.values():
                await builder.register(las.school, url=las.url)

    async def _wait_until_ready(self) -> None:
        assert self.tc is not None
        deadline = time.monotonic() + READY_SECONDS
        async with httpx.AsyncClient(base_url=self.ops_url, trust_env=False) as client:
            while True:
                if self.tc.process.poll() is not None:
                    raise RuntimeError(f"the Traffic Center exited; {self.tc.tail()}")
                try:
                    if (await client.get("/readyz", timeout=2)).status_code == httpx.codes.OK:
                        return
                except httpx.TransportError:
                    pass
                if time.monotonic() > deadline:
                    raise TimeoutError(
                        f"the Traffic Center was not ready in time; {self.tc.tail()}"
                    )
                await asyncio.sleep(0.1)
