"""`traffic-center qualify bron`: the flags become a BronTarget; the report goes to the terminal.

Progress lines go to stderr while it runs, the table to stdout at the end; ``--junit`` and
``--json`` write the same results for a vendor's CI. Exit 0 only when every check passed, 1
when one failed, 2 for a usage mistake (one line, no trace).
"""

from __future__ import annotations

import argparse
import math
import os
import ssl
import sys
from pathlib import Path

from traffic_center.cli.context import settings_from
from traffic_center.cli.las import SCHEME_KEY_ENV
from traffic_center.domain.errors import InvalidInput, TrafficCenterError
from traffic_center.domain.identifiers import parse_sector
from traffic_center.domain.rules import overstap_allowed
from traffic_center.las.pupils import TEST_SCHEME_KEY, parse_scheme_key, pupil_zoeksleutel
from traffic_center.pki.ca import CA_KEY_FILE, CertificateAuthority
from traffic_center.qualify.bron import (
    DEFAULT_PUPILS,
    DOSSIER,
    RELAY_CONNECT_SECONDS,
    SCENARIOS,
    BronTarget,
    Identity,
    load_schema,
    qualify_bron,
)
from traffic_center.qualify.report import Report, check_report_files
from traffic_center.qualify.watched import (
    WatchedTarget,
    check_sandbox,
    qualify_watched,
    sandbox_sessions,
)

EXIT_FAILED = 1


async def bron_command(args: argparse.Namespace) -> int:
    check_report_files(("--junit", args.junit), ("--json", args.json))
    target = target_from(args)
    watched = watched_from(args, target)
    report = Report(f"qualify bron {target.url}", out=sys.stderr)
    if watched is None:
        await qualify_bron(target, report)
    else:
        async with sandbox_sessions(watched) as sessions:
            await qualify_bron(target, report, sessions)
            await qualify_watched(watched, report, sessions, target)
    report.write_table(sys.stdout)
    if args.junit is not None:
        report.write_junit(args.junit)
    if args.json is not None:
        report.write_json(args.json)
    return 0 if report.ok else EXIT_FAILED


def target_from(args: argparse.Namespace) -> BronTarget:
    """Validate every flag before the first call, so a mistake is one line, not a trace."""
    settings = settings_from(args)
    if not args.url.startswith("https://"):
        raise InvalidInput(f"--url {args.url}: the relay calls https:// URLs only")
    if not math.isfinite(args.timeout) or args.timeout <= 0:
        raise InvalidInput("--timeout must be a positive number of seconds")
    ca = args.ca or settings.client_ca_path
    relay = Identity(
        cert=args.relay_cert or settings.upstream_cert_path,
        key=args.relay_key or settings.upstream_key_path,
    )
    for flag, path in (("--ca", ca), ("--relay-cert", relay.cert), ("--relay-key", relay.key)):
        if not path.is_file():
            raise InvalidInput(f"{flag} {path}: no such file (give it, or --home of a sandbox)")
    _check_tls_files(ca, relay)
    bron_sector, doel_sector = parse_sector(args.bron_sector), parse_sector(args.doel_sector)
    if not overstap_allowed(bron_sector, doel_sector):
        # The Traffic Center grants no such session: the LAS would never be asked this.
        raise InvalidInput(
            f"--bron-sector {bron_sector.value} --doel-sector {doel_sector.value}: no overstap "
            "the OSO has (an overstapdossier goes PO→PO, PO→VO or VO→VO; SBO and SO count as "
            "PO, VSO and PRO as VO)"
        )
    scheme_key = _scheme_key(args.scheme_key_file)
    return BronTarget(
        url=args.url.rstrip("/"),
        ca=ca,
        relay=relay,
        scheme_key=scheme_key,
        pupils=_pupils(args.pupil, scheme_key),
        bron_sector=bron_sector,
        doel_sector=doel_sector,
        tc_ca=_tc_ca(settings.ca_dir),
        schema=None if args.xsd is None else load_schema(args.xsd),
        read_timeout=args.timeout,
        connect_timeout=min(RELAY_CONNECT_SECONDS, args.timeout),
    )


def watched_from(args: argparse.Namespace, target: BronTarget) -> WatchedTarget | None:
    if args.sandbox_checks is None:
        return None
    if not args.sandbox_checks.startswith("https://"):
        raise InvalidInput(f"--sandbox-checks {args.sandbox_checks}: the TC's https:// URL")
    if not math.isfinite(args.notify_within) or args.notify_within <= 0:
        raise InvalidInput("--notify-within must be a positive number of seconds")
    for scenario in (DOSSIER, "nietgereed"):
        if scenario not in target.pupils:
            raise InvalidInput(f"--sandbox-checks needs --pupil {scenario}=PGN")
    watched = WatchedTarget(
        settings=settings_from(args),
        tc_url=args.sandbox_checks.rstrip("/"),
        url=target.url,
        gereed_pgn=target.pupils[DOSSIER],
        nietgereed_pgn=target.pupils["nietgereed"],
        scheme_key=target.scheme_key,
        notify_within=args.notify_within,
    )
    check_sandbox(watched)
    return watched


def _check_tls_files(ca: Path, relay: Identity) -> None:
    """Unreadable PEM files are the user's mistake, not the vendor's: say so before calling."""
    try:
        context = ssl.create_default_context(cafile=str(ca))
        context.load_cert_chain(str(relay.cert), str(relay.key))
    except (ssl.SSLError, OSError, ValueError) as exc:
        raise InvalidInput(f"--ca/--relay-cert/--relay-key: not usable for TLS ({exc})") from None


def _pupils(given: list[str], scheme_key: bytes) -> dict[str, str]:
    pupils = dict(DEFAULT_PUPILS)
    for item in given:
        scenario, equals, pgn = item.partition("=")
        if not equals or scenario not in SCENARIOS:
            raise InvalidInput(f"--pupil {item!r}: write SCENARIO=PGN, SCENARIO one of {SCENARIOS}")
        pupil_zoeksleutel(scheme_key, pgn)  # a PGN of the right form, or InvalidInput
        pupils[scenario] = pgn
    return pupils


def _scheme_key(path: Path | None) -> bytes:
    if path is not None:
        if not path.is_file():
            raise InvalidInput(f"--scheme-key-file {path}: no such file")
        try:
            return parse_scheme_key(path.read_text(encoding="ascii", errors="replace"))
        except InvalidInput as exc:
            raise InvalidInput(f"--scheme-key-file {path}: {exc.detail}") from None
    given = os.environ.get(SCHEME_KEY_ENV)
    if not given:
        return TEST_SCHEME_KEY
    try:
        return parse_scheme_key(given)
    except InvalidInput as exc:
        raise InvalidInput(f"${SCHEME_KEY_ENV}: {exc.detail}") from None


def _tc_ca(directory: Path) -> CertificateAuthority | None:
    """The sandbox's CA, to issue the school probe; None when its key is not here."""
    if not (directory / CA_KEY_FILE).is_file():
        return None
    try:
        return CertificateAuthority.load(directory)
    except (TrafficCenterError, ValueError):
        return None
