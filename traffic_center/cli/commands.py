"""Every command's arguments, and the handler each runs, named rather than imported.

Building the parser must stay cheap: a certificate admin runs `traffic-center` all day, and
`--help` or a typo should not load FastAPI, SQLAlchemy, uvicorn or httpx. So this module
imports only the standard library and light constants; each command names its handler as
``"module:function"`` (see :func:`handled_by`), and :mod:`traffic_center.cli.main` imports that
module only when the command runs. `tests/test_cli_startup.py` holds this module to that.

To add a command: declare its arguments here and end with ``handled_by(parser,
"traffic_center.cli.<module>:<function>")``; write the handler (``args -> int``, or a coroutine
returning one) in that module, which may import anything.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TypeAlias

from traffic_center.domain.identifiers import EndpointKind, Sector
from traffic_center.domain.models import (
    DEFAULT_CRL_DAYS,
    DEFAULT_LEAF_DAYS,
    MAX_CRL_DAYS,
    MAX_LEAF_DAYS,
    MIN_CRL_DAYS,
    REVOCATION_REASON_NAMES,
)
from traffic_center.las.config import DEFAULT_BASE_PATH
from traffic_center.las.scenarios import TEST_BRIN

DAYS_HELP = (
    f"validity in days, 1 to {MAX_LEAF_DAYS} [{DEFAULT_LEAF_DAYS}]; never beyond the CA's own "
    "expiry (a note says so when it is shortened)"
)
OUT_HELP = (
    "file prefix: writes OUT.pem and, unless --csr, OUT.key (mode 0600); `school.pem` means "
    "the prefix `school`; never overwrites"
)
# A string: argparse's action class cannot be subscripted at run time.
Subparsers: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"


def handled_by(parser: argparse.ArgumentParser, target: str) -> None:
    """The command runs ``target`` ("module:function"), imported only when it is chosen."""
    parser.set_defaults(handler=target)


def add_all(commands: Subparsers) -> None:
    """Every command, in the order `traffic-center --help` lists them."""
    add_ca(commands)
    add_registry(commands)
    add_serve(commands)
    add_las(commands)
    add_demo(commands)
    add_audit(commands)
    add_qualify(commands)
    add_sandbox(commands)


def add_ca(subparsers: Subparsers) -> None:
    ca = subparsers.add_parser("ca", help="the certificate authority")
    verbs = ca.add_subparsers(dest="verb", required=True, metavar="VERB")
    handlers = "traffic_center.cli.ca"

    init = verbs.add_parser("init", help="create the CA (refuses to touch an existing one)")
    init.add_argument(
        "--name", default="OSO Traffic Center CA", help="the CA's common name (1-64 characters)"
    )
    handled_by(init, f"{handlers}:init_ca")

    server = verbs.add_parser("issue-server", help="issue a server certificate (serverAuth only)")
    server.add_argument(
        "--host",
        action="append",
        required=True,
        help="a DNS name (an IDN is encoded as xn--…; no wildcards) or an IP address; repeat",
    )
    server.add_argument(
        "--csr", type=Path, help="sign this CSR (only its key is used); the LAS keeps its key"
    )
    server.add_argument("--days", type=int, default=DEFAULT_LEAF_DAYS, help=DAYS_HELP)
    server.add_argument("--out", required=True, help=OUT_HELP)
    handled_by(server, f"{handlers}:issue_server")

    client = verbs.add_parser("issue", help="issue an endpoint's client certificate")
    client.add_argument("--routeringskenmerk", required=True, help="the endpoint's 20 digits")
    client.add_argument(
        "--brin", help="the school's BRIN, e.g. 12AB; must be the endpoint's [the registered one]"
    )
    client.add_argument(
        "--name", required=True, help="the school's name (subject O, 1-64 characters)"
    )
    client.add_argument("--csr", type=Path, help="sign this CSR; the school keeps its key")
    client.add_argument("--days", type=int, default=DEFAULT_LEAF_DAYS, help=DAYS_HELP)
    client.add_argument("--out", required=True, help=OUT_HELP)
    handled_by(client, f"{handlers}:issue_client")

    relay = verbs.add_parser("issue-relay", help="issue the TC's own client certificate")
    relay.add_argument("--out", required=True, help=OUT_HELP)
    handled_by(relay, f"{handlers}:issue_relay")

    proxy = verbs.add_parser(
        "issue-proxy",
        help="issue a TLS-terminating proxy's client certificate (its Client-Cert is believed)",
    )
    proxy.add_argument("--csr", type=Path, help="sign this CSR; the proxy keeps its key")
    proxy.add_argument("--days", type=int, default=DEFAULT_LEAF_DAYS, help=DAYS_HELP)
    proxy.add_argument("--out", required=True, help=OUT_HELP)
    handled_by(proxy, f"{handlers}:issue_proxy")

    revoke = verbs.add_parser("revoke", help="revoke a certificate by serial")
    revoke.add_argument("serial", help="serial as `ca list` prints it")
    revoke.add_argument("--reason", default="unspecified", choices=sorted(REVOCATION_REASON_NAMES))
    handled_by(revoke, f"{handlers}:revoke_certificate")

    listing = verbs.add_parser("list", help="list issued certificates")
    listing.add_argument("--json", action="store_true", help="a JSON array")
    # Its own module: the listing skips the settings and the async store when it can.
    handled_by(listing, "traffic_center.cli.ca_list:list_certificates")

    crl = verbs.add_parser(
        "crl",
        help="sign a fresh CRL and publish it to the nodes (GET /v1/crl); `ca revoke` does too",
    )
    crl.add_argument("--out", type=Path, help="also write it here (PEM)")
    crl.add_argument(
        "--days",
        type=int,
        default=DEFAULT_CRL_DAYS,
        help=(
            f"days until the CRL's nextUpdate, {MIN_CRL_DAYS}-{MAX_CRL_DAYS} (default "
            f"{DEFAULT_CRL_DAYS}); nodes cannot re-sign it, so run `ca crl` daily on a schedule"
        ),
    )
    handled_by(crl, f"{handlers}:write_crl")


def add_registry(subparsers: Subparsers) -> None:
    handlers = "traffic_center.cli.registry"
    school = subparsers.add_parser("school", help="register schools")
    verbs = school.add_subparsers(dest="verb", required=True, metavar="VERB")
    add = verbs.add_parser("add", help="register a school")
    add.add_argument("--brin", required=True, help="two digits and two letters, e.g. 12AB")
    add.add_argument("--name", required=True)
    add.add_argument("--sector", required=True, help="|".join(s.value for s in Sector))
    add.add_argument("--board", help="the school board (bevoegd gezag)")
    handled_by(add, f"{handlers}:add_school")
    listing = verbs.add_parser("list", help="list schools")
    listing.add_argument("--json", action="store_true")
    handled_by(listing, f"{handlers}:list_schools")
    deactivate = verbs.add_parser("deactivate", help="stop a school from exchanging")
    deactivate.add_argument("brin")
    handled_by(deactivate, f"{handlers}:deactivate_school")
    reactivate = verbs.add_parser("reactivate", help="let a deactivated school exchange again")
    reactivate.add_argument("brin")
    handled_by(reactivate, f"{handlers}:reactivate_school")

    endpoint = subparsers.add_parser("endpoint", help="register endpoints (aanleverpunten)")
    verbs = endpoint.add_subparsers(dest="verb", required=True, metavar="VERB")
    add = verbs.add_parser("add", help="register an endpoint of a school's LAS")
    add.add_argument("--routeringskenmerk", required=True, help="20 digits")
    add.add_argument("--brin", required=True)
    add.add_argument("--url", required=True, help="https base URL of the LAS endpoint")
    add.add_argument("--kind", default="OV", help="|".join(k.value for k in EndpointKind))
    handled_by(add, f"{handlers}:add_endpoint")
    listing = verbs.add_parser("list", help="list endpoints")
    listing.add_argument("--json", action="store_true")
    handled_by(listing, f"{handlers}:list_endpoints")
    deactivate = verbs.add_parser("deactivate", help="stop an endpoint from exchanging")
    deactivate.add_argument("routeringskenmerk")
    handled_by(deactivate, f"{handlers}:deactivate_endpoint")
    reactivate = verbs.add_parser("reactivate", help="let a deactivated endpoint exchange again")
    reactivate.add_argument("routeringskenmerk")
    handled_by(reactivate, f"{handlers}:reactivate_endpoint")
    move = verbs.add_parser(
        "set-url",
        help="move an endpoint to a new URL; it keeps its identity, sessions and notifications",
    )
    move.add_argument("routeringskenmerk")
    move.add_argument("--url", required=True, help="the new https base URL of the LAS endpoint")
    handled_by(move, f"{handlers}:move_endpoint")


def add_serve(subparsers: Subparsers) -> None:
    serve = subparsers.add_parser("serve", help="run the Traffic Center")
    serve.add_argument("--host", help="vendor (mTLS) listener address [TC_HOST, 127.0.0.1]")
    serve.add_argument("--port", type=int, help="vendor listener port [TC_PORT, 8443]")
    serve.add_argument("--ops-host", help="ops listener address [TC_OPS_HOST, 127.0.0.1]")
    serve.add_argument("--ops-port", type=int, help="ops listener port [TC_OPS_PORT, 9464]")
    serve.add_argument("--tls-cert", type=Path, help="server certificate [TC_HOME/server.pem]")
    serve.add_argument("--tls-key", type=Path, help="server key [TC_HOME/server.key]")
    serve.add_argument("--workers", type=int, help="worker processes [TC_WORKERS, 1]")
    serve.add_argument(
        "--upstream-cert", type=Path, help="relay client certificate [TC_HOME/relay.pem]"
    )
    serve.add_argument("--upstream-key", type=Path, help="relay client key [TC_HOME/relay.key]")
    serve.add_argument(
        "--upstream-ca", type=Path, help="trust bundle for LAS server certificates [the TC CA]"
    )
    serve.add_argument(
        "--dev",
        action="store_true",
        default=None,
        help="create a dev CA, server certificate and three schools under TC_HOME if missing",
    )
    handled_by(serve, "traffic_center.cli.serve:serve_command")
    serve.set_defaults(serves_tls=True)  # restarts with the TLS group policy (server/groups.py)

    db = subparsers.add_parser("db", help="the database")
    verbs = db.add_subparsers(dest="verb", required=True, metavar="VERB")
    upgrade = verbs.add_parser("upgrade", help="apply migrations up to the newest")
    handled_by(upgrade, "traffic_center.cli.serve:upgrade_command")


def add_las(subparsers: Subparsers) -> None:
    las = subparsers.add_parser("las", help="the reference LAS (test school 00YY)")
    verbs = las.add_subparsers(dest="verb", required=True, metavar="VERB")
    serve = verbs.add_parser("serve", help="run a LAS endpoint the Traffic Center can call")
    serve.add_argument("--cert", type=Path, required=True, help="server certificate (PEM)")
    serve.add_argument("--key", type=Path, required=True, help="server key (PEM)")
    serve.add_argument(
        "--ca", type=Path, required=True, help="the TC's CA: verifies the relay and the TC"
    )
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on [127.0.0.1]")
    serve.add_argument("--port", type=int, default=0, help="port; 0 picks a free one [0]")
    serve.add_argument("--path", default=DEFAULT_BASE_PATH, help="endpoint base path [/oso]")
    serve.add_argument("--sector", default=Sector.PO.value, help="this school's sector [PO]")
    serve.add_argument("--brin", default=TEST_BRIN, help=f"this school's BRIN [{TEST_BRIN}]")
    serve.add_argument("--dossiers", type=Path, help="serve DIR/<PGN>.xml for that pupil")
    serve.add_argument(
        "--scheme-key-file",
        type=Path,
        help="zoeksleutel v1 scheme key, 64 hex digits (or $OSO_SCHEME_KEY); "
        "default: the public TEST key, for test school 00YY only",
    )
    serve.add_argument(
        "--pupil",
        action="append",
        default=[],
        metavar="PGN=SCENARIO",
        help="hold this pupil too, e.g. 999990056=grootte-5000000; repeat",
    )
    serve.add_argument("--tc-url", help="the TC, to notify when a dossier becomes ready")
    serve.add_argument("--client-cert", type=Path, help="this school's client certificate")
    serve.add_argument("--client-key", type=Path, help="this school's client key")
    serve.add_argument(
        "--notify-after", type=float, default=1.0, help="seconds until nietgereed is ready [1]"
    )
    serve.add_argument(
        "--check-session",
        action="store_true",
        help="call the TC's session check (--tc-url) before answering a dossier request",
    )
    serve.add_argument(
        "--swv-melding",
        action="append",
        default=[],
        metavar="PGN=ROUTERINGSKENMERK",
        help="the SWV flow: at start, tell this SWV endpoint about this pupil; repeat",
    )
    handled_by(serve, "traffic_center.cli.las:serve_command")
    serve.set_defaults(serves_tls=True)  # restarts with the TLS group policy (server/groups.py)


def add_demo(subparsers: Subparsers) -> None:
    demo = subparsers.add_parser(
        "demo",
        help="a Traffic Center and two reference LAS processes doing real transfers over mTLS",
    )
    demo.add_argument(
        "--keep", action="store_true", help="keep the temporary directory (certificates, logs)"
    )
    handled_by(demo, "traffic_center.cli.demo:demo_command")


def add_audit(subparsers: Subparsers) -> None:
    audit = subparsers.add_parser("audit", help="the hash-chained audit log")
    verbs = audit.add_subparsers(dest="verb", required=True, metavar="VERB")
    verify = verbs.add_parser("verify", help="walk the chain: OK, or the first broken record")
    handled_by(verify, "traffic_center.cli.audit:verify_command")
    rotate = verbs.add_parser(
        "rotate-key",
        help="hand the chain to a new secret: an audited record, signed by the current one",
        description=(
            "Appends a sleutelGewisseld record signed with the current TC_SECRET_KEY that names "
            "the new key's id; from then on only the new secret may write. Then give every node "
            "and the CLI the new TC_SECRET_KEY and keep the old one in TC_PREVIOUS_SECRET_KEYS "
            "(comma-separated) so `audit verify` can check the records before the rotation."
        ),
    )
    rotate.add_argument(
        "--new-key-file",
        required=True,
        type=Path,
        help="file holding the new secret (64+ hex digits or 43+ base64 characters)",
    )
    handled_by(rotate, "traffic_center.cli.audit:rotate_key_command")
    export = verbs.add_parser("export", help="write records as JSON lines")
    export.add_argument("--since", help="from this moment (ISO 8601, e.g. 2026-11-01T00:00Z)")
    export.add_argument("--until", help="up to, not including, this moment (ISO 8601)")
    export.add_argument("--out", type=Path, help="file to write [standard output]")
    handled_by(export, "traffic_center.cli.audit:export_command")


def add_qualify(subparsers: Subparsers) -> None:
    qualify = subparsers.add_parser(
        "qualify", help="qualify a vendor's LAS against the OSO contract (test school 00YY)"
    )
    verbs = qualify.add_subparsers(dest="verb", required=True, metavar="VERB")
    add_qualify_bron(verbs)
    add_qualify_doel(verbs)


def add_qualify_bron(verbs: Subparsers) -> None:
    bron = verbs.add_parser(
        "bron",
        help="call a LAS's POST {url}/dossier as the relay does and judge every answer",
        description=(
            "Calls the bron endpoint with the relay certificate for one test pupil per "
            "scenario, and as callers it must refuse (none, a school's certificate, a foreign "
            "CA's). With --home of the sandbox the CA, the relay certificate and the CA key (to "
            "issue the school probe) are found there. Exit 0 only when every check passed."
        ),
    )
    bron.add_argument(
        "--url", required=True, help="the endpoint's base URL, e.g. https://las.example/oso"
    )
    bron.add_argument(
        "--ca", type=Path, help="CA the LAS's server certificate chains to [TC_HOME/ca/ca.pem]"
    )
    bron.add_argument("--relay-cert", type=Path, help="the relay's certificate [TC_HOME/relay.pem]")
    bron.add_argument("--relay-key", type=Path, help="the relay's key [TC_HOME/relay.key]")
    bron.add_argument(
        "--pupil",
        action="append",
        default=[],
        metavar="SCENARIO=PGN",
        help="the test pupil for gereed, nietgereed, geeninzage, geentoestemming, verouderd, "
        "onbekend; repeat [test school 00YY's pupils]",
    )
    bron.add_argument(
        "--scheme-key-file",
        type=Path,
        help="zoeksleutel v1 scheme key, 64 hex digits (or $OSO_SCHEME_KEY) [the public TEST key]",
    )
    bron.add_argument("--bron-sector", default=Sector.PO.value, help="the LAS's school sector [PO]")
    bron.add_argument(
        "--doel-sector", default=Sector.VO.value, help="the asking doel's sector [VO]"
    )
    bron.add_argument("--xsd", type=Path, help="validate the dossier against this XSD (xmlschema)")
    bron.add_argument(
        "--timeout",
        type=float,
        default=30.0,
        help="seconds allowed between reads, as the relay [30]; connect: at most 5",
    )
    bron.add_argument(
        "--sandbox-checks",
        metavar="TC_URL",
        help="also judge, through this running sandbox TC (--home: its tc/ directory), that the "
        "LAS calls the session check first and notifies after not ready; the LAS must use the "
        "sandbox's 00YY client certificate and this TC URL",
    )
    bron.add_argument(
        "--notify-within",
        type=float,
        default=60.0,
        help="seconds the LAS takes at most to notify after not ready [60]",
    )
    bron.add_argument("--junit", type=Path, help="also write the results as JUnit XML")
    bron.add_argument("--json", type=Path, help="also write the results as JSON")
    handled_by(bron, "traffic_center.cli.qualify:bron_command")


def add_sandbox(subparsers: Subparsers) -> None:
    sandbox = subparsers.add_parser(
        "sandbox",
        help="a TC, test school 00YY's reference LAS and a doel endpoint for your LAS; "
        "runs until Ctrl-C",
    )
    sandbox.add_argument(
        "--home",
        dest="sandbox_home",
        type=Path,
        help="keep certificates and logs here (a new directory) [a temporary one, removed]",
    )
    sandbox.add_argument("--port", type=int, help="the TC's vendor port [a free one]")
    handled_by(sandbox, "traffic_center.cli.sandbox:sandbox_command")


def add_qualify_doel(verbs: Subparsers) -> None:
    doel = verbs.add_parser(
        "doel", help="qualify your doel client: it fetches test pupils, the TC's records judge"
    )
    doel.add_argument(
        "--home",
        dest="sandbox_home",
        type=Path,
        help="keep the sandbox here (a new directory) [a temporary one, removed]",
    )
    doel.add_argument("--port", type=int, help="the sandbox TC's vendor port [a free one]")
    doel.add_argument(
        "--wait",
        type=float,
        default=600.0,
        metavar="SECONDS",
        help="judge when your doel has done everything, or after this long [600]",
    )
    doel.add_argument("--junit", type=Path, help="also write the results as JUnit XML")
    doel.add_argument("--json", type=Path, help="also write the results as JSON")
    handled_by(doel, "traffic_center.cli.qualify_doel:doel_command")
