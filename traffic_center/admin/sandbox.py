"""A sandbox world in one Traffic Center home: its CA, the TC's own certificates, and schools
with endpoints and client certificates.

The one builder behind `serve --dev`, the demo and the tests' parties. Every step is
idempotent (it makes only what is missing), so a restarted dev node keeps its identities.
"""

from __future__ import annotations

import contextlib
import datetime as dt
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from traffic_center.admin.certificates import CertificateAdmin
from traffic_center.admin.registry import RegistryAdmin, new_endpoint, new_school
from traffic_center.domain.errors import EndpointExists, SchoolExists
from traffic_center.domain.models import Endpoint
from traffic_center.pki.ca import CA_CERT_FILE, CertificateAuthority, IssuedCertificate
from traffic_center.store.store import Store


@dataclass(frozen=True, slots=True)
class SandboxSchool:
    """One school with one endpoint; ``key`` names its files (``dev/<key>.pem``)."""

    key: str
    brin: str
    name: str
    sector: str
    routeringskenmerk: str
    kind: str = "OV"


# The development world: a PO school (the demo's bron), a VO school (its doel), and test
# school 00YY, whose reference LAS serves the scripted test pupils (docs/zoeksleutel.md).
DEV_SCHOOLS = (
    SandboxSchool("school-a", "12AB", "Basisschool De Regenboog", "PO", "00000007000012000001"),
    SandboxSchool("school-b", "34CD", "Het Stedelijk College", "VO", "00000007000034000001"),
    SandboxSchool("school-00yy", "00YY", "Testschool 00YY", "PO", "00000007000000990001"),
)
# The demo's samenwerkingsverband: an organisation of sector SWV with an SWV endpoint, for the
# SWV flow (docs/rules.md, rule 10).
DEV_SWV = SandboxSchool(
    "swv-c", "56EF", "Samenwerkingsverband Passend Onderwijs", "SWV", "00000007000056000001", "SWV"
)


# Where an endpoint is registered until its LAS listens, when the port is known only then
# (the demo's): its certificate is issued for a registered endpoint, and `register` with the
# LAS's URL moves it there.
PROVISIONAL_LAS_URL = "https://127.0.0.1/oso"


def open_or_create_ca(ca_dir: Path, *, name: str) -> tuple[CertificateAuthority, bool]:
    """The CA in ``ca_dir``, made when there is none; and whether it was made now."""
    if (ca_dir / CA_CERT_FILE).exists():
        return CertificateAuthority.load(ca_dir), False
    return CertificateAuthority.create(ca_dir, name=name), True


class SandboxBuilder:
    def __init__(
        self,
        ca: CertificateAuthority,
        store: Store,
        *,
        secret: bytes,
        clock: Callable[[], dt.datetime],
    ) -> None:
        self._store = store
        self.certificates = CertificateAdmin(ca, store, secret=secret, clock=clock)
        self.registry = RegistryAdmin(store, secret=secret, clock=clock)

    async def server_certificate(self, prefix: Path, *, hosts: Sequence[str]) -> bool:
        """A TLS server certificate at ``prefix``.pem/.key; False when it was there."""
        if _pem(prefix).exists():
            return False
        await self.certificates.issue_server(hosts=hosts, out=prefix)
        return True

    async def relay_certificate(self, prefix: Path) -> bool:
        """The Traffic Center's client certificate towards LAS endpoints."""
        if _pem(prefix).exists():
            return False
        await self.certificates.issue_relay(out=prefix)
        return True

    async def proxy_certificate(self, prefix: Path) -> bool:
        """A TLS-terminating proxy's client certificate towards the nodes."""
        if _pem(prefix).exists():
            return False
        await self.certificates.issue_proxy(out=prefix)
        return True

    async def client_certificate(
        self, school: SandboxSchool, prefix: Path
    ) -> IssuedCertificate | None:
        """The endpoint's client certificate; None when it was there."""
        if _pem(prefix).exists():
            return None
        return await self.certificates.issue_client(
            routeringskenmerk=school.routeringskenmerk,
            brin=school.brin,
            name=school.name,
            out=prefix,
        )

    async def register(
        self, school: SandboxSchool, *, url: str, add_school: bool = True, add_endpoint: bool = True
    ) -> None:
        """The school and its endpoint in the registry, each unless it is there already."""
        if add_school:
            with contextlib.suppress(SchoolExists):
                await self.registry.add_school(
                    new_school(brin=school.brin, name=school.name, sector=school.sector)
                )
        if add_endpoint:
            endpoint = new_endpoint(
                routeringskenmerk=school.routeringskenmerk,
                brin=school.brin,
                url=url,
                kind=school.kind,
            )
            try:
                await self.registry.add_endpoint(endpoint)
            except EndpointExists:
                await self._move_if_elsewhere(endpoint)

    async def _move_if_elsewhere(self, endpoint: Endpoint) -> None:
        """A registered endpoint at the URL asked for: moved when it is elsewhere (the demo's
        LAS listens at a port known only after its certificate was issued)."""
        registered = await self._store.registry.get_endpoint(endpoint.routeringskenmerk)
        if registered is not None and registered.url != endpoint.url:
            await self.registry.move_endpoint(endpoint.routeringskenmerk, url=endpoint.url)


def _pem(prefix: Path) -> Path:
    return prefix.with_name(prefix.name + ".pem")
