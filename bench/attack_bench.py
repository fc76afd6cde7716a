"""A legitimate school's latency with and without each attack of issue 10, in one run.

    .venv/bin/python bench/attack_bench.py [--quick]

Starts a sandbox (a `traffic-center serve` process and two reference LAS processes on
loopback, every hop mTLS; default limits), then measures school B (the doel, 34CD) twice per
attack: a ``whoami`` on a new connection each time, and a 170 kB dossier relayed from school
A's LAS over a kept-alive connection. First with nothing else running, then while each attack
runs:

- handshake flood: 4 threads doing full TLS handshakes (X25519, allowed) and hanging up;
- idle flood: 500 TLS connections with a revoked certificate that never send a byte,
  reopened as the node closes them;
- big-body flood: 4 threads posting 200 MB bodies with a revoked certificate;
- slot hog: school A opens 64 relays of a trickling dossier from its own second endpoint
  (overdrachtbinnenbrin) and reads them slowly.

It prints p50/p99 per phase, the Traffic Center's RSS, and what the attackers got. Bounded:
each phase takes at most about a minute and a fixed number of requests.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from traffic_center.admin.sandbox import SandboxBuilder, SandboxSchool
from traffic_center.admin.store import open_signed_store, utc_now
from traffic_center.demo.memory import RssSampler
from traffic_center.demo.processes import child_env
from traffic_center.demo.sandbox import BRON, DOEL, Sandbox
from traffic_center.domain.identifiers import derive_zoeksleutel
from traffic_center.las.doel import ClientTLS
from traffic_center.las.pupils import TEST_SCHEME_KEY
from traffic_center.pki.ca import CertificateAuthority

MB = 1024 * 1024
GEREED_PGN = "662460613"  # test school 00YY: a realistic dossier of about 170 kB
TRICKLE_PGN = "999990202"  # enrolled here: 8 MB at 20 kB/s, longer than any phase
HOG_RELAYS = 64
# School A's second endpoint: the same LAS process, another routeringskenmerk.
HOG_BRON = SandboxSchool("school-a-2", BRON.brin, BRON.name, BRON.sector, "00000007000012000002")


@dataclass
class Phase:
    name: str
    whoami: list[float] = field(default_factory=list)
    relay: list[float] = field(default_factory=list)
    failures: Counter[str] = field(default_factory=Counter)
    rss_peak: int = 0
    attacker: str = ""


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))] if ordered else 0.0


def context(ca_pem: Path, tls: ClientTLS | None) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(ca_pem))
    if tls is not None:
        ctx.load_cert_chain(str(tls.cert), str(tls.key))
    return ctx


class World:
    """The sandbox, and the certificates and sessions the phases use."""

    def __init__(self, sandbox: Sandbox, revoked: ClientTLS, legit_session: str, hog: str):
        self.sandbox = sandbox
        self.revoked = revoked
        self.legit_session = legit_session
        self.hog_session = hog
        self.host, self.port = "127.0.0.1", int(sandbox.tc_url.rsplit(":", 1)[1])

    def ctx(self, tls: ClientTLS | None) -> ssl.SSLContext:
        return context(self.sandbox.ca_pem, tls)

    def client(self, tls: ClientTLS, *, timeout: float = 30) -> httpx.Client:
        return httpx.Client(base_url=self.sandbox.tc_url, verify=self.ctx(tls), timeout=timeout)


# --- the legitimate client -----------------------------------------------------------------------


def measure(world: World, phase: Phase, *, rounds: int, budget: float) -> None:
    tls = world.sandbox.doel_tls(DOEL)
    zoeksleutel = derive_zoeksleutel_for(GEREED_PGN)
    body = {"routeringskenmerk": BRON.routeringskenmerk, "zoeksleutel": zoeksleutel}
    ends = time.monotonic() + budget
    with world.client(tls) as kept:
        for _ in range(rounds):
            if time.monotonic() > ends:
                phase.failures["out of time"] += 1
                break
            phase.whoami.append(_timed_whoami(world, tls, phase))
            started = time.perf_counter()
            try:
                answer = kept.post(f"/v1/sessions/{world.legit_session}/dossier", json=body)
                if answer.status_code != 200:
                    phase.failures[f"relay {answer.status_code}"] += 1
            except httpx.HTTPError as exc:
                phase.failures[f"relay {type(exc).__name__}"] += 1
            phase.relay.append(time.perf_counter() - started)


def _timed_whoami(world: World, tls: ClientTLS, phase: Phase) -> float:
    started = time.perf_counter()
    try:
        with world.client(tls, timeout=30) as fresh:
            if fresh.get("/v1/whoami").status_code != 200:
                phase.failures["whoami status"] += 1
    except httpx.HTTPError as exc:
        phase.failures[f"whoami {type(exc).__name__}"] += 1
    return time.perf_counter() - started


def derive_zoeksleutel_for(pgn: str) -> str:
    return derive_zoeksleutel(TEST_SCHEME_KEY, pgn)


# --- the attacks ---------------------------------------------------------------------------------

Attack = Callable[[World, threading.Event, Counter[str]], list[threading.Thread]]


def handshake_flood(
    world: World, stop: threading.Event, tally: Counter[str]
) -> list[threading.Thread]:
    ctx = world.ctx(world.sandbox.doel_tls(BRON))

    def run() -> None:
        while not stop.is_set():
            try:
                with (
                    socket.create_connection((world.host, world.port), timeout=5) as raw,
                    ctx.wrap_socket(raw, server_hostname=world.host),
                ):
                    tally["handshakes"] += 1
            except OSError:
                tally["handshake errors"] += 1

    return [threading.Thread(target=run, daemon=True) for _ in range(4)]


def idle_flood(world: World, stop: threading.Event, tally: Counter[str]) -> list[threading.Thread]:
    ctx = world.ctx(world.revoked)

    def run() -> None:
        held: list[ssl.SSLSocket] = []
        while not stop.is_set():
            held = [s for s in held if _still_open(s)]
            while len(held) < 100 and not stop.is_set():
                try:
                    raw = socket.create_connection((world.host, world.port), timeout=5)
                    held.append(ctx.wrap_socket(raw, server_hostname=world.host))
                    tally["idle connections opened"] += 1
                except OSError:
                    tally["connect errors"] += 1
                    break
            stop.wait(0.5)
        for sock in held:
            sock.close()

    return [threading.Thread(target=run, daemon=True) for _ in range(5)]


def _still_open(sock: ssl.SSLSocket) -> bool:
    sock.setblocking(False)
    try:
        return sock.recv(1) != b""
    except (ssl.SSLWantReadError, BlockingIOError):
        return True
    except OSError:
        return False
    finally:
        with contextlib.suppress(OSError):
            sock.setblocking(True)


def body_flood(world: World, stop: threading.Event, tally: Counter[str]) -> list[threading.Thread]:
    ctx = world.ctx(world.revoked)
    size, chunk = 200 * MB, b"x" * (256 * 1024)

    def run() -> None:
        while not stop.is_set():
            sent = 0
            try:
                with (
                    socket.create_connection((world.host, world.port), timeout=5) as raw,
                    ctx.wrap_socket(raw, server_hostname=world.host) as sock,
                ):
                    sock.sendall(
                        b"POST /v1/sessions HTTP/1.1\r\nHost: x\r\n"
                        b"Content-Type: application/json\r\n"
                        b"Content-Length: %d\r\n\r\n" % size
                    )
                    while sent < size and not stop.is_set():
                        sent += sock.send(chunk)
                tally["uploads finished"] += 1
            except OSError:
                tally["uploads cut"] += 1
            tally["MB sent"] += sent // MB

    return [threading.Thread(target=run, daemon=True) for _ in range(4)]


def slot_hog(world: World, stop: threading.Event, tally: Counter[str]) -> list[threading.Thread]:
    tls = world.sandbox.doel_tls(BRON)
    body = {
        "routeringskenmerk": HOG_BRON.routeringskenmerk,
        "zoeksleutel": derive_zoeksleutel_for(TRICKLE_PGN),
    }

    def run() -> None:
        with world.client(tls, timeout=60) as client:
            try:
                with client.stream(
                    "POST", f"/v1/sessions/{world.hog_session}/dossier", json=body
                ) as answer:
                    tally[f"hog relays {answer.status_code}"] += 1
                    for _ in answer.iter_raw(1024):
                        if stop.is_set():
                            break
            except httpx.HTTPError as exc:
                tally[f"hog {type(exc).__name__}"] += 1

    return [threading.Thread(target=run, daemon=True) for _ in range(HOG_RELAYS)]


ATTACKS: dict[str, Attack] = {
    "handshake flood (X25519, 4 threads)": handshake_flood,
    "idle flood (500 TLS, revoked cert)": idle_flood,
    "big bodies (4 × 200 MB, revoked cert)": body_flood,
    "slot hog (64 trickling relays, one school)": slot_hog,
}


@contextlib.contextmanager
def running(world: World, attack: Attack | None, tally: Counter[str]) -> Iterator[None]:
    stop = threading.Event()
    threads = attack(world, stop, tally) if attack else []
    for thread in threads:
        thread.start()
    time.sleep(2 if threads else 0)  # let the attack take hold
    try:
        yield
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=15)


# --- set-up --------------------------------------------------------------------------------------


async def build(root: Path) -> tuple[Sandbox, World]:
    sandbox = Sandbox(root, pupils={TRICKLE_PGN: "trickle-8000000"})
    await sandbox.start()
    assert sandbox.settings is not None
    las_a = sandbox.las[BRON.key]
    async with open_signed_store(sandbox.settings) as (store, secret):
        ca = CertificateAuthority.load(sandbox.settings.ca_dir)
        builder = SandboxBuilder(ca, store, secret=secret, clock=utc_now)
        await builder.register(HOG_BRON, url=las_a.url, add_school=False)
    revoked = _revoked_certificate(sandbox, root / "revoked")
    legit = await _session(sandbox, DOEL, GEREED_PGN, "overstapdossier", BRON.routeringskenmerk)
    hog = await _session(
        sandbox, BRON, TRICKLE_PGN, "overdrachtbinnenbrin", HOG_BRON.routeringskenmerk
    )
    return sandbox, World(sandbox, revoked, legit, hog)


def _revoked_certificate(sandbox: Sandbox, prefix: Path) -> ClientTLS:
    """Another certificate of school B's endpoint, issued and revoked with the CLI."""
    assert sandbox.settings is not None
    home = str(sandbox.settings.home)

    def cli(*args: str) -> str:
        command = [sys.executable, "-m", "traffic_center", "--home", home, *args]
        done = subprocess.run(command, env=child_env(), capture_output=True, text=True, check=True)
        return done.stdout

    serial = cli(
        *("ca", "issue", "--routeringskenmerk", DOEL.routeringskenmerk, "--brin", DOEL.brin),
        *("--name", DOEL.name, "--out", str(prefix)),
    ).split()[-1]
    cli("ca", "revoke", serial)
    return ClientTLS(
        prefix.with_name(prefix.name + ".pem"),
        prefix.with_name(prefix.name + ".key"),
        sandbox.ca_pem,
    )


async def _session(
    sandbox: Sandbox, doel: SandboxSchool, pgn: str, soort: str, bron_endpoint: str
) -> str:
    async with sandbox.doel_client(doel) as client:
        granted = await client.open_session(BRON.brin, pgn, soort, bron_endpoint)
    return granted.sessie_id


# --- the run -------------------------------------------------------------------------------------


def run_phases(world: World, *, rounds: int, budget: float) -> list[Phase]:
    assert world.sandbox.tc is not None
    pid = world.sandbox.tc.process.pid
    phases = []
    for name, attack in [("no attack", None), *ATTACKS.items()]:
        phase, tally = Phase(name), Counter[str]()
        sampler = RssSampler(pid, interval=0.05)
        with sampler, running(world, attack, tally):
            measure(world, phase, rounds=rounds, budget=budget)
        phase.rss_peak = sampler.peak
        phase.attacker = ", ".join(f"{k}: {v}" for k, v in sorted(tally.items()))
        phases.append(phase)
        print(report_line(phase), flush=True)
        time.sleep(6)  # the node closes what the attack left (keep-alive 5 s)
    return phases


def report_line(phase: Phase) -> str:
    ms = 1000
    return (
        f"{phase.name:44} whoami p50 {percentile(phase.whoami, 0.5) * ms:7.1f} ms "
        f"p99 {percentile(phase.whoami, 0.99) * ms:7.1f} ms | relay 170 kB p50 "
        f"{percentile(phase.relay, 0.5) * ms:7.1f} ms p99 {percentile(phase.relay, 0.99) * ms:7.1f}"
        f" ms | TC RSS peak {phase.rss_peak / MB:5.0f} MB | failures {dict(phase.failures) or 0}"
        f"\n{'':44} attacker: {phase.attacker or '-'}"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="10 rounds per phase, not 40")
    args = parser.parse_args(argv)
    rounds = 10 if args.quick else 40
    with tempfile.TemporaryDirectory(prefix="attack-bench-") as directory:
        sandbox, world = asyncio.run(build(Path(directory)))
        try:
            print(f"Traffic Center on {sandbox.tc_url}; {rounds} rounds per phase", flush=True)
            phases = run_phases(world, rounds=rounds, budget=60)
        finally:
            asyncio.run(sandbox.stop())
    worst = max(phases[1:], key=lambda p: statistics.median(p.whoami or [0]))
    print(f"worst attack for whoami: {worst.name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
