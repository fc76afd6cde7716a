"""The development bootstrap: a CA, a server certificate and two schools, if missing."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from traffic_center.admin.certificates import CertificateAdmin
from traffic_center.admin.registry import RegistryAdmin, new_endpoint, new_school
from traffic_center.cli.context import open_store, say, utc_now
from traffic_center.domain.errors import SchoolExists
from traffic_center.pki.ca import CA_CERT_FILE, CertificateAuthority
from traffic_center.settings import Settings


@dataclass(frozen=True, slots=True)
class DevSchool:
    key: str
    brin: str
    name: str
    sector: str
    routeringskenmerk: str


DEV_SCHOOLS = (
    DevSchool("school-a", "12AB", "Basisschool De Regenboog", "PO", "00000007000012000001"),
    DevSchool("school-b", "34CD", "Het Stedelijk College", "VO", "00000007000034000001"),
)


async def bootstrap_dev(settings: Settings) -> list[Path]:
    """Idempotent: creates only what is missing, so a restart keeps the same identities."""
    if (settings.ca_dir / CA_CERT_FILE).exists():
        ca = CertificateAuthority.load(settings.ca_dir)
    else:
        ca = CertificateAuthority.create(settings.ca_dir, name="OSO Traffic Center dev CA")
        say(f"dev: created CA in {settings.ca_dir}")
    dev_dir = settings.home / "dev"
    written: list[Path] = []
    async with open_store(settings) as store:
        admin = CertificateAdmin(ca, store, secret=settings.server_secret(), clock=utc_now)
        if not settings.server_cert_path.exists():
            prefix = settings.server_cert_path.with_suffix("")
            await admin.issue_server(hosts=["127.0.0.1", "localhost", "::1"], out=prefix)
            written.append(settings.server_cert_path)
        if not settings.upstream_cert_path.exists():
            prefix = settings.upstream_cert_path.with_suffix("")
            await admin.issue_relay(out=prefix)
            written.append(settings.upstream_cert_path)
        registry = RegistryAdmin(store, secret=settings.server_secret(), clock=utc_now)
        for school in DEV_SCHOOLS:
            prefix = dev_dir / school.key
            if not prefix.with_suffix(".pem").exists():
                await admin.issue_client(
                    routeringskenmerk=school.routeringskenmerk,
                    brin=school.brin,
                    name=school.name,
                    out=prefix,
                )
                written.append(prefix.with_suffix(".pem"))
            await _register(registry, school)
    return written


async def _register(registry: RegistryAdmin, school: DevSchool) -> None:
    try:
        await registry.add_school(
            new_school(brin=school.brin, name=school.name, sector=school.sector)
        )
    except SchoolExists:
        return
    await registry.add_endpoint(
        new_endpoint(
            routeringskenmerk=school.routeringskenmerk,
            brin=school.brin,
            url=f"https://127.0.0.1/oso/{school.key}",
        )
    )


def curl_line(settings: Settings) -> str:
    home = settings.home
    return (
        f"curl --cacert {home}/ca/ca.pem --cert {home}/dev/school-a.pem "
        f"--key {home}/dev/school-a.key https://127.0.0.1:{settings.port}/v1/whoami"
    )
