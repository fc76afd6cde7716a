"""`traffic-center las serve`: run the reference LAS (test school 00YY) as a process.

stdout carries one JSON line per event (listening, dossier, refused, notification, notified),
metadata only, so a demo or a test can follow along; it never shows a zoeksleutel or a byte
of a dossier. The zoeksleutel v1 scheme key comes from --scheme-key-file or $OSO_SCHEME_KEY,
else it is the public test key (docs/zoeksleutel.md).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import socket
import ssl
from pathlib import Path

from traffic_center.domain.errors import InvalidInput
from traffic_center.domain.identifiers import parse_sector
from traffic_center.las.bron import Event
from traffic_center.las.config import LasConfig
from traffic_center.las.doel import ClientTLS
from traffic_center.las.pupils import TEST_SCHEME_KEY, Roster, parse_scheme_key
from traffic_center.las.server import LasServer
from traffic_center.server.tls import server_ssl_context

# The scheme key is a secret: from a file or the environment, never on the command line.
SCHEME_KEY_ENV = "OSO_SCHEME_KEY"


async def serve_command(args: argparse.Namespace) -> int:
    server = LasServer(config_from(args), on_event=print_event)
    await server.serve(handle_signals=True)
    return 0


def config_from(args: argparse.Namespace) -> LasConfig:
    """Validate everything before listening, so a mistake is one line on stderr, not a trace."""
    for flag, path in (("--cert", args.cert), ("--key", args.key), ("--ca", args.ca)):
        _require_file(flag, path)
    _check_server_tls(args.cert, args.key, args.ca)
    _check_can_listen(args.host, args.port)
    if args.dossiers is not None and not args.dossiers.is_dir():
        raise InvalidInput(f"--dossiers {args.dossiers} is not a directory")
    if not math.isfinite(args.notify_after) or args.notify_after < 0:
        raise InvalidInput("--notify-after must be a number of seconds, at least 0")
    if args.check_session and args.tc_url is None:
        raise InvalidInput("--check-session needs --tc-url and this school's client certificate")
    return LasConfig(
        cert=args.cert,
        key=args.key,
        ca=args.ca,
        host=args.host,
        port=args.port,
        path=args.path.rstrip("/"),
        sector=parse_sector(args.sector),
        brin=args.brin,
        dossiers=args.dossiers,
        scheme_key=_scheme_key(args.scheme_key_file),
        pupils=_pupils(args.pupil),
        tc_url=args.tc_url,
        client_tls=_client_tls(args),
        notify_after=args.notify_after,
        check_session=args.check_session,
        swv_meldingen=_swv_meldingen(args.swv_melding),
    )


def _swv_meldingen(given: list[str]) -> dict[str, str]:
    meldingen = {}
    for item in given:
        pgn, equals, routeringskenmerk = item.partition("=")
        if not equals:
            raise InvalidInput(f"--swv-melding {item!r}: write PGN=ROUTERINGSKENMERK")
        meldingen[pgn] = routeringskenmerk
    return meldingen


def _scheme_key(path: Path | None) -> bytes:
    if path is not None:
        _require_file("--scheme-key-file", path)
        try:
            return parse_scheme_key(path.read_text(encoding="ascii", errors="replace"))
        except InvalidInput as exc:
            raise InvalidInput(f"--scheme-key-file {path}: {exc.detail}") from None
    given = os.environ.get(SCHEME_KEY_ENV)
    if given:
        try:
            return parse_scheme_key(given)
        except InvalidInput as exc:
            raise InvalidInput(f"${SCHEME_KEY_ENV}: {exc.detail}") from None
    return TEST_SCHEME_KEY


def _pupils(given: list[str]) -> dict[str, str]:
    pupils = {}
    for item in given:
        pgn, equals, scenario = item.partition("=")
        if not equals:
            raise InvalidInput(f"--pupil {item!r}: write PGN=SCENARIO, e.g. 999990056=gereed")
        try:
            Roster(TEST_SCHEME_KEY, {pgn: scenario})
        except InvalidInput as exc:
            raise InvalidInput(f"--pupil {item!r}: {exc.detail}") from None
        pupils[pgn] = scenario
    return pupils


def _client_tls(args: argparse.Namespace) -> ClientTLS | None:
    given = [args.tc_url, args.client_cert, args.client_key]
    if not any(given):
        return None
    if not all(given):
        raise InvalidInput("--tc-url, --client-cert and --client-key go together")
    _require_file("--client-cert", args.client_cert)
    _require_file("--client-key", args.client_key)
    tls = ClientTLS(cert=args.client_cert, key=args.client_key, ca=args.ca)
    try:
        tls.ssl_context()
    except (ssl.SSLError, OSError) as exc:
        raise InvalidInput(f"cannot use --client-cert/--client-key: {exc}") from None
    return tls


def _require_file(flag: str, path: Path) -> None:
    if not path.is_file():
        raise InvalidInput(f"{flag} {path}: no such file")


def _check_server_tls(cert: Path, key: Path, ca: Path) -> None:
    try:
        server_ssl_context(certfile=str(cert), keyfile=str(key), client_ca=str(ca))
    except (ssl.SSLError, OSError) as exc:
        raise InvalidInput(f"cannot use --cert/--key/--ca: {exc}") from None


def _check_can_listen(host: str, port: int) -> None:
    # uvicorn would log the bind error and exit 3; say it in one line, like any bad flag.
    if not 0 <= port <= 65535:
        raise InvalidInput(f"--port {port} is not a TCP port")
    try:
        socket.create_server((host, port)).close()
    except OSError as exc:
        raise InvalidInput(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None


def print_event(event: Event) -> None:
    print(json.dumps(event, separators=(",", ":"), default=str), flush=True)
