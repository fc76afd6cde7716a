"""`qualify bron`: calls a vendor's ``POST {url}/dossier`` as the relay does, and judges it.

Three kinds of scenario, each a list of named checks in a :class:`~.report.Report`:

- ``toegang``: callers that are not the relay (no certificate, a school's certificate from
  the same CA, a certificate from a foreign CA) must be refused, by TLS or with 401/403, by a
  LAS the qualifier reached and whose certificate it verified;
- one per result code (``nietgereed``, ``geeninzage``, ``geentoestemming``, ``verouderd``,
  ``onbekend``): the right status and ``code`` as ``application/problem+json``;
- ``gereed``: a 200 ``application/xml`` dossier, framed, well-formed, valid against the XSD
  when one is given, with the ``X-OSO-Vrijgave`` the sector pair needs (rule 8).

Every answer must also come within the relay's timeouts. The checks that need a Traffic
Center to watch (the session check, the notification after not-ready) are in
:mod:`.watched`; with it, each scenario's call names a real session of the sandbox TC (a
:class:`Sessions`), so a bron that checks its sessions passes here too.
"""

from __future__ import annotations

import datetime as dt
import json
import shlex
import ssl
import tempfile
import time
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import httpx

from traffic_center import USER_AGENT
from traffic_center.domain.errors import InvalidInput
from traffic_center.domain.identifiers import Overdrachtsoort, Sector
from traffic_center.domain.las_contract import (
    DOSSIER_ACCEPT,
    DOSSIER_MEDIA_TYPE,
    DOSSIER_PATH,
    PROBLEM_MEDIA_TYPE,
    RELEASE_HEADER,
    SESSION_HEADER,
    TRACEPARENT_HEADER,
    TRANSACTION_HEADER,
)
from traffic_center.domain.results import ResultCode
from traffic_center.domain.rules import ParentRelease, release_satisfies, required_release
from traffic_center.las.pupils import TEST_PUPILS, pupil_with, pupil_zoeksleutel
from traffic_center.pki.ca import CertificateAuthority, write_issued
from traffic_center.qualify.report import Report
from traffic_center.relay.headers import default_request_headers, media_type, transfer_codings
from traffic_center.relay.trace import child_traceparent

ACCESS = "toegang"
DOSSIER = "gereed"


@dataclass(frozen=True, slots=True)
class Refusal:
    """What a scenario's pupil must get instead of the dossier (the LAS contract)."""

    status: int
    code: ResultCode


REFUSALS: Mapping[str, Refusal] = {
    "nietgereed": Refusal(409, ResultCode.DOSSIER_NOG_NIET_GEREED),
    "geeninzage": Refusal(403, ResultCode.GEEN_INZAGE),
    "geentoestemming": Refusal(403, ResultCode.GEEN_TOESTEMMING),
    "verouderd": Refusal(409, ResultCode.DOSSIER_VEROUDERD),
    "onbekend": Refusal(404, ResultCode.DOSSIER_NIET_GEVONDEN),
}
SCENARIOS = (DOSSIER, *REFUSALS)

# Test school 00YY's pupils on the reference LAS; "onbekend" is a valid BSN it does not hold.
DEFAULT_PUPILS: Mapping[str, str] = {
    **{name: pupil_with(name) for name in SCENARIOS if name in TEST_PUPILS.values()},
    "onbekend": "999900511",
}

# The relay's limits (settings: relay_connect_timeout_seconds, relay_read_timeout_seconds).
RELAY_CONNECT_SECONDS = 5.0
RELAY_READ_SECONDS = 30.0
# A qualification dossier is a test pupil's: far below the relay's 1 GiB, and held in memory.
MAX_JUDGED_BYTES = 256 * 1024**2
# Who the qualifier says is asking: a doel endpoint of the sandbox (any well-formed one works).
DOEL_BRIN = "12AB"
DOEL_ROUTERINGSKENMERK = "00000007000012000001"
# The school certificate of the "toegang" probe: a registered-looking endpoint, not the relay.
PROBE_ROUTERINGSKENMERK = "00000007000099000001"


@dataclass(frozen=True, slots=True)
class Identity:
    """A client certificate and its key (PEM files)."""

    cert: Path
    key: Path


@dataclass(frozen=True, slots=True)
class BronTarget:
    """Everything `qualify bron` needs to know; the CLI builds one from its flags."""

    url: str  # the endpoint's base URL, e.g. https://las.example/oso
    ca: Path  # what the vendor's server certificate chains to
    relay: Identity
    scheme_key: bytes
    pupils: Mapping[str, str] = field(default_factory=lambda: dict(DEFAULT_PUPILS))
    bron_sector: Sector = Sector.PO
    doel_sector: Sector = Sector.VO
    tc_ca: CertificateAuthority | None = None  # issues the school probe; None: not run
    schema: Any = None  # an xmlschema.XMLSchema, or None: no XSD check
    read_timeout: float = RELAY_READ_SECONDS
    connect_timeout: float = RELAY_CONNECT_SECONDS

    @property
    def dossier_url(self) -> str:
        return self.url.rstrip("/") + DOSSIER_PATH


def load_schema(path: Path) -> Any:
    """The XSD, with xmlschema (a dev dependency): imported only when --xsd is given."""
    try:
        import xmlschema
    except ImportError:
        raise InvalidInput("--xsd needs the xmlschema package: pip install xmlschema") from None
    try:
        return xmlschema.XMLSchema(str(path))
    except (OSError, xmlschema.XMLSchemaException) as exc:
        raise InvalidInput(f"--xsd {path}: not a schema ({exc})") from None


class Sessions(Protocol):
    """Opens a real session for each scenario's call (at a sandbox TC), as a doel there."""

    doel_brin: str
    doel_routeringskenmerk: str

    async def open(self, scenario: str, pgn: str) -> str:
        """The sessie_id of a new session for this pupil."""

    def answered(self, scenario: str, sessie_id: str, status: int | None) -> None:
        """What the bron answered in that session (None: no answer)."""


async def qualify_bron(
    target: BronTarget, report: Report, sessions: Sessions | None = None
) -> Report:
    """Run every check against the target, recording each in ``report``."""
    with (
        tempfile.TemporaryDirectory(prefix="qualify-bron-") as scratch,
        report.scenario(ACCESS),
    ):
        await _check_access(target, report, Path(scratch))
    codes = {}
    for name in SCENARIOS:
        with report.scenario(name):
            codes[name] = await _check_scenario(target, report, name, sessions)
    _hint_at_the_zoeksleutel(target, report, codes)
    return report


def _hint_at_the_zoeksleutel(
    target: BronTarget, report: Report, codes: Mapping[str, str | None]
) -> None:
    """Every pupil the LAS should hold answered DossierNietGevonden: one cause explains the
    five failures, a zoeksleutel derived otherwise than the doel's (the first wave's lesson:
    a vendor could not derive another's). Said once, with a worked example."""
    not_found = REFUSALS["onbekend"].code
    if not all(codes.get(name) == not_found for name in SCENARIOS if name != "onbekend"):
        return
    pgn = target.pupils[DOSSIER]  # gereed was answered, so it had its pupil
    example = f" With this scheme key, PGN {pgn} gives {pupil_zoeksleutel(target.scheme_key, pgn)}."
    report.hints.append(
        "every test pupil your LAS should hold was answered DossierNietGevonden: it does not "
        "find them by the zoeksleutel the Traffic Center sends. Derive it as docs/zoeksleutel.md "
        f"says (its test vectors; the PGN as given, leading zeros kept).{example}"
    )


# --- the calls ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Call:
    """One dossier request: its body and headers, and how to repeat it with curl."""

    body: dict[str, Any]
    headers: dict[str, str]

    def curl(self, target: BronTarget, identity: str | None = None) -> str:
        # "" is no certificate at all (the probe without one), not the relay's.
        who = (
            identity
            if identity is not None
            else (
                f"--cert {shlex.quote(str(target.relay.cert))} "
                f"--key {shlex.quote(str(target.relay.key))}"
            )
        )
        headers = " ".join(f"-H {shlex.quote(f'{k}: {v}')}" for k, v in self.headers.items())
        return (
            f"curl -sS -i --cacert {shlex.quote(str(target.ca))} {who} {headers} "
            f"--data {shlex.quote(json.dumps(self.body))} {shlex.quote(target.dossier_url)}"
        )


def dossier_call(
    target: BronTarget,
    pgn: str,
    *,
    aanvraagdatum: dt.date | None,
    sessie_id: str | None = None,
    doel: tuple[str, str] = (DOEL_BRIN, DOEL_ROUTERINGSKENMERK),
) -> Call:
    sessie_id = sessie_id or str(uuid.uuid4())
    body = {
        "sessie_id": sessie_id,
        "zoeksleutel": pupil_zoeksleutel(target.scheme_key, pgn),
        "overdrachtsoort": Overdrachtsoort.OVERSTAPDOSSIER.value,
        "aanvraagdatum": None if aanvraagdatum is None else aanvraagdatum.isoformat(),
        "doel_brin": doel[0],
        "doel_routeringskenmerk": doel[1],
        "doel_sector": target.doel_sector.value,
    }
    # The relay's headers exactly (exchanges/dossiers.py, relay/headers.py): a LAS must not
    # pass here on what httpx would add (Accept-Encoding: gzip) and the relay never sends.
    headers = {
        **default_request_headers(USER_AGENT),
        "Accept": DOSSIER_ACCEPT,
        "Content-Type": "application/json",
        SESSION_HEADER: sessie_id,
        TRANSACTION_HEADER: str(uuid.uuid4()),
        TRACEPARENT_HEADER: child_traceparent(None),
    }
    return Call(body, headers)


@dataclass(slots=True)
class Answer:
    """What came back: an HTTP answer read to its end (or as far as it came, and why it broke
    off), or why there was none."""

    response: httpx.Response | None = None
    received: bytearray = field(default_factory=bytearray)  # the body, or what came of it
    seconds: float = 0.0
    failure: Exception | None = None  # what the client raised, when it did

    @property
    def timed_out(self) -> bool:
        return isinstance(self.failure, httpx.TimeoutException)

    @property
    def error(self) -> str | None:
        """What ended the exchange early, as the report says it; None when nothing did."""
        failure = self.failure
        if failure is None:
            return None
        if isinstance(failure, httpx.TimeoutException):
            return f"timed out ({type(failure).__name__})"
        if isinstance(failure, ssl.SSLError):
            return f"TLS: {failure}"
        return f"{type(failure).__name__}: {failure}" if str(failure) else type(failure).__name__

    @property
    def body(self) -> bytes:
        return bytes(self.received)

    @property
    def broken(self) -> bool:
        """The head came, then the body broke off (closed, reset, silent too long)."""
        return self.response is not None and self.error is not None

    def summary(self) -> str:
        if self.response is None:
            return self.error or "no answer"
        kind = self.response.headers.get("content-type", "no Content-Type")
        got = f"HTTP {self.response.status_code} ({kind}), {len(self.received)} bytes"
        return f"{got}, then {self.error}" if self.error is not None else got


def _ssl_context(target: BronTarget, identity: Identity | None) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(target.ca))
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if identity is not None:
        context.load_cert_chain(str(identity.cert), str(identity.key))
    return context


async def send(target: BronTarget, call: Call, identity: Identity | None) -> Answer:
    """POST the call as ``identity`` and read the whole answer, bounded by the timeouts."""
    timeout = httpx.Timeout(
        target.read_timeout, connect=target.connect_timeout, pool=target.connect_timeout
    )
    started = time.monotonic()
    answer = Answer()
    try:
        async with (
            _relay_like_client(_ssl_context(target, identity), timeout) as client,
            client.stream(
                "POST", target.dossier_url, content=json.dumps(call.body), headers=call.headers
            ) as response,
        ):
            answer.response = response
            await _read_bounded(response, answer.received)
    except (httpx.HTTPError, ssl.SSLError) as exc:
        answer.failure = exc
    answer.seconds = time.monotonic() - started
    return answer


def _relay_like_client(context: ssl.SSLContext, timeout: httpx.Timeout) -> httpx.AsyncClient:
    """A client that adds none of httpx's default headers: each call carries the relay's."""
    client = httpx.AsyncClient(verify=context, timeout=timeout)
    client.headers.clear()  # Accept-Encoding: gzip, Connection, a python-httpx User-Agent
    return client


async def _read_bounded(response: httpx.Response, into: bytearray) -> None:
    """Read the body into ``into``, which keeps what came when the read breaks off."""
    # The bytes as sent, as the relay passes them on: never decoded.
    async for chunk in response.aiter_raw():
        if len(into) + len(chunk) > MAX_JUDGED_BYTES:
            raise httpx.ReadError(f"more than {MAX_JUDGED_BYTES} bytes: too large to judge")
        into += chunk


# --- toegang: only the relay --------------------------------------------------------------------


async def _check_access(target: BronTarget, report: Report, scratch: Path) -> None:
    pgn = target.pupils.get(DOSSIER) or target.pupils.get("onbekend") or DEFAULT_PUPILS["onbekend"]
    call = dossier_call(target, pgn, aanvraagdatum=None)
    await _probe(target, report, call, "refuses a caller without a certificate", None, "")
    foreign = _foreign_identity(scratch)
    await _probe(
        target,
        report,
        call,
        "refuses a certificate from a foreign CA",
        foreign,
        "--cert foreign.pem --key foreign.key (any self-signed client certificate)",
    )
    name = "refuses a school's certificate"
    if target.tc_ca is None:
        report.expect(
            ACCESS,
            name,
            False,
            expected="a school certificate of the TC CA refused",
            got="not run: no CA key to issue one; run with --home of the sandbox",
        )
        return
    school = _school_identity(target.tc_ca, scratch)
    await _probe(
        target,
        report,
        call,
        name,
        school,
        "--cert school.pem --key school.key (traffic-center ca issue --routeringskenmerk "
        f"{PROBE_ROUTERINGSKENMERK} --brin 00YY --name Probe --out school)",
    )


async def _probe(
    target: BronTarget,
    report: Report,
    call: Call,
    name: str,
    identity: Identity | None,
    curl_identity: str,
) -> None:
    answer = await send(target, call, identity)
    refused, why = _refused_by_the_las(answer)
    report.expect(
        ACCESS,
        name,
        refused,
        expected="the LAS refuses it: a TLS alert or a closed connection after the qualifier "
        "verified the LAS's certificate, or HTTP 401/403",
        got=why,
        reproduce=call.curl(target, curl_identity),
    )


# OpenSSL's reasons for an alert the peer sent (SSLV3_ALERT_BAD_CERTIFICATE,
# TLSV13_ALERT_CERTIFICATE_REQUIRED...): only the server can have refused us with one.
_PEER_ALERT = ("SSLV3_ALERT_", "TLSV1_ALERT_", "TLSV13_ALERT_")


def _refused_by_the_las(answer: Answer) -> tuple[bool, str]:
    """Whether the LAS refused the caller, and what came back.

    A refusal only counts from a LAS whose certificate the qualifier verified: failing to
    reach it, or refusing it ourselves, says nothing about whom it lets in.
    """
    if answer.response is not None:
        return answer.response.status_code in (401, 403), answer.summary()
    causes = list(_causes(answer.failure))
    if answer.timed_out:
        return False, f"{answer.summary()}: no answer is not a refusal"
    if any(isinstance(c, ssl.SSLCertVerificationError) for c in causes):
        return False, (
            f"the qualifier refused the LAS's server certificate ({answer.summary()}): fix it "
            "first (it must chain to the TC CA and name the host), then this check means "
            "something"
        )
    if any(isinstance(c, ssl.SSLError) and _is_peer_alert(c) for c in causes):
        return True, answer.summary()
    if isinstance(answer.failure, httpx.ConnectError):
        # Before the handshake was done: refused, no such host, or closed with no alert.
        return False, f"could not reach the LAS: {answer.summary()}"
    if isinstance(answer.failure, httpx.TransportError):
        # Closed or reset after a complete handshake (which verified the LAS's certificate):
        # TLS 1.3 servers refuse a client certificate only after the client's handshake ends.
        return True, answer.summary()
    return False, answer.summary()


def _is_peer_alert(error: ssl.SSLError) -> bool:
    reason = str(getattr(error, "reason", "") or "")
    return reason.startswith(_PEER_ALERT)


def _causes(error: BaseException | None) -> Iterator[BaseException]:
    """The error and every error it was raised from (httpx wraps httpcore wraps ssl)."""
    seen: set[int] = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        yield error
        error = error.__cause__ or error.__context__


def _foreign_identity(scratch: Path) -> Identity:
    foreign = CertificateAuthority.create(scratch / "foreign-ca", name="Not the TC's CA")
    issued = foreign.issue_relay_certificate(name="A relay of a foreign CA")
    return _written(issued, scratch / "foreign")


def _school_identity(ca: CertificateAuthority, scratch: Path) -> Identity:
    issued = ca.issue_client_certificate(
        routeringskenmerk=PROBE_ROUTERINGSKENMERK, brin="00YY", name="Qualification probe"
    )
    return _written(issued, scratch / "school")


def _written(issued: Any, prefix: Path) -> Identity:
    key, cert = write_issued(issued, prefix)
    return Identity(cert=cert, key=key)


# --- the scenarios ----------------------------------------------------------------------------


async def _check_scenario(
    target: BronTarget, report: Report, name: str, sessions: Sessions | None
) -> str | None:
    """The scenario's checks; the result code the LAS answered with, if any."""
    pgn = target.pupils.get(name)
    if pgn is None:
        report.expect(
            name, "has a test pupil", False, expected=f"--pupil {name}=PGN", got="none given"
        )
        return None
    asked = _aanvraagdatum(name)
    if sessions is None:
        call = dossier_call(target, pgn, aanvraagdatum=asked)
    else:
        call = dossier_call(
            target,
            pgn,
            aanvraagdatum=asked,
            sessie_id=await sessions.open(name, pgn),
            doel=(sessions.doel_brin, sessions.doel_routeringskenmerk),
        )
    answer = await send(target, call, target.relay)
    if sessions is not None:
        status = None if answer.response is None else answer.response.status_code
        sessions.answered(name, call.body["sessie_id"], status)
    check = _Checker(report, name, call.curl(target))
    check(
        "answers within the relay's timeouts",
        not answer.timed_out,
        f"connect within {target.connect_timeout:g} s, "
        f"at most {target.read_timeout:g} s between reads",
        answer.summary() if answer.timed_out else f"answered in {answer.seconds:.1f} s",
    )
    if answer.response is None:
        check(
            "answers over TLS with the relay certificate", False, "an HTTP answer", answer.summary()
        )
        return None
    if not _judge_coding(check, name, answer.response):
        return None
    ok = answer.response.status_code == httpx.codes.OK
    # Parsed once, the answer's problem, if it is one (a served dossier is not parsed as JSON).
    problem = None if name == DOSSIER and ok else _problem(answer.body)
    if name == DOSSIER:
        _judge_dossier(target, check, answer)
    else:
        _judge_refusal(check, REFUSALS[name], answer.response, problem)
    code = None if ok or problem is None else problem.get("code")
    return code if isinstance(code, str) else None


# Long before any dossier: a doel asking for one at least as new as this gets the dossier.
LONG_AGO = dt.date(2000, 1, 1)


def _aanvraagdatum(scenario: str) -> dt.date | None:
    """verouderd: asked for a dossier at least as new as today, the pupil's is older. gereed:
    asked with a date long past, so a LAS answering DossierVerouderd to any aanvraagdatum
    fails (it passed: only verouderd sent one). The others ask without one."""
    if scenario == "verouderd":
        return dt.datetime.now(dt.UTC).date()
    if scenario == DOSSIER:
        return LONG_AGO
    return None


@dataclass(slots=True)
class _Checker:
    """Records checks of one scenario, all reproduced by the same curl command."""

    report: Report
    scenario: str
    reproduce: str

    def __call__(self, name: str, passed: bool, expected: str, got: str) -> bool:
        return self.report.expect(
            self.scenario, name, passed, expected=expected, got=got, reproduce=self.reproduce
        )


def _judge_coding(check: _Checker, name: str, response: httpx.Response) -> bool:
    """False, after a failure, when the body is coded: its bytes are not the XML or JSON the
    other checks would read (and a decoded size would not match Content-Length)."""
    codings = [c.strip().lower() for c in response.headers.get_list("content-encoding", True)]
    coded = [c for c in codings if c not in ("", "identity")]
    what = "dossier" if name == DOSSIER else "answer"
    return check(
        "no Content-Encoding",
        not coded,
        "no Content-Encoding (or identity): the relay sends Accept-Encoding: identity",
        f"Content-Encoding: {', '.join(codings)}: the relay asks for identity; send the {what} "
        "uncompressed"
        if coded
        else "none",
    )


def _judge_refusal(
    check: _Checker, refusal: Refusal, response: httpx.Response, problem: dict[str, Any] | None
) -> None:
    check(
        f"answers HTTP {refusal.status}",
        response.status_code == refusal.status,
        str(refusal.status),
        str(response.status_code),
    )
    kind = media_type(response)
    check(
        "answers application/problem+json",
        kind == PROBLEM_MEDIA_TYPE,
        PROBLEM_MEDIA_TYPE,
        kind or "no Content-Type",
    )
    code = problem.get("code") if problem is not None else None
    got = str(code) if code is not None else "a body without a `code` field"
    check(f"result code {refusal.code}", code == refusal.code, refusal.code, got)
    if problem is not None and kind == PROBLEM_MEDIA_TYPE and code == refusal.code:
        fault = _problem_fault(problem, response.status_code)
        check(
            "problem has type, title and status",
            fault is None,
            "RFC 9457: type and title (strings), status equal to the HTTP status",
            fault or "all there",
        )


def _judge_dossier(target: BronTarget, check: _Checker, answer: Answer) -> None:
    response, body = answer.response, answer.body
    assert response is not None  # judged only when the head came
    if not check("answers HTTP 200", response.status_code == 200, "200", str(response.status_code)):
        return
    kind = media_type(response)
    check(
        "dossier is application/xml",
        kind == DOSSIER_MEDIA_TYPE,
        DOSSIER_MEDIA_TYPE,
        kind or "no Content-Type",
    )
    if not _judge_framing(check, answer):
        return  # a cut-off body is no dossier: its XML would only say where it was cut
    document = _judge_well_formed(check, body)
    if document is not None and target.schema is not None:
        errors = [str(e.reason or e) for e in target.schema.iter_errors(document)]
        check(
            "valid against the XSD",
            not errors,
            "no errors",
            f"{len(errors)} errors, first: {errors[0]}" if errors else "no errors",
        )
    needed = required_release(target.bron_sector, target.doel_sector)
    if needed is not None:
        _judge_release(check, needed, response, target)


def _judge_framing(check: _Checker, answer: Answer) -> bool:
    """False when the body did not arrive whole, after saying how much came and what ended it."""
    assert answer.response is not None
    declared = answer.response.headers.get("content-length")
    codings = transfer_codings(answer.response.headers)
    fault = _framing_fault(declared, codings)
    check(
        "Content-Length or chunked framing",
        fault is None,
        "Content-Length or Transfer-Encoding: chunked (alone)",
        fault or ("chunked" if codings else f"Content-Length: {declared}"),
    )
    cut = f"{len(answer.received)} bytes came, then {answer.error}" if answer.broken else None
    if codings == ["chunked"]:
        check(
            "chunked body ends with the 0-chunk",
            cut is None,
            "the last chunk (0) after the dossier",
            f"no terminating 0-chunk: {cut}" if cut else "the 0-chunk",
        )
    elif declared is not None and not codings:
        check(
            "Content-Length matches the bytes sent",
            cut is None and declared.isdigit() and int(declared) == len(answer.received),
            f"{declared} bytes",
            f"fewer bytes than the declared {declared}: {cut}"
            if cut
            else f"{len(answer.received)} bytes",
        )
    elif cut is not None:
        check("the body arrives whole", False, "the body to its end", cut)
    return cut is None


def _framing_fault(declared: str | None, codings: list[str]) -> str | None:
    """Why the relay would refuse this framing (and the doel get 502), or None."""
    if declared is not None and codings:
        # RFC 9112 §6.1: a sender must not send both; the relay's parser refuses every such
        # answer (one way to smuggle a second answer past a proxy), however it is chunked.
        sent = ", ".join(codings)
        return f"both Content-Length and Transfer-Encoding: send one (got {declared} and {sent})"
    if codings and codings != ["chunked"]:
        return (
            f"Transfer-Encoding: {', '.join(codings)}: the end of the dossier is only the "
            "connection closing"
        )
    if declared is None and not codings:
        return "neither: the end of the dossier is only the connection closing"
    return None


def _judge_well_formed(check: _Checker, body: bytes) -> ET.Element | None:
    try:
        # expat fetches no external entities and (since 2.4) stops entity expansion bombs;
        # the body is bounded by MAX_JUDGED_BYTES.
        document = ET.fromstring(body)  # noqa: S314
    except ET.ParseError as exc:
        check("well-formed XML", False, "a well-formed XML document", str(exc))
        return None
    check("well-formed XML", True, "a well-formed XML document", f"<{document.tag}>")
    return document


def _judge_release(
    check: _Checker, needed: ParentRelease, response: httpx.Response, target: BronTarget
) -> None:
    attested = response.headers.get(RELEASE_HEADER)
    check(
        f"{RELEASE_HEADER} attests {needed.value}",
        attested is not None and release_satisfies(needed, attested),
        f"{RELEASE_HEADER}: {needed.value} ({target.bron_sector}→{target.doel_sector}, rule 8)",
        f"{RELEASE_HEADER}: {attested}" if attested is not None else "no such header",
    )


def _problem_fault(problem: dict[str, Any], status: int) -> str | None:
    """What the problem body lacks of the contract's Problem (schemas/Problem.json), or None."""
    missing = [name for name in ("type", "title") if not isinstance(problem.get(name), str)]
    if missing:
        return f"no {' or '.join(missing)}"
    if problem.get("status") != status:
        return f"status {problem.get('status')!r} in a HTTP {status} answer"
    return None


def _problem(body: bytes) -> dict[str, Any] | None:
    """The answer as a JSON object, or None when it is not one."""
    try:
        parsed = json.loads(body)
    except (ValueError, RecursionError):
        return None
    return parsed if isinstance(parsed, dict) else None
