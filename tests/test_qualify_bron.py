"""`qualify bron` over real mutual TLS: the reference LAS passes; each broken bron is named."""

from __future__ import annotations

import asyncio
import gzip
import json
import ssl
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.gegevensset import EXAMPLES, XSD
from tests.support.hostile import Exchange, HostileBron, Scenario
from tests.support.las import AppServer, fixed_answer
from tests.support.processes import free_port
from traffic_center import USER_AGENT
from traffic_center.admin.store import open_store
from traffic_center.cli.main import main
from traffic_center.domain.las_contract import DOSSIER_ACCEPT, DOSSIER_NAMESPACE, RELEASE_HEADER
from traffic_center.las.config import LasConfig
from traffic_center.las.doel import ClientTLS
from traffic_center.las.pupils import TEST_PUPILS, TEST_SCHEME_KEY, Roster
from traffic_center.las.server import LasServer
from traffic_center.pki.ca import CertificateAuthority, write_issued
from traffic_center.qualify.sandbox import QUALIFY_BRON, QualifySandbox
from traffic_center.qualify.watched import CHECK_FIRST, MISMATCH, NOTIFIES, WATCHED

# Valid against the OSO gegevensset XSD (the standard's own example): for the broken brons.
VALID_DOSSIER = (EXAMPLES / "Voorbeelddossier_OV_POVO_full.xml").read_bytes()
ACCESS_CHECKS = {
    "refuses a caller without a certificate",
    "refuses a certificate from a foreign CA",
    "refuses a school's certificate",
}


@dataclass(frozen=True)
class Sandbox:
    """A TC home as the sandbox lays it out: ca/ca.pem and ca.key, relay.pem and relay.key."""

    home: Path
    ca: Path
    server: tuple[Path, Path]


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Sandbox:
    home = tmp_path_factory.mktemp("qualify-home")
    ca = CertificateAuthority.create(home / "ca")
    write_issued(ca.issue_relay_certificate(), home / "relay")
    key, pem = write_issued(ca.issue_server_certificate(hosts=["127.0.0.1"]), home / "las")
    return Sandbox(home=home, ca=home / "ca" / "ca.pem", server=(pem, key))


def las_config(sandbox: Sandbox) -> LasConfig:
    # nietgereed stays not ready for the whole run: nobody is notified, nothing turns ready.
    return LasConfig(cert=sandbox.server[0], key=sandbox.server[1], ca=sandbox.ca, notify_after=300)


@pytest.fixture
def reference_las(sandbox: Sandbox) -> Iterator[LasServer]:
    pupils = Roster(TEST_SCHEME_KEY, TEST_PUPILS)
    with LasServer(las_config(sandbox), pupils=pupils).start() as server:
        yield server


@dataclass
class Outcome:
    exit_code: int
    results: dict[str, Any]
    junit: ET.Element
    table: str

    def failed(self, scenario: str) -> set[str]:
        return {
            check["name"]
            for check in self.results["checks"]
            if check["scenario"] == scenario and not check["passed"]
        }

    def passed(self, scenario: str) -> set[str]:
        return {
            check["name"]
            for check in self.results["checks"]
            if check["scenario"] == scenario and check["passed"]
        }


def qualify(
    sandbox: Sandbox,
    url: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    *extra: str,
) -> Outcome:
    junit, results = tmp_path / "junit.xml", tmp_path / "results.json"
    argv = ["--home", str(sandbox.home), "qualify", "bron", "--url", url, "--xsd", str(XSD)]
    argv += ["--junit", str(junit), "--json", str(results), *extra]
    exit_code = main(argv)
    table = capsys.readouterr().out
    return Outcome(exit_code, json.loads(results.read_text()), ET.parse(junit).getroot(), table)


def test_the_reference_las_passes_every_check(
    sandbox: Sandbox,
    reference_las: LasServer,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    outcome = qualify(sandbox, reference_las.url, tmp_path, capsys)
    failed = [c for c in outcome.results["checks"] if not c["passed"]]
    assert failed == []
    assert outcome.exit_code == 0
    assert outcome.results["ok"] is True
    assert outcome.passed("toegang") == ACCESS_CHECKS
    assert outcome.passed("gereed") >= {
        "answers HTTP 200",
        "dossier is application/xml",
        "Content-Length or chunked framing",
        "well-formed XML",
        "valid against the XSD",
        f"{RELEASE_HEADER} attests inzage",
        "answers within the relay's timeouts",
    }
    assert "result code DossierNogNietGereed" in outcome.passed("nietgereed")
    assert "result code DossierVerouderd" in outcome.passed("verouderd")
    assert "answers HTTP 404" in outcome.passed("onbekend")
    suites = {suite.get("name"): suite for suite in outcome.junit.iter("testsuite")}
    assert set(suites) == {"toegang", "gereed", *("nietgereed", "geeninzage")} | {
        "geentoestemming",
        "verouderd",
        "onbekend",
    }
    assert all(suite.get("failures") == "0" for suite in suites.values())
    assert "0 failed" in outcome.table
    assert outcome.results["hints"] == []
    # The curl line of the probe without a certificate sends none (it sent the relay's).
    [bare] = [
        c["reproduce"]
        for c in outcome.results["checks"]
        if c["name"] == "refuses a caller without a certificate"
    ]
    assert bare.startswith("curl ")
    assert "--cert" not in bare


def test_a_las_deriving_the_zoeksleutel_otherwise_gets_one_hint_saying_so(
    sandbox: Sandbox, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Derived otherwise than the doel's (here: another scheme key), every pupil the LAS holds
    is DossierNietGevonden: five scenarios fail, and one line names the likely cause."""
    pupils = Roster(bytes(reversed(TEST_SCHEME_KEY)), TEST_PUPILS)
    with LasServer(las_config(sandbox), pupils=pupils).start() as server:
        outcome = qualify(sandbox, server.url, tmp_path, capsys)
    assert outcome.exit_code == 1
    assert outcome.passed("onbekend") >= {"result code DossierNietGevonden"}
    [hint] = outcome.results["hints"]
    assert "DossierNietGevonden" in hint
    assert "docs/zoeksleutel.md" in hint
    assert f"hint: {hint}" in outcome.table


def test_a_vo_to_vo_transfer_needs_toestemming(
    sandbox: Sandbox,
    reference_las: LasServer,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The reference LAS is a PO school: it attests inzage, which a VO bron may not."""
    outcome = qualify(sandbox, reference_las.url, tmp_path, capsys, "--bron-sector", "VO")
    assert outcome.failed("gereed") == {f"{RELEASE_HEADER} attests toestemming"}
    assert outcome.exit_code == 1


def _app_server(sandbox: Sandbox, app: Any) -> Iterator[AppServer]:
    server = AppServer(las_config(sandbox), app).start()
    try:
        yield server
    finally:
        server.stop()


def _dossier_app(body: bytes, *, content_type: str, release: str | None) -> Any:
    headers = [("content-type", content_type), ("content-length", str(len(body)))]
    if release is not None:
        headers.append((RELEASE_HEADER, release))
    return fixed_answer(200, headers, body)


async def _hangs(scope: Any, receive: Any, send: Any) -> None:
    """Reads the request, then never answers: waits until the caller hangs up."""
    if scope["type"] != "http":
        return
    while (await receive())["type"] != "http.disconnect":
        pass


INVALID_DOSSIER = f'<dossier xmlns="{DOSSIER_NAMESPACE}"><onzin/></dossier>'.encode()

BROKEN = {
    # Any certificate of the CA gets the dossier, a school's too: only the relay may.
    "accepts any client certificate": (
        _dossier_app(VALID_DOSSIER, content_type="application/xml", release="inzage"),
        "toegang",
        {"refuses a school's certificate"},
    ),
    "answers 200 with HTML": (
        _dossier_app(
            b"<html><body>Inloggen</body></html>", content_type="text/html", release="inzage"
        ),
        "gereed",
        {"dossier is application/xml", "valid against the XSD"},
    ),
    "dossier invalid against the XSD": (
        _dossier_app(INVALID_DOSSIER, content_type="application/xml", release="inzage"),
        "gereed",
        {"valid against the XSD"},
    ),
    "no release header": (
        _dossier_app(VALID_DOSSIER, content_type="application/xml", release=None),
        "gereed",
        {f"{RELEASE_HEADER} attests inzage"},
    ),
}


@pytest.mark.parametrize("fault", list(BROKEN))
def test_a_broken_bron_is_reported_by_name(
    fault: str, sandbox: Sandbox, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    app, scenario, named = BROKEN[fault]
    for server in _app_server(sandbox, app):
        outcome = qualify(sandbox, server.url, tmp_path, capsys)
    assert outcome.exit_code == 1
    assert outcome.results["ok"] is False
    assert outcome.failed(scenario) == named
    for name in named:
        assert f"FAIL {scenario}: {name}" in outcome.table
    # Each failure says how to reproduce it with curl.
    reproduce = [c["reproduce"] for c in outcome.results["checks"] if c["name"] in named]
    assert all(r and r.startswith("curl ") for r in reproduce)
    suite = next(s for s in outcome.junit.iter("testsuite") if s.get("name") == scenario)
    assert suite.get("failures") == str(len(named))


@pytest.mark.parametrize(
    ("app", "scenario", "check", "said"),
    [
        (
            _dossier_app(VALID_DOSSIER, content_type="", release="inzage"),
            "gereed",
            "dossier is application/xml",
            "no Content-Type",
        ),
        (
            fixed_answer(409, [("content-type", "application/problem+json")], b'{"title": "x"}'),
            "nietgereed",
            "result code DossierNogNietGereed",
            "a body without a `code` field",
        ),
        (
            fixed_answer(
                409,
                [("content-type", "application/problem+json")],
                b'{"code": "DossierNogNietGereed", "status": 500}',
            ),
            "nietgereed",
            "problem has type, title and status",
            "no type or title",
        ),
    ],
)
def test_what_is_missing_is_named_not_shown_as_nothing(
    sandbox: Sandbox,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    app: Any,
    scenario: str,
    check: str,
    said: str,
) -> None:
    """A missing Content-Type read "got: " and a problem without a code "got: None"; a
    problem with only a code passed (the contract's Problem needs type, title and status)."""
    for server in _app_server(sandbox, app):
        outcome = qualify(sandbox, server.url, tmp_path, capsys)
    assert got(outcome, scenario, check) == said


def _outdated_whenever_a_date_is_given(dossier: bytes) -> Any:
    """A LAS answering DossierVerouderd to any request with an aanvraagdatum, the dossier
    (PO→VO, released) otherwise."""
    verouderd = fixed_answer(
        409,
        [("content-type", "application/problem+json")],
        json.dumps(
            {"type": "about:blank", "title": "Verouderd", "status": 409, "code": "DossierVerouderd"}
        ).encode(),
    )
    served = _dossier_app(dossier, content_type="application/xml", release="inzage")

    async def app(scope: Any, receive: Any, send: Any) -> None:
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        dated = json.loads(body or b"{}").get("aanvraagdatum") is not None

        async def replayed() -> dict[str, Any]:
            return {"type": "http.request", "body": body, "more_body": False}

        await (verouderd if dated else served)(scope, replayed, send)

    return app


def test_a_las_calling_every_dated_request_outdated_fails_gereed(
    sandbox: Sandbox, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Only verouderd was asked with an aanvraagdatum, so such a LAS passed; gereed now asks
    with one long past, which any dossier is newer than."""
    for server in _app_server(sandbox, _outdated_whenever_a_date_is_given(VALID_DOSSIER)):
        outcome = qualify(sandbox, server.url, tmp_path, capsys)
    assert "answers HTTP 200" in outcome.failed("gereed")
    assert got(outcome, "gereed", "answers HTTP 200") == "409"
    assert "result code DossierVerouderd" in outcome.passed("verouderd")


# --- answers no HTTP server library sends: a raw TLS bron (tests/support/hostile.py) ---------


@pytest.fixture
async def hostile(sandbox: Sandbox) -> AsyncIterator[HostileBron]:
    """Requires a client certificate of the sandbox CA, like every LAS: the school probe gets
    through, the others are refused in the handshake."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=str(sandbox.ca))
    context.verify_mode = ssl.CERT_REQUIRED
    context.load_cert_chain(str(sandbox.server[0]), str(sandbox.server[1]))
    bron = HostileBron(context)
    await bron.start()
    yield bron
    await bron.stop()


def dossier_head(*framing: str, extra: str = "") -> bytes:
    lines = ["HTTP/1.1 200 OK", "Content-Type: application/xml", f"{RELEASE_HEADER}: inzage"]
    return ("\r\n".join([*lines, *framing]) + f"\r\n{extra}\r\n").encode()


def chunked(body: bytes, *, last: bool = True) -> bytes:
    pieces = [body[at : at + 4096] for at in range(0, len(body), 4096)]
    framed = b"".join(f"{len(p):x}\r\n".encode() + p + b"\r\n" for p in pieces)
    return framed + (b"0\r\n\r\n" if last else b"")


def answering(answer: bytes) -> Scenario:
    """Every request gets ``answer``, then the connection closes."""

    async def scenario(exchange: Exchange) -> bool:
        await exchange.send(answer)
        return False

    return scenario


async def qualify_hostile(
    sandbox: Sandbox,
    bron: HostileBron,
    answer: bytes,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> Outcome:
    bron.scenarios["bron"] = answering(answer)
    return await asyncio.to_thread(qualify, sandbox, bron.url("bron"), tmp_path, capsys)


def got(outcome: Outcome, scenario: str, name: str) -> str:
    return str(
        next(
            c["got"]
            for c in outcome.results["checks"]
            if c["scenario"] == scenario and c["name"] == name
        )
    )


async def test_content_length_with_chunked_fails_the_framing(
    sandbox: Sandbox, hostile: HostileBron, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The relay refuses every answer with both (RFC 9112 §6.1): the doel would get 502."""
    answer = dossier_head(f"Content-Length: {len(VALID_DOSSIER)}", "Transfer-Encoding: chunked")
    outcome = await qualify_hostile(
        sandbox, hostile, answer + chunked(VALID_DOSSIER), tmp_path, capsys
    )
    assert outcome.exit_code == 1
    assert "Content-Length or chunked framing" in outcome.failed("gereed")
    assert "both Content-Length and Transfer-Encoding: send one" in got(
        outcome, "gereed", "Content-Length or chunked framing"
    )


def _negotiating_gzip(body: bytes, seen: list[dict[str, str]]) -> Any:
    """Gzips the dossier when the caller accepts gzip, as web servers do by default; keeps
    each dossier request's headers in ``seen``."""
    plain = _dossier_app(body, content_type="application/xml", release="inzage")
    coded = gzip.compress(body)
    headers = [("content-type", "application/xml"), ("content-length", str(len(coded)))]
    headers += [("content-encoding", "gzip"), (RELEASE_HEADER, "inzage")]
    compressed = fixed_answer(200, headers, coded)

    async def app(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        asked = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
        seen.append(asked)
        answer = compressed if "gzip" in asked.get("accept-encoding", "") else plain
        await answer(scope, receive, send)

    return app


def test_the_bron_is_asked_with_the_relay_s_headers(
    sandbox: Sandbox, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A LAS negotiating gzip is asked for identity, as by the relay, and passes."""
    seen: list[dict[str, str]] = []
    for server in _app_server(sandbox, _negotiating_gzip(VALID_DOSSIER, seen)):
        outcome = qualify(sandbox, server.url, tmp_path, capsys)
    assert outcome.failed("gereed") == set()
    relayed = seen[-1]
    assert relayed["accept-encoding"] == "identity"
    assert relayed["accept"] == DOSSIER_ACCEPT
    assert relayed["user-agent"] == USER_AGENT
    assert "traceparent" in relayed
    assert "connection" not in relayed  # the relay sends none; httpx would


def test_a_compressed_dossier_fails_by_name(
    sandbox: Sandbox, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Compressed whatever was asked: named as such, not as a Content-Length mismatch."""
    coded = gzip.compress(VALID_DOSSIER)
    headers = [("content-type", "application/xml"), ("content-length", str(len(coded)))]
    headers += [("content-encoding", "gzip"), (RELEASE_HEADER, "inzage")]
    for server in _app_server(sandbox, fixed_answer(200, headers, coded)):
        outcome = qualify(sandbox, server.url, tmp_path, capsys)
    assert outcome.failed("gereed") == {"no Content-Encoding"}
    assert "the relay asks for identity; send the dossier uncompressed" in got(
        outcome, "gereed", "no Content-Encoding"
    )


def test_a_las_that_cannot_be_reached_refuses_nobody(
    sandbox: Sandbox, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Connection refused is the qualifier's failure to ask, not the LAS's refusal."""
    outcome = qualify(sandbox, f"https://127.0.0.1:{free_port()}/oso", tmp_path, capsys)
    assert outcome.exit_code == 1
    assert outcome.failed("toegang") == ACCESS_CHECKS
    for name in ACCESS_CHECKS:
        assert got(outcome, "toegang", name).startswith("could not reach the LAS: ")


async def test_a_las_whose_certificate_the_qualifier_refuses_refuses_nobody(
    sandbox: Sandbox, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A server certificate of another CA, on a LAS that lets any client in: the qualifier's
    own CERTIFICATE_VERIFY_FAILED is no refusal of the LAS."""
    other = CertificateAuthority.create(tmp_path / "other-ca", name="Not the TC's CA")
    key, pem = write_issued(other.issue_server_certificate(hosts=["127.0.0.1"]), tmp_path / "las")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(str(pem), str(key))  # and asks for no client certificate
    bron = HostileBron(context)
    await bron.start()
    try:
        answer = dossier_head(f"Content-Length: {len(VALID_DOSSIER)}") + VALID_DOSSIER
        outcome = await qualify_hostile(sandbox, bron, answer, tmp_path, capsys)
    finally:
        await bron.stop()
    assert outcome.failed("toegang") == ACCESS_CHECKS
    for name in ACCESS_CHECKS:
        assert "the qualifier refused the LAS's server certificate" in got(outcome, "toegang", name)


async def test_a_las_refusing_in_the_handshake_or_after_it_passes(
    sandbox: Sandbox, hostile: HostileBron, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The foreign certificate and none are refused by TLS (an alert); the school's is let in
    and the connection closed without an answer, which counts as a refusal too."""

    async def hangs_up(exchange: Exchange) -> bool:
        return False

    hostile.scenarios["bron"] = hangs_up
    outcome = await asyncio.to_thread(qualify, sandbox, hostile.url("bron"), tmp_path, capsys)
    assert outcome.passed("toegang") == ACCESS_CHECKS


HALF = len(VALID_DOSSIER) // 2

CUT_OFF = {
    # Content-Length promises the whole dossier; half comes, then the close.
    "fewer bytes than Content-Length": (
        dossier_head(f"Content-Length: {len(VALID_DOSSIER)}") + VALID_DOSSIER[:HALF],
        "Content-Length matches the bytes sent",
        f"fewer bytes than the declared {len(VALID_DOSSIER)}: {HALF} bytes came, then "
        "RemoteProtocolError: peer closed connection",
    ),
    # Every chunk of the dossier, no 0-chunk, then the close.
    "no terminating 0-chunk": (
        dossier_head("Transfer-Encoding: chunked") + chunked(VALID_DOSSIER, last=False),
        "chunked body ends with the 0-chunk",
        f"no terminating 0-chunk: {len(VALID_DOSSIER)} bytes came, then "
        "RemoteProtocolError: peer closed connection",
    ),
}


@pytest.mark.parametrize("fault", list(CUT_OFF))
async def test_a_cut_off_dossier_says_how_much_came_and_what_was_missing(
    fault: str,
    sandbox: Sandbox,
    hostile: HostileBron,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    answer, name, says = CUT_OFF[fault]
    outcome = await qualify_hostile(sandbox, hostile, answer, tmp_path, capsys)
    # Only the framing: the XML of a cut-off body would just say where it was cut.
    assert outcome.failed("gereed") == {name}
    assert got(outcome, "gereed", name).startswith(says)


def test_a_bron_that_hangs_fails_the_timeout_everywhere(
    sandbox: Sandbox, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for server in _app_server(sandbox, _hangs):
        outcome = qualify(sandbox, server.url, tmp_path, capsys, "--timeout", "0.5")
    assert outcome.exit_code == 1
    for scenario in ("gereed", "nietgereed", "onbekend"):
        assert "answers within the relay's timeouts" in outcome.failed(scenario)
    # No answer is not a refusal: the school's certificate got through the handshake.
    assert "refuses a school's certificate" in outcome.failed("toegang")
    assert "refuses a certificate from a foreign CA" in outcome.passed("toegang")


def test_without_the_ca_key_the_school_probe_is_reported_not_run(
    sandbox: Sandbox,
    reference_las: LasServer,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    elsewhere = tmp_path / "home"
    extra = ["--ca", str(sandbox.ca), "--relay-cert", str(sandbox.home / "relay.pem")]
    extra += ["--relay-key", str(sandbox.home / "relay.key")]
    argv = ["--home", str(elsewhere), "qualify", "bron", "--url", reference_las.url, *extra]
    assert main(argv) == 1
    table = capsys.readouterr().out
    assert "FAIL toegang: refuses a school's certificate" in table
    assert "not run" in table


def test_a_usage_mistake_is_one_line_and_exit_2(
    sandbox: Sandbox, capsys: pytest.CaptureFixture[str]
) -> None:
    home = ["--home", str(sandbox.home), "qualify", "bron"]
    assert main([*home, "--url", "http://127.0.0.1:1/oso"]) == 2
    assert main([*home, "--url", "https://127.0.0.1:1/oso", "--pupil", "gereed"]) == 2
    not_pem = sandbox.home / "not-a-ca.pem"
    not_pem.write_text("geen certificaat\n")
    assert main([*home, "--url", "https://127.0.0.1:1/oso", "--ca", str(not_pem)]) == 2
    # Before the run, not as a traceback after it.
    nowhere = sandbox.home / "no-such-dir" / "results.json"
    assert main([*home, "--url", "https://127.0.0.1:1/oso", "--json", str(nowhere)]) == 2
    assert main(["qualify", "doel", "--wait", "1", "--junit", str(nowhere)]) == 2
    # Sector pairs the Traffic Center grants no session for: the LAS is never asked them.
    for bron, doel in (("VO", "PO"), ("PO", "SWV")):
        sectors = ["--bron-sector", bron, "--doel-sector", doel]
        assert main([*home, "--url", "https://127.0.0.1:1/oso", *sectors]) == 2
    errors = capsys.readouterr().err.strip().splitlines()
    assert len(errors) == 7
    assert "--ca" in errors[2]
    assert errors[3].endswith(f"--json {nowhere}: no such directory {nowhere.parent}")
    assert "--junit" in errors[4]
    assert all("no overstap the OSO has" in line for line in errors[5:])
    assert all(line.startswith("traffic-center: error:") for line in errors)


# --- the checks only a Traffic Center sees: through a running qualification sandbox -----------


@pytest.fixture
async def qualify_sandbox(tmp_path: Path) -> AsyncIterator[QualifySandbox]:
    world = QualifySandbox(tmp_path / "sandbox")
    await world.start()
    try:
        yield world
    finally:
        await world.stop()


def vendor_las(
    world: QualifySandbox,
    *,
    notify_after: float,
    check_session: bool = True,
    tc_transport: httpx.AsyncBaseTransport | None = None,
) -> LasServer:
    """The vendor's LAS: the reference bron with the sandbox's 00YY client certificate and TC."""
    directory = world.root / f"las-{QUALIFY_BRON.key}"
    config = LasConfig(
        cert=directory / "server.pem",
        key=directory / "server.key",
        ca=world.world.ca_pem,
        tc_url=world.tc_url,
        client_tls=world.world.doel_tls(QUALIFY_BRON),
        notify_after=notify_after,
        check_session=check_session,
    )
    return LasServer(config, pupils=Roster(TEST_SCHEME_KEY, TEST_PUPILS), tc_transport=tc_transport)


class CheckingWrongly(httpx.AsyncBaseTransport):
    """The LAS's way to the TC, for a LAS whose session check is wrong (a zoeksleutel of its
    own making) and which serves whatever the TC answered it."""

    WRONG = "A" * 43

    def __init__(self, tls: ClientTLS) -> None:
        self._inner = httpx.AsyncHTTPTransport(verify=tls.ssl_context())

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if not request.url.path.endswith("/check"):
            return await self._inner.handle_async_request(request)
        body = {**json.loads(await request.aread()), "zoeksleutel": self.WRONG}
        headers = {k: v for k, v in request.headers.items() if k.lower() != "content-length"}
        wrong = httpx.Request("POST", request.url, json=body, headers=headers)
        refused = await self._inner.handle_async_request(wrong)
        await refused.aread()
        assert refused.status_code == 409  # SessieAfwijkend, recorded at the TC
        return httpx.Response(200, json={"resultaat": "SessieValide"})

    async def aclose(self) -> None:
        await self._inner.aclose()


async def qualify_through(
    world: QualifySandbox, url: str, tmp_path: Path, *extra: str
) -> tuple[int, dict[str, Any]]:
    results = tmp_path / "watched.json"
    assert world.world.settings is not None
    argv = ["--home", str(world.world.settings.home), "qualify", "bron", "--url", url]
    argv += ["--sandbox-checks", world.tc_url, "--json", str(results), *extra]
    exit_code = await asyncio.to_thread(main, argv)
    return exit_code, json.loads(results.read_text())


def _by_name(results: dict[str, Any], scenario: str) -> dict[str, bool]:
    return {c["name"]: c["passed"] for c in results["checks"] if c["scenario"] == scenario}


async def bron_url(world: QualifySandbox) -> str:
    """Where the sandbox's 00YY endpoint points now."""
    assert world.world.settings is not None
    async with open_store(world.world.settings) as store:
        endpoint = await store.registry.get_endpoint(QUALIFY_BRON.routeringskenmerk)
    assert endpoint is not None
    return endpoint.url


async def test_a_conforming_bron_passes_the_checks_the_tc_sees(
    qualify_sandbox: QualifySandbox, tmp_path: Path
) -> None:
    before = await bron_url(qualify_sandbox)
    with vendor_las(qualify_sandbox, notify_after=0.5).start() as las:
        exit_code, results = await qualify_through(
            qualify_sandbox, las.url, tmp_path, "--notify-within", "20"
        )
        # 00YY points back at the sandbox's own LAS: it was left at the vendor's URL.
        assert las.url != before
        assert await bron_url(qualify_sandbox) == before
    failed = [c for c in results["checks"] if not c["passed"]]
    assert failed == []
    assert exit_code == 0
    assert _by_name(results, WATCHED) == {CHECK_FIRST: True, MISMATCH: True, NOTIFIES: True}
    # Every scenario still judged, now in real sessions the bron checked.
    assert _by_name(results, "nietgereed")["result code DossierNogNietGereed"] is True
    assert _by_name(results, "gereed")["answers HTTP 200"] is True


async def test_a_bron_that_never_notifies_is_reported_by_name(
    qualify_sandbox: QualifySandbox, tmp_path: Path
) -> None:
    with vendor_las(qualify_sandbox, notify_after=300).start() as las:
        exit_code, results = await qualify_through(
            qualify_sandbox, las.url, tmp_path, "--notify-within", "2"
        )
    assert exit_code == 1
    assert _by_name(results, WATCHED) == {CHECK_FIRST: True, MISMATCH: True, NOTIFIES: False}
    got = next(c["got"] for c in results["checks"] if c["name"] == NOTIFIES)
    assert got == "none within 2 s"


async def test_a_bron_that_skips_the_session_check_is_reported_by_name(
    qualify_sandbox: QualifySandbox, tmp_path: Path
) -> None:
    with vendor_las(qualify_sandbox, notify_after=0.5, check_session=False).start() as server:
        exit_code, results = await qualify_through(
            qualify_sandbox, server.url, tmp_path, "--notify-within", "20"
        )
    assert exit_code == 1
    assert _by_name(results, WATCHED) == {CHECK_FIRST: False, MISMATCH: False, NOTIFIES: True}


async def test_a_bron_that_serves_whatever_its_check_was_answered_is_reported_by_name(
    qualify_sandbox: QualifySandbox, tmp_path: Path
) -> None:
    wrongly = CheckingWrongly(qualify_sandbox.world.doel_tls(QUALIFY_BRON))
    with vendor_las(qualify_sandbox, notify_after=0.5, tc_transport=wrongly).start() as server:
        exit_code, results = await qualify_through(
            qualify_sandbox, server.url, tmp_path, "--notify-within", "20"
        )
    assert exit_code == 1
    assert _by_name(results, WATCHED) == {CHECK_FIRST: False, MISMATCH: False, NOTIFIES: True}
    got = next(c["got"] for c in results["checks"] if c["name"] == CHECK_FIRST)
    assert got.startswith(
        "served the dossier although the TC answered its session check SessieAfwijkend"
    )
