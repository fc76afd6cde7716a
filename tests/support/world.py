"""Test parties: schools with endpoints and certificates, and TLS clients that act for them."""

from __future__ import annotations

import datetime as dt
import itertools
import ssl
import string
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from tests.support.contract import record_answer
from traffic_center.admin.certificates import CertificateAdmin
from traffic_center.admin.sandbox import SandboxBuilder, SandboxSchool
from traffic_center.pki.ca import IssuedCertificate
from traffic_center.pki.inspect import serial_hex

_counter = itertools.count(1)


def unique_brin() -> str:
    n = next(_counter)
    letters = string.ascii_uppercase
    return f"{n % 100:02d}{letters[(n // 100) % 26]}{letters[(n // 2600) % 26]}"


def unique_routeringskenmerk() -> str:
    return f"{9 * 10**18 + next(_counter) * 7919:020d}"


def client_context(ca_pem: Path, cert: Path | None, key: Path | None) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(ca_pem))
    if cert is not None and key is not None:
        context.load_cert_chain(str(cert), str(key))
    return context


@dataclass
class Party:
    """One school endpoint: its registry entry and its client certificate."""

    brin: str
    routeringskenmerk: str
    sector: str
    cert: Path
    key: Path
    serial: str
    base_url: str
    ca_pem: Path
    clients: list[httpx.AsyncClient] = field(default_factory=list)

    def client(self) -> httpx.AsyncClient:
        """This party's client; one keep-alive connection reused across a test's calls."""
        if not self.clients:
            return self.new_client()
        return self.clients[0]

    def new_client(self) -> httpx.AsyncClient:
        """Another client with its own connections, for parallel callers."""
        client = httpx.AsyncClient(
            base_url=self.base_url,
            verify=client_context(self.ca_pem, self.cert, self.key),
            timeout=30,
            # Held to the contract by the tests that ask (tests/support/contract.py).
            event_hooks={"response": [record_answer]},
        )
        self.clients.append(client)
        return client

    async def aclose(self) -> None:
        for client in self.clients:
            await client.aclose()


async def unregistered_certificate(
    admin: CertificateAdmin,
    *,
    name: str,
    routeringskenmerk: str | None = None,
    brin: str | None = None,
    out: Path | None = None,
    not_before: dt.datetime | None = None,
    not_after: dt.datetime | None = None,
) -> IssuedCertificate:
    """An inventoried client certificate of an endpoint that is not registered, which `ca
    issue` refuses to make: signed by the CA and recorded past that check, as a mis-issued
    one (or one whose endpoint was registered elsewhere since)."""
    issued = admin.ca.issue_client_certificate(
        routeringskenmerk=routeringskenmerk or unique_routeringskenmerk(),
        brin=brin or unique_brin(),
        name=name,
        not_before=not_before,
        not_after=not_after,
    )
    await admin.record(issued, out)
    return issued


@dataclass
class World:
    """Creates parties on a running Traffic Center through the admin library's sandbox builder."""

    builder: SandboxBuilder
    base_url: str
    ca_pem: Path
    directory: Path
    parties: list[Party] = field(default_factory=list)

    async def school(
        self,
        sector: str = "PO",
        *,
        brin: str | None = None,
        register_endpoint: bool = True,
        add_school: bool = True,
        kind: str = "OV",
        url: str | None = None,
    ) -> Party:
        brin = brin or unique_brin()
        routeringskenmerk = unique_routeringskenmerk()
        school = SandboxSchool(
            f"party-{routeringskenmerk}", brin, f"School {brin}", sector, routeringskenmerk, kind
        )
        await self.builder.register(
            school,
            url=url or f"https://las-{brin.lower()}.test/oso",
            add_school=add_school,
            add_endpoint=register_endpoint,
        )
        prefix = self.directory / school.key
        issued = (
            await self.builder.client_certificate(school, prefix)
            if register_endpoint
            else await self._unregistered_certificate(school, prefix)
        )
        assert issued is not None
        party = Party(
            brin=brin,
            routeringskenmerk=routeringskenmerk,
            sector=sector,
            cert=prefix.with_name(prefix.name + ".pem"),
            key=prefix.with_name(prefix.name + ".key"),
            serial=serial_hex(issued.certificate),
            base_url=self.base_url,
            ca_pem=self.ca_pem,
        )
        self.parties.append(party)
        return party

    async def _unregistered_certificate(
        self, school: SandboxSchool, prefix: Path
    ) -> IssuedCertificate:
        return await unregistered_certificate(
            self.builder.certificates,
            routeringskenmerk=school.routeringskenmerk,
            brin=school.brin,
            name=school.name,
            out=prefix,
        )

    async def schools(self, *sectors: str) -> list[Party]:
        """One registered school with one endpoint per sector given, in order."""
        return [await self.school(sector) for sector in sectors]

    async def aclose(self) -> None:
        for party in self.parties:
            await party.aclose()
