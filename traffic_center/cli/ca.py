"""`traffic-center ca …`: create the CA, issue and revoke certificates, publish the CRL."""

from __future__ import annotations

import argparse
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from traffic_center.admin.certificates import CertificateAdmin, ListedCertificate
from traffic_center.cli.context import (
    open_signed_store,
    open_store,
    say,
    settings_from,
    utc_now,
)
from traffic_center.domain.errors import CertificateAlreadyRevoked, InvalidCsr
from traffic_center.pki.ca import (
    CertificateAuthority,
    IssuedCertificate,
    crl_lifetime,
    output_prefix,
)
from traffic_center.pki.inspect import serial_hex
from traffic_center.settings import Settings


async def init_ca(args: argparse.Namespace) -> int:
    settings = settings_from(args)
    ca = CertificateAuthority.create(settings.ca_dir, name=args.name)
    async with open_store(settings):
        pass  # create the database next to the CA so `ca issue` finds both
    say(f"created CA {ca.certificate.subject.rfc4514_string()} in {settings.ca_dir}")
    return 0


async def issue_server(args: argparse.Namespace) -> int:
    settings, ca = _load_ca(args)
    out = output_prefix(args.out)
    # Issued in memory first: every bad input is refused before the store is opened.
    issued = ca.issue_server_certificate(
        hosts=args.host,
        csr_pem=_read_csr(args.csr) if args.csr else None,
        days=args.days,
    )
    await _record(settings, ca, issued, out, role="server")
    return 0


async def issue_client(args: argparse.Namespace) -> int:
    settings, ca = _load_ca(args)
    out = output_prefix(args.out)
    csr_pem = _read_csr(args.csr) if args.csr else None
    # The registry decides the BRIN, so the store is opened before the certificate is made.
    async with _certificate_admin(settings, ca) as admin:
        issued = await admin.issue_client(
            routeringskenmerk=args.routeringskenmerk,
            brin=args.brin,
            name=args.name,
            csr_pem=csr_pem,
            days=args.days,
            out=out,
        )
    _issued(ca, issued, out, role="client")
    print(serial_hex(issued.certificate))
    return 0


async def issue_relay(args: argparse.Namespace) -> int:
    settings, ca = _load_ca(args)
    out = output_prefix(args.out)
    await _record(settings, ca, ca.issue_relay_certificate(), out, role="relay")
    return 0


async def issue_proxy(args: argparse.Namespace) -> int:
    settings, ca = _load_ca(args)
    out = output_prefix(args.out)
    # Issued in memory first: every bad input is refused before the store is opened.
    issued = ca.issue_proxy_certificate(
        csr_pem=_read_csr(args.csr) if args.csr else None, days=args.days
    )
    await _record(settings, ca, issued, out, role="proxy")
    print(serial_hex(issued.certificate))
    return 0


async def revoke_certificate(args: argparse.Namespace) -> int:
    async with _certificate_admin(*_load_ca(args)) as admin:
        try:
            record = await admin.revoke(args.serial, reason=args.reason)
        except CertificateAlreadyRevoked as already:
            if already.reason != args.reason:
                raise  # another reason: refused, exit 2
            say(f"already revoked: {already.detail}")  # a repeat of the same: done already
            return 0
    say(f"revoked {record.serial} ({record.revocation_reason}) at {record.revoked_at}")
    return 0


async def write_crl(args: argparse.Namespace) -> int:
    crl_lifetime(args.days)  # a bad --days is refused before the store is opened
    async with _certificate_admin(*_load_ca(args)) as admin:
        if args.out is None:
            _, count = await admin.publish_crl(days=args.days)
        else:
            count = await admin.write_crl(args.out, days=args.days)
    where = f" and wrote it to {args.out}" if args.out is not None else ""
    say(f"published a CRL with {count} revoked certificate(s) to the nodes{where}")
    return 0


def _load_ca(args: argparse.Namespace) -> tuple[Settings, CertificateAuthority]:
    settings = settings_from(args)
    ca = CertificateAuthority.load(settings.ca_dir)
    ca.crl_url = settings.crl_url
    return settings, ca


async def list_from_store(args: argparse.Namespace) -> list[ListedCertificate]:
    """`ca list` the ordinary way (see ``cli/ca_list.py``): opens, and if need be migrates,
    the store."""
    async with _certificate_admin(*_load_ca(args), existing=True) as admin:
        return await admin.list()


@asynccontextmanager
async def _certificate_admin(
    settings: Settings, ca: CertificateAuthority, *, existing: bool = False
) -> AsyncIterator[CertificateAdmin]:
    async with open_signed_store(settings, existing=existing) as (store, secret):
        yield CertificateAdmin(ca, store, secret=secret, clock=utc_now)


async def _record(
    settings: Settings,
    ca: CertificateAuthority,
    issued: IssuedCertificate,
    out: Path,
    *,
    role: str,
) -> None:
    async with _certificate_admin(settings, ca) as admin:
        await admin.record(issued, out)
    _issued(ca, issued, out, role=role)


def _issued(ca: CertificateAuthority, issued: IssuedCertificate, out: Path, *, role: str) -> None:
    say(f"issued {role} certificate {serial_hex(issued.certificate)} → {out}.pem")
    ends = issued.certificate.not_valid_after_utc
    if ends >= ca.certificate.not_valid_after_utc:
        # A certificate cannot outlive its CA (it would stop verifying then anyway).
        say(f"note: valid only until {ends:%Y-%m-%d}, when the CA itself expires")


def _read_csr(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise InvalidCsr(f"cannot read {path}: {exc.strerror}") from exc
