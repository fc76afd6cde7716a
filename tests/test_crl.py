"""The CRL published where a LAS can fetch it, and named in the certificates the CA issues."""

from __future__ import annotations

import asyncio
import datetime as dt
import re
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import httpx
import pytest
from cryptography import x509
from cryptography.x509.oid import ExtensionOID

from tests.conftest import BACKENDS, DatabaseFactory
from tests.support.processes import clean_env
from tests.support.server import TrafficCenterUnderTest
from traffic_center.admin.certificates import CertificateAdmin
from traffic_center.pki.ca import CertificateAuthority
from traffic_center.pki.inspect import serial_hex
from traffic_center.store.certificates import CRL_LOCK_KEY
from traffic_center.store.store import Store

SECRET = "9f1c2a7be04d5c3a8e6f7b2d1c0a9e8f7d6c5b4a3928171615141312110f0e0d"  # a test key, 64 hex


async def test_no_crl_before_one_is_published_then_the_newest_signed_one(
    tc: TrafficCenterUnderTest,
) -> None:
    school = await tc.world.school("PO")
    client = school.client()
    first = await client.get("/v1/crl")  # this module's Traffic Center revoked nothing yet
    assert (first.status_code, first.json()["code"]) == (404, "CrlNietGepubliceerd")

    victim = await tc.world.school("VO")
    await tc.certificates.revoke(victim.serial, reason="keyCompromise")
    answered = await client.get("/v1/crl")
    assert answered.status_code == 200
    assert answered.headers["content-type"] == "application/pkix-crl"
    assert "max-age=" in answered.headers["cache-control"]
    crl = x509.load_der_x509_crl(answered.content)
    assert crl.is_signature_valid(tc.ca.certificate.public_key())  # type: ignore[arg-type]
    assert crl.issuer == tc.ca.certificate.subject
    listed = {format(entry.serial_number, "X") for entry in crl}
    assert victim.serial in listed
    assert crl.next_update_utc is not None


async def test_the_node_reports_how_long_its_crl_stays_current(
    tc: TrafficCenterUnderTest,
) -> None:
    """traffic_center_crl_next_update_seconds: the served CRL's nextUpdate, from the store."""
    victim = await tc.world.school("SO")
    await tc.certificates.revoke(victim.serial)  # publishes a CRL current for 7 days
    week = 7 * 24 * 3600
    deadline = time.monotonic() + 30
    async with httpx.AsyncClient(base_url=tc.ops_url, timeout=10) as ops:
        while True:
            body = (await ops.get("/metrics")).text
            shown = re.search(r"^traffic_center_crl_next_update_seconds (\S+)$", body, re.M)
            assert shown, "the gauge is not exported"
            if week - 600 < float(shown[1]) <= week:
                break
            assert time.monotonic() < deadline, f"the gauge shows {shown[1]}"
            await asyncio.sleep(0.2)


async def test_issued_certificates_name_the_crl_when_configured(
    tc: TrafficCenterUnderTest,
) -> None:
    tc.ca.crl_url = "https://tc.example/v1/crl"
    try:
        issued = await tc.certificates.issue_server(hosts=["las.test"])
    finally:
        tc.ca.crl_url = None
    points = issued.certificate.extensions.get_extension_for_oid(
        ExtensionOID.CRL_DISTRIBUTION_POINTS
    ).value
    assert [name.value for point in points for name in point.full_name or []] == [
        "https://tc.example/v1/crl"
    ]
    plain = await tc.certificates.issue_server(hosts=["las.test"])
    assert ExtensionOID.CRL_DISTRIBUTION_POINTS not in [
        ext.oid for ext in plain.certificate.extensions
    ]
    assert serial_hex(plain.certificate) != serial_hex(issued.certificate)


# --- the certificate admin's commands, as real processes on one store ---------------------------


@dataclass
class CaHome:
    """A CA in ``home``, its store at ``url``, and the admin's library over both."""

    home: Path
    url: str
    admin: CertificateAdmin

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        """`traffic-center ca …` as a real command on this CA and store."""
        env = {**clean_env(), "TC_DATABASE_URL": self.url, "TC_SECRET_KEY": SECRET}
        return subprocess.run(
            [sys.executable, "-m", "traffic_center", "--home", str(self.home), "ca", *args],
            capture_output=True,
            text=True,
            env=env,
            timeout=120,
            check=False,
        )

    async def newest_crl(self) -> x509.CertificateRevocationList:
        published = await self.admin.store.certificates.latest_crl()
        assert published is not None
        return x509.load_der_x509_crl(published.der)


@pytest.fixture(params=BACKENDS)
async def ca_home(
    request: pytest.FixtureRequest, database_factory: DatabaseFactory, tmp_path: Path
) -> AsyncIterator[CaHome]:
    url = await database_factory(request.param)
    ca = CertificateAuthority.create(tmp_path / "ca")
    store = await Store.open(url)
    clock = lambda: dt.datetime.now(dt.UTC)  # noqa: E731
    yield CaHome(tmp_path, url, CertificateAdmin(ca, store, secret=SECRET.encode(), clock=clock))
    await store.close()


async def test_revocations_run_at_once_all_reach_the_newest_crl(ca_home: CaHome) -> None:
    """Twelve `ca revoke` at once, as an admin's script may run them: the CRL every node
    serves (the newest) lists each one, and so does every CRL after it (`ca crl`)."""
    issued = [await ca_home.admin.issue_server(hosts=[f"las{n}.test"]) for n in range(12)]
    serials = {serial_hex(certificate.certificate) for certificate in issued}
    revoking = [asyncio.to_thread(ca_home.run, "revoke", serial) for serial in serials]
    for revoked in await asyncio.gather(*revoking):
        assert revoked.returncode == 0, revoked.stderr
    assert {format(entry.serial_number, "X") for entry in await ca_home.newest_crl()} == serials


async def test_a_publication_waits_for_the_one_before_it_on_postgresql(
    database_factory: DatabaseFactory, tmp_path: Path
) -> None:
    """The race above rarely opens on two cores, so its test passed on the code that had it.
    What closes it, shown directly: while another session holds the publications' lock (as
    a `ca revoke` signing its CRL does), a `ca revoke` neither commits its revocation nor
    publishes; released, it does both. Before, it read, signed and inserted regardless."""
    url = await database_factory("postgresql")
    ca = CertificateAuthority.create(tmp_path / "ca")
    store = await Store.open(url)
    clock = lambda: dt.datetime.now(dt.UTC)  # noqa: E731
    home = CaHome(tmp_path, url, CertificateAdmin(ca, store, secret=SECRET.encode(), clock=clock))
    try:
        serial = serial_hex((await home.admin.issue_server(hosts=["las.test"])).certificate)
        holder = await asyncpg.connect(url.replace("postgresql+asyncpg", "postgresql"))
        try:
            await holder.execute("SELECT pg_advisory_lock($1)", CRL_LOCK_KEY)
            revoking = asyncio.create_task(asyncio.to_thread(home.run, "revoke", serial))
            await asyncio.sleep(3)  # a `ca revoke` takes well under a second unhindered
            assert not revoking.done(), revoking.result()
            assert await store.certificates.latest_crl() is None
            record = await store.certificates.get(serial)
            assert record is not None
            assert record.revoked_at is None
            await holder.execute("SELECT pg_advisory_unlock($1)", CRL_LOCK_KEY)
            revoked = await revoking
        finally:
            await holder.close()
        assert revoked.returncode == 0, revoked.stderr
        assert {format(e.serial_number, "X") for e in await home.newest_crl()} == {serial}
    finally:
        await store.close()


async def test_each_crl_carries_a_rising_number_and_the_ca_key_identifier(
    ca_home: CaHome,
) -> None:
    """RFC 5280 §5.2.1 and §5.2.3: both extensions MUST be present, the number increasing."""
    assert ca_home.run("crl").returncode == 0
    first = await ca_home.newest_crl()
    assert ca_home.run("crl").returncode == 0
    second = await ca_home.newest_crl()
    numbers = [
        crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number
        for crl in (first, second)
    ]
    assert numbers[0] < numbers[1]
    key_id = second.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    ca_key_id = ca_home.admin.ca.certificate.extensions.get_extension_for_class(
        x509.SubjectKeyIdentifier
    ).value
    assert key_id.key_identifier == ca_key_id.digest


async def test_ca_crl_days_sets_the_next_update_within_bounds(ca_home: CaHome) -> None:
    """`ca crl --days`: how long the CRL stays current; out of bounds, one line, exit 2,
    no CRL published."""
    assert ca_home.run("crl", "--days", "3").returncode == 0
    crl = await ca_home.newest_crl()
    assert crl.next_update_utc is not None
    left = crl.next_update_utc - dt.datetime.now(dt.UTC)
    assert dt.timedelta(days=3) - dt.timedelta(minutes=5) < left <= dt.timedelta(days=3)
    for days in ("1", "11", "0"):
        refused = ca_home.run("crl", "--days", days, "--out", str(ca_home.home / "crl.pem"))
        assert refused.returncode == 2, refused.stderr
        assert refused.stderr.count("\n") == 1
        assert "--days must be between 2 and 10" in refused.stderr
        assert not (ca_home.home / "crl.pem").exists()
    assert await ca_home.newest_crl() == crl  # nothing published by the refused ones
    assert "run `ca crl` daily" in " ".join(ca_home.run("crl", "--help").stdout.split())
