"""`traffic-center ca …`: create the CA, issue and revoke certificates, publish the CRL."""

from __future__ import annotations

import argparse
from pathlib import Path

from traffic_center.admin.certificates import CertificateAdmin
from traffic_center.cli.context import (
    open_store,
    print_json,
    print_table,
    say,
    settings_from,
    utc_now,
)
from traffic_center.domain.errors import InvalidCsr
from traffic_center.domain.identifiers import parse_brin, parse_routeringskenmerk
from traffic_center.pki.ca import REVOCATION_REASONS, CertificateAuthority, public_key_from_csr
from traffic_center.pki.inspect import serial_hex


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    ca = subparsers.add_parser("ca", help="the certificate authority")
    verbs = ca.add_subparsers(dest="verb", required=True, metavar="VERB")

    init = verbs.add_parser("init", help="create the CA (refuses to touch an existing one)")
    init.add_argument("--name", default="OSO Traffic Center CA", help="the CA's common name")
    init.set_defaults(handler=init_ca)

    server = verbs.add_parser("issue-server", help="issue a server certificate (serverAuth only)")
    server.add_argument("--host", action="append", required=True, help="DNS name or IP; repeat")
    server.add_argument("--days", type=int, default=365)
    server.add_argument("--out", required=True, type=Path, help="writes OUT.pem and OUT.key")
    server.set_defaults(handler=issue_server)

    client = verbs.add_parser("issue", help="issue an endpoint's client certificate")
    client.add_argument("--routeringskenmerk", required=True, help="the endpoint's 20 digits")
    client.add_argument("--brin", required=True, help="the school's BRIN, e.g. 12AB")
    client.add_argument("--name", required=True, help="the school's name (subject O)")
    client.add_argument("--csr", type=Path, help="sign this CSR; the school keeps its key")
    client.add_argument("--days", type=int, default=365)
    client.add_argument("--out", required=True, type=Path, help="writes OUT.pem (and OUT.key)")
    client.set_defaults(handler=issue_client)

    relay = verbs.add_parser("issue-relay", help="issue the TC's own client certificate")
    relay.add_argument("--out", required=True, type=Path)
    relay.set_defaults(handler=issue_relay)

    revoke = verbs.add_parser("revoke", help="revoke a certificate by serial")
    revoke.add_argument("serial", help="serial as `ca list` prints it")
    revoke.add_argument("--reason", default="unspecified", choices=sorted(REVOCATION_REASONS))
    revoke.set_defaults(handler=revoke_certificate)

    listing = verbs.add_parser("list", help="list issued certificates")
    listing.add_argument("--json", action="store_true", help="a JSON array")
    listing.set_defaults(handler=list_certificates)

    crl = verbs.add_parser("crl", help="write the PEM CRL signed by the CA")
    crl.add_argument("--out", required=True, type=Path)
    crl.set_defaults(handler=write_crl)


async def init_ca(args: argparse.Namespace) -> int:
    settings = settings_from(args)
    ca = CertificateAuthority.create(settings.ca_dir, name=args.name)
    async with open_store(settings):
        pass  # create the database next to the CA so `ca issue` finds both
    say(f"created CA {ca.certificate.subject.rfc4514_string()} in {settings.ca_dir}")
    return 0


async def issue_server(args: argparse.Namespace) -> int:
    settings = settings_from(args)
    ca = CertificateAuthority.load(settings.ca_dir)
    async with open_store(settings) as store:
        admin = CertificateAdmin(ca, store, clock=utc_now)
        issued = await admin.issue_server(hosts=args.host, days=args.days, out=args.out)
    say(f"issued server certificate {serial_hex(issued.certificate)} → {args.out}.pem")
    return 0


async def issue_client(args: argparse.Namespace) -> int:
    parse_routeringskenmerk(args.routeringskenmerk)
    parse_brin(args.brin)
    settings = settings_from(args)
    csr_pem = _read_csr(args.csr) if args.csr else None
    if csr_pem is not None:
        public_key_from_csr(csr_pem)  # refuse a bad CSR before anything is opened
    ca = CertificateAuthority.load(settings.ca_dir)
    async with open_store(settings) as store:
        admin = CertificateAdmin(ca, store, clock=utc_now)
        issued = await admin.issue_client(
            routeringskenmerk=args.routeringskenmerk,
            brin=args.brin,
            name=args.name,
            csr_pem=csr_pem,
            days=args.days,
            out=args.out,
        )
    say(f"issued client certificate {serial_hex(issued.certificate)} → {args.out}.pem")
    print(serial_hex(issued.certificate))
    return 0


async def issue_relay(args: argparse.Namespace) -> int:
    settings = settings_from(args)
    ca = CertificateAuthority.load(settings.ca_dir)
    async with open_store(settings) as store:
        issued = await CertificateAdmin(ca, store, clock=utc_now).issue_relay(out=args.out)
    say(f"issued relay certificate {serial_hex(issued.certificate)} → {args.out}.pem")
    return 0


async def revoke_certificate(args: argparse.Namespace) -> int:
    settings = settings_from(args)
    ca = CertificateAuthority.load(settings.ca_dir)
    async with open_store(settings) as store:
        record = await CertificateAdmin(ca, store, clock=utc_now).revoke(
            args.serial, reason=args.reason
        )
    say(f"revoked {record.serial} ({record.revocation_reason}) at {record.revoked_at}")
    return 0


async def list_certificates(args: argparse.Namespace) -> int:
    settings = settings_from(args)
    ca = CertificateAuthority.load(settings.ca_dir)
    async with open_store(settings) as store:
        listed = await CertificateAdmin(ca, store, clock=utc_now).list()
    rows = [
        {
            "serial": item.record.serial,
            "role": item.record.role.value,
            "routeringskenmerk": item.record.routeringskenmerk,
            "subject": item.record.subject,
            "not_before": item.record.not_before.isoformat(),
            "not_after": item.record.not_after.isoformat(),
            "status": item.status.value,
            "revoked_at": item.record.revoked_at.isoformat() if item.record.revoked_at else None,
            "revocation_reason": item.record.revocation_reason,
        }
        for item in listed
    ]
    if args.json:
        print_json(rows)
    else:
        print_table(
            ["SERIAL", "ROLE", "ROUTERINGSKENMERK", "STATUS", "NOT AFTER", "SUBJECT"],
            [
                [
                    r["serial"] or "",
                    r["role"] or "",
                    r["routeringskenmerk"] or "-",
                    r["status"] or "",
                    (r["not_after"] or "")[:19],
                    r["subject"] or "",
                ]
                for r in rows
            ],
        )
    return 0


async def write_crl(args: argparse.Namespace) -> int:
    settings = settings_from(args)
    ca = CertificateAuthority.load(settings.ca_dir)
    async with open_store(settings) as store:
        count = await CertificateAdmin(ca, store, clock=utc_now).write_crl(args.out)
    say(f"wrote CRL with {count} revoked certificate(s) to {args.out}")
    return 0


def _read_csr(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise InvalidCsr(f"cannot read {path}: {exc.strerror}") from exc
