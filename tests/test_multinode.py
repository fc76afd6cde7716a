"""Two nodes on one PostgreSQL behind a real HAProxy, in TCP passthrough (deploy/haproxy/tcp.cfg)
and TLS-terminating (deploy/haproxy/tls-terminating.cfg, the school's certificate forwarded in
RFC 9440 Client-Cert over a proxy certificate), as an operator runs them: nodes without the CA key, a node SIGKILLed and PostgreSQL restarted
while transfers run, the killed node rejoining by itself, and a revocation reaching both.

Processes, no containers: the nodes are `traffic-center serve`, the load balancer is Debian's
haproxy, PostgreSQL is a throwaway cluster of this module's own (it is stopped mid-test). The
reference LAS bron and doel run in threads of the test process.
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import io
import json
import re
import secrets
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from tests.support.postgres import ThrowawayPostgres
from tests.support.pupils import new_pgn
from traffic_center.admin.sandbox import (
    DEV_SCHOOLS,
    PROVISIONAL_LAS_URL,
    SandboxBuilder,
    SandboxSchool,
)
from traffic_center.admin.store import open_signed_store, open_store, utc_now
from traffic_center.demo.processes import ChildProcess, child_env, free_port
from traffic_center.domain.audit import INCOMPLETE, AuditType, Phase
from traffic_center.domain.identifiers import Sector
from traffic_center.domain.results import ResultCode
from traffic_center.las.config import LasConfig
from traffic_center.las.doel import (
    ClientTLS,
    DoelClient,
    DoelError,
    FetchResult,
    TrafficCenterRefused,
)
from traffic_center.las.dossier import generated_digest
from traffic_center.las.server import LasServer
from traffic_center.pki.ca import CA_CERT_FILE, CertificateAuthority
from traffic_center.pki.inspect import serial_hex
from traffic_center.settings import Settings

DEPLOY = Path(__file__).resolve().parent.parent / "deploy" / "haproxy"
TCP_CFG = DEPLOY / "tcp.cfg"
TLS_CFG = DEPLOY / "tls-terminating.cfg"
MODES = ("tcp", "tls-terminating")
BRON, DOEL = DEV_SCHOOLS[:2]
NODES = ("tc-1", "tc-2")
TRANSFERS, AT_ONCE, DOSSIER_BYTES = 60, 4, 200_000
READY_SECONDS = 30.0
PACE_SECONDS = 0.15  # one transfer starts every 150 ms: 60 take about 9 s


@dataclass
class Node:
    name: str
    home: Path
    port: int
    ops_port: int
    env: dict[str, str]
    log_dir: Path
    process: ChildProcess | None = None

    def start(self) -> None:
        self.process = ChildProcess(
            self.name, ["--home", str(self.home), "serve"], log_dir=self.log_dir, env=self.env
        )

    def kill(self) -> None:
        assert self.process is not None
        self.process.process.send_signal(signal.SIGKILL)
        self.process.process.wait(10)
        self.process.stop()  # closes its log

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()

    async def ready(self) -> None:
        """Until /readyz answers 200; the process must stay up meanwhile."""
        deadline = time.monotonic() + READY_SECONDS
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{self.ops_port}") as ops:
            while True:
                with contextlib.suppress(httpx.TransportError):
                    if (await ops.get("/readyz", timeout=2)).status_code == httpx.codes.OK:
                        return
                assert self.process is not None
                assert self.process.process.poll() is None, self.process.tail()
                assert time.monotonic() < deadline, self.process.tail()
                await asyncio.sleep(0.1)


@dataclass
class HaProxy:
    """haproxy -db on one of deploy/haproxy's files, with loopback addresses put in."""

    config: Path
    port: int
    stats_port: int
    log: Path
    certs: Path | None = None  # TLS-terminating: lb.pem, proxy.pem, ca.pem (TC_PROXY_CERTS)
    process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        binary = shutil.which("haproxy") or "/usr/sbin/haproxy"
        assert Path(binary).exists(), "haproxy not found: scripts/setup --for-tests installs it"
        env = child_env(**({"TC_PROXY_CERTS": str(self.certs)} if self.certs else {}))
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                [binary, "-db", "-f", str(self.config)], stdout=log, stderr=log, env=env
            )

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)

    async def servers(self) -> dict[str, dict[str, str]]:
        """HAProxy's own view of each node: status (UP/DOWN/…), stot (connections sent)."""
        async with httpx.AsyncClient() as client:
            answer = await client.get(f"http://127.0.0.1:{self.stats_port}/stats;csv", timeout=2)
        rows = csv.DictReader(io.StringIO(answer.text.lstrip("# ")))
        return {r["svname"]: r for r in rows if r["pxname"] == "traffic_center"}

    async def until(self, name: str, status: str, *, within: float = 15) -> None:
        """Until HAProxy reports the node in ``status`` (its stats listener may still start)."""
        deadline = time.monotonic() + within
        while True:
            with contextlib.suppress(httpx.TransportError):
                if (await self.servers())[name]["status"].startswith(status):
                    return
            assert self.process is not None
            assert self.process.poll() is None, self.log.read_text()
            assert time.monotonic() < deadline, f"HAProxy never saw {name} {status}"
            await asyncio.sleep(0.1)


def haproxy_config(nodes: list[Node], port: int, stats_port: int, mode: str) -> str:
    if mode == "tls-terminating":
        return tls_haproxy_config(nodes, port, stats_port)
    return tcp_haproxy_config(nodes, port, stats_port)


def tls_haproxy_config(nodes: list[Node], port: int, stats_port: int) -> str:
    """tls-terminating.cfg as shipped, adapted as tcp.cfg is below; each node's server line
    names its own ops port, and its certificate's name (localhost) for verifyhost."""
    text = TLS_CFG.read_text().replace("maxconn 20000", "maxconn 1000")
    text = re.sub(r"\nresolvers dns\n(?:[ \t]+.*\n|[ \t]*#.*\n)*", "\n", text)
    text = text.replace(" resolvers dns", "").replace(" port 9464 ", " ")
    text = text.replace("bind :8443 ", f"bind 127.0.0.1:{port} ")
    text = text.replace("bind :8404", f"bind 127.0.0.1:{stats_port}")
    servers = "".join(
        f"    server {n.name} 127.0.0.1:{n.port} verifyhost localhost port {n.ops_port}\n"
        for n in nodes
    )
    text, replaced = re.subn(r"(?:    server tc-\d tc-\d:8443 verifyhost tc-\d\n)+", servers, text)
    assert replaced == 1, "tls-terminating.cfg's server lines changed: adapt this template"
    for kept in (
        "option redispatch 1",
        "retries 3",
        "option httpchk GET /readyz",
        "fall 3 rise 2",
        "http-request set-header Client-Cert :%[ssl_c_der,base64]:",
        "crt proxy.pem",
    ):
        assert kept in text, kept
    return text


def tcp_haproxy_config(nodes: list[Node], port: int, stats_port: int) -> str:
    """tcp.cfg as shipped, with only what a deployment adapts replaced (its header says so):
    the bind address, the server lines with their ops port, no Docker resolver; and a
    maxconn this test process's open-files limit allows (HAProxy needs two per connection)."""
    text = TCP_CFG.read_text().replace("maxconn 20000", "maxconn 1000")
    text = re.sub(r"\nresolvers dns\n(?:[ \t]+.*\n|[ \t]*#.*\n)*", "\n", text)
    text = text.replace(" resolvers dns", "").replace("check port 9464", "check")
    text = text.replace("bind :8443", f"bind 127.0.0.1:{port}")
    text = text.replace("bind :8404", f"bind 127.0.0.1:{stats_port}")
    servers = "".join(f"    server {n.name} 127.0.0.1:{n.port} port {n.ops_port}\n" for n in nodes)
    text, replaced = re.subn(r"(?:    server tc-\d tc-\d:8443\n)+", servers, text)
    assert replaced == 1, "tcp.cfg's server lines changed: adapt this template"
    for kept in ("option redispatch 1", "retries 3", "option httpchk GET /readyz", "fall 3 rise 2"):
        assert kept in text, kept
    return text


@dataclass
class Cluster:
    root: Path
    postgres: ThrowawayPostgres
    admin: Settings
    nodes: list[Node]
    lb: HaProxy
    las: list[LasServer]
    doel_tls: ClientTLS
    doel_serial: str
    # PGN → scenario (grootte-N-mMARKER) of the bron's pupils; one pupil trickles.
    pupils: dict[str, str]
    trickle_pgn: str

    @property
    def lb_url(self) -> str:
        return f"https://127.0.0.1:{self.lb.port}"

    def cli(self, *args: str) -> str:
        """The admin CLI, on the admin's home (the only one with ca.key), same secret."""
        done = subprocess.run(
            [sys.executable, "-m", "traffic_center", "--home", str(self.admin.home), *args],
            capture_output=True, text=True, timeout=60, check=False,
            env=child_env(TC_DATABASE_URL=self.admin.effective_database_url,
                          TC_SECRET_KEY=self.secret),
        )  # fmt: skip
        assert done.returncode == 0, done.stdout + done.stderr
        return done.stdout.strip()

    @property
    def secret(self) -> str:
        assert self.admin.secret_key is not None
        return self.admin.secret_key.get_secret_value()


# --- building the world ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def own_postgres() -> Iterator[ThrowawayPostgres]:
    """A server of this module's own, since it will be stopped."""
    cluster = ThrowawayPostgres()
    cluster.init()
    cluster.start()
    yield cluster
    cluster.stop()
    cluster.remove()


async def own_database(postgres: ThrowawayPostgres, name: str) -> str:
    """A database per load-balancer mode: each cluster has its own CA, secret and chain."""
    server = postgres.server
    connection = await asyncpg.connect(
        host=server.host, port=server.port, user=server.user, database="postgres"
    )
    try:
        await connection.execute(f'CREATE DATABASE "{name}"')
    finally:
        await connection.close()
    return server.url(name)


async def issue_everything(
    admin: Settings, root: Path, pupils: dict[str, str]
) -> tuple[list[LasServer], ClientTLS, str]:
    """The admin's CA and certificates; each node's home gets ca.pem and its own two
    certificates, never ca.key; the load balancer its server and proxy certificates (for
    TLS-terminating mode); the schools are registered with their running LAS."""
    ca = CertificateAuthority.create(admin.ca_dir, name="OSO Traffic Center multinode CA")
    ca_pem = admin.ca_dir / CA_CERT_FILE
    async with open_signed_store(admin) as (store, secret):
        builder = SandboxBuilder(ca, store, secret=secret, clock=utc_now)
        for name in NODES:
            (root / name / "ca").mkdir(parents=True)
            shutil.copy(ca_pem, root / name / "ca" / CA_CERT_FILE)
            hosts = ["127.0.0.1", "localhost"]
            await builder.server_certificate(root / name / "server", hosts=hosts)
            await builder.relay_certificate(root / name / "relay")
        await lb_certificates(builder, ca_pem, root / "lb")
        servers, serial = [], ""
        for school in (BRON, DOEL):
            directory = root / f"las-{school.key}"
            await builder.server_certificate(directory / "server", hosts=["127.0.0.1"])
            await builder.register(school, url=PROVISIONAL_LAS_URL)  # moved once it listens
            issued = await builder.client_certificate(school, directory / "client")
            assert issued is not None
            serial = serial_hex(issued.certificate)  # the doel's, the last one
            server = await asyncio.to_thread(
                LasServer(las_config(school, directory, ca_pem, pupils)).start
            )
            servers.append(server)
            await builder.register(school, url=server.url)
    doel = root / f"las-{DOEL.key}"
    return servers, ClientTLS(doel / "client.pem", doel / "client.key", ca_pem), serial


async def lb_certificates(builder: SandboxBuilder, ca_pem: Path, directory: Path) -> None:
    """What tls-terminating.cfg's header asks for: lb.pem (its server certificate), proxy.pem
    (`ca issue-proxy`), ca.pem; HAProxy wants certificate and key in one file."""
    await builder.server_certificate(directory / "lb-cert", hosts=["127.0.0.1"])
    await builder.certificates.issue_proxy(out=directory / "proxy-cert")
    shutil.copy(ca_pem, directory / "ca.pem")
    for name in ("lb", "proxy"):
        pem, key = directory / f"{name}-cert.pem", directory / f"{name}-cert.key"
        (directory / f"{name}.pem").write_text(pem.read_text() + key.read_text())


def las_config(
    school: SandboxSchool, directory: Path, ca_pem: Path, pupils: dict[str, str]
) -> LasConfig:
    return LasConfig(
        cert=directory / "server.pem",
        key=directory / "server.key",
        ca=ca_pem,
        sector=Sector(school.sector),
        brin=school.brin,
        pupils=pupils,
    )


def new_node(name: str, root: Path, *, url: str, secret: str) -> Node:
    """A node as a second machine would run it: its own home, the shared store and secret;
    a dead node's open exchanges are closed by the others within seconds."""
    port, ops_port = free_port(), free_port()
    env = child_env(
        TC_DATABASE_URL=url,
        TC_SECRET_KEY=secret,
        TC_PORT=str(port),
        TC_OPS_PORT=str(ops_port),
        TC_LOG_LEVEL="warning",
        TC_NODE_HEARTBEAT_SECONDS="0.5",
        TC_ORPHAN_GRACE_SECONDS="2",
    )
    return Node(name, root / name, port, ops_port, env, root / "logs")


@pytest.fixture(scope="module", params=MODES)
async def cluster(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    own_postgres: ThrowawayPostgres,
) -> AsyncIterator[Cluster]:
    mode = str(request.param)
    root = tmp_path_factory.mktemp(f"multinode-{mode}")
    url = await own_database(own_postgres, f"multinode_{mode.replace('-', '_')}")
    secret = secrets.token_urlsafe(48)  # made now, never stored in the repository
    admin = Settings(home=root / "admin", database_url=url, secret_key=secret)
    # Every pupil carries its own marker: a dossier delivered to the wrong request shows.
    pupils = {new_pgn(): f"grootte-{DOSSIER_BYTES}-mT{i}" for i in range(TRANSFERS + 5)}
    trickle_pgn = new_pgn()
    # 1 KiB every 50 ms: minutes if let run, so the kill surely finds it mid-stream.
    las_pupils = {**pupils, trickle_pgn: "trickle-4000000"}
    las, doel_tls, doel_serial = await issue_everything(admin, root, las_pupils)
    (root / "logs").mkdir()
    nodes = [new_node(name, root, url=url, secret=secret) for name in NODES]
    for node in nodes:
        node.start()
    lb = HaProxy(root / "haproxy.cfg", free_port(), free_port(), root / "logs" / "haproxy.log")
    if mode == "tls-terminating":
        lb.certs = root / "lb"
    lb.config.write_text(haproxy_config(nodes, lb.port, lb.stats_port, mode))
    world = Cluster(
        root, own_postgres, admin, nodes, lb, las, doel_tls, doel_serial, pupils, trickle_pgn
    )
    try:
        await asyncio.gather(*(node.ready() for node in nodes))
        lb.start()
        for node in nodes:
            await lb.until(node.name, "UP")
        yield world
    finally:
        lb.stop()
        for node in nodes:
            await asyncio.to_thread(node.stop)
        await asyncio.gather(*(asyncio.to_thread(server.stop) for server in las))


# --- what a doel does --------------------------------------------------------------------------


def scenario_digest(scenario: str) -> str:
    """The SHA-256 of the dossier the bron generates for ``grootte-<N>-m<marker>``."""
    sized = re.fullmatch(r"grootte-(\d+)-m(\w+)", scenario)
    assert sized is not None, scenario
    return generated_digest(int(sized[1]), sized[2])


@dataclass
class Transfer:
    pgn: str
    started: float = 0.0
    ended: float = 0.0
    sessie_id: str | None = None
    fetched: FetchResult | None = None
    error: str | None = None
    refused_status: int | None = None  # a broker message answered with a problem
    refused_code: str | None = None

    @property
    def delivered(self) -> bool:
        return self.fetched is not None and self.fetched.status == httpx.codes.OK

    @property
    def server_error(self) -> bool:
        """A node answered 500 or more. Not: no answer at all, nor the load balancer's own
        error page for a node killed under the request (no problem body, so no code: the
        doel client says OverdrachtMislukt), which no node could log."""
        if self.fetched is not None:
            status, code = self.fetched.status, self.fetched.resultaat
        else:
            status, code = self.refused_status, self.refused_code
        return (
            status is not None
            and status >= httpx.codes.INTERNAL_SERVER_ERROR
            and code != ResultCode.OVERDRACHT_MISLUKT
        )

    def overlaps(self, start: float, end: float) -> bool:
        return self.started <= end and self.ended >= start


async def transfer(url: str, tls: ClientTLS, pgn: str) -> Transfer:
    """One overdracht on connections of its own, as a school's LAS would make it."""
    done = Transfer(pgn, started=time.monotonic())
    try:
        async with DoelClient(url, tls=tls, timeout=httpx.Timeout(15, connect=5)) as doel:
            granted = await doel.open_session(BRON.brin, pgn)
            done.sessie_id = granted.sessie_id
            done.fetched = await doel.fetch_dossier(granted.sessie_id, BRON.routeringskenmerk, pgn)
    except TrafficCenterRefused as exc:
        done.error, done.refused_status, done.refused_code = str(exc), exc.status, exc.code
    except DoelError as exc:
        done.error = f"{type(exc).__name__}: {exc}"
    done.ended = time.monotonic()
    return done


async def whoami(url: str, tls: ClientTLS) -> int:
    """GET /v1/whoami on a fresh connection; 0 when there was no answer."""
    async with httpx.AsyncClient(base_url=url, verify=tls.ssl_context(), timeout=5) as client:
        try:
            return (await client.get("/v1/whoami")).status_code
        except httpx.TransportError:
            return 0


# --- the tests -----------------------------------------------------------------------------------


async def test_nodes_serve_with_only_ca_pem_of_the_ca(cluster: Cluster) -> None:
    """`serve` needs ca.pem, the store and its own certificates; ca.key stays with the admin."""
    assert (cluster.admin.ca_dir / "ca.key").is_file()
    for node, pgn in zip(cluster.nodes, cluster.pupils, strict=False):
        assert sorted(p.name for p in (node.home / "ca").iterdir()) == [CA_CERT_FILE]
        direct = f"https://127.0.0.1:{node.port}"
        assert await whoami(direct, cluster.doel_tls) == httpx.codes.OK
        relayed = await transfer(direct, cluster.doel_tls, pgn)
        assert relayed.fetched is not None, relayed.error
        assert relayed.fetched.sha256 == scenario_digest(cluster.pupils[pgn])
        async with httpx.AsyncClient() as ops:
            ready = await ops.get(f"http://127.0.0.1:{node.ops_port}/readyz")
        assert ready.status_code == httpx.codes.OK, ready.text
    assert not list(cluster.root.glob("tc-*/**/ca.key"))


async def test_a_node_crash_and_a_postgresql_restart_lose_only_what_was_in_flight(
    cluster: Cluster,
) -> None:
    victim, survivor = cluster.nodes
    run = Run(cluster, pgns=list(cluster.pupils)[5 : 5 + TRANSFERS])
    # A relay that takes minutes, straight to the victim: the kill surely cuts one mid-stream.
    long_relay = asyncio.create_task(trickle(cluster, victim, run.trickling))
    chaos = asyncio.gather(
        run.kill_at_a_third(victim), run.restart_postgres_at_two_thirds(survivor)
    )
    await asyncio.wait_for(asyncio.gather(*(run.worker() for _ in range(AT_ONCE))), timeout=120)
    await asyncio.wait_for(chaos, timeout=60)
    cut = await asyncio.wait_for(long_relay, timeout=30)
    elapsed = time.monotonic() - run.started
    done, kill, outage = run.done, run.moments["kill"], run.outage

    # No dishonest outcome: every 200 is the bron's dossier to the byte, or marked broken.
    for item in (t for t in done if t.delivered):
        assert item.fetched is not None
        expected = scenario_digest(cluster.pupils[item.pgn])
        assert item.fetched.complete == (item.fetched.sha256 == expected), item
    assert not cut.complete
    assert 8 * 1024 <= cut.bytes < 4_000_000
    delivered = [t for t in done if t.delivered and t.fetched and t.fetched.complete]

    # Lost: only what was in flight at the kill or fell inside the PostgreSQL restart.
    lost = [t for t in done if t not in delivered]
    at_kill = [t for t in lost if t.pgn in run.exposed_at_kill]
    in_outage = [t for t in lost if t.overlaps(*outage)]
    unexplained = [t for t in lost if t not in at_kill and t not in in_outage]
    print(  # the figures an operator asks for, in the test's output
        f"\n{len(done)} transfers in {elapsed:.1f} s: {len(delivered)} delivered, {len(lost)} "
        f"lost: {len(at_kill)} of the {len(run.exposed_at_kill)} in flight at the kill, "
        f"{len(in_outage)} inside the PostgreSQL restart ({outage[1] - outage[0]:.1f} s)"
    )
    assert len(done) == TRANSFERS
    assert unexplained == [], [
        (
            t.error,
            t.fetched,
            f"from kill {t.started - kill:+.2f} s",
            f"{t.started - outage[0]:+.2f} s",
        )
        for t in unexplained
    ]
    assert len(at_kill) <= AT_ONCE
    assert len(delivered) >= TRANSFERS // 2, "too few delivered for the test to mean anything"
    assert kill < outage[0]

    await every_transfer_on_the_record(cluster, run, cut)
    # Every 5xx a node answered has its error line with a request id (the logs of both,
    # the killed node's included: written line by line as it went).
    logged = server_error_lines(cluster)
    answered_5xx = [t for t in done if t.server_error]
    print(f"{len(answered_5xx)} answered 5xx to the doel; {len(logged)} 5xx lines logged")
    assert len(logged) >= len(answered_5xx), logged
    assert all(line.get("request_id") for line in logged)
    await the_killed_node_rejoins(cluster, victim)
    await revocation_reaches_both_nodes_and_the_lb(cluster)
    assert cluster.cli("audit", "verify").startswith("OK ")
    assert survivor.process is not None
    assert survivor.process.process.poll() is None


@dataclass
class Run:
    """Transfers through the load balancer at a steady pace, a kill after a third of them and
    a PostgreSQL restart after two thirds; what was in flight when."""

    cluster: Cluster
    pgns: list[str]
    done: list[Transfer] = field(default_factory=list)
    in_flight: set[str] = field(default_factory=set)
    claimed: int = 0
    exposed_at_kill: set[str] = field(default_factory=set)
    moments: dict[str, float] = field(default_factory=dict)
    trickling: asyncio.Event = field(default_factory=asyncio.Event)
    progress: asyncio.Event = field(default_factory=asyncio.Event)
    started: float = field(default_factory=time.monotonic)

    @property
    def outage(self) -> tuple[float, float]:
        return self.moments["pg_stop"], self.moments["pg_back"]

    async def worker(self) -> None:
        while self.claimed < len(self.pgns):
            index, self.claimed = self.claimed, self.claimed + 1
            pgn = self.pgns[index]
            # A steady pace, not a burst: the kill and the restart fall among transfers
            # starting and finishing, as in a day's traffic.
            await asyncio.sleep(max(0.0, self.started + PACE_SECONDS * index - time.monotonic()))
            self.in_flight.add(pgn)
            self.progress.set()
            self.done.append(await transfer(self.cluster.lb_url, self.cluster.doel_tls, pgn))
            self.in_flight.discard(pgn)
            self.progress.set()

    async def reached(self, share: float) -> None:
        while len(self.done) < share * len(self.pgns):
            self.progress.clear()
            await self.progress.wait()

    async def some_in_flight(self) -> None:
        while not self.in_flight:
            self.progress.clear()
            await self.progress.wait()

    async def kill_at_a_third(self, victim: Node) -> None:
        await self.reached(1 / 3)
        await asyncio.wait_for(self.trickling.wait(), timeout=20)
        # Kill with a transfer through the load balancer on the way, too.
        await asyncio.wait_for(self.some_in_flight(), timeout=10)
        self.exposed_at_kill.update(self.in_flight)
        self.moments["kill"] = time.monotonic()
        await asyncio.to_thread(victim.kill)

    async def restart_postgres_at_two_thirds(self, survivor: Node) -> None:
        await self.reached(2 / 3)
        self.moments["pg_stop"] = time.monotonic()
        await asyncio.to_thread(self.cluster.postgres.stop, "fast")
        await asyncio.to_thread(self.cluster.postgres.start)
        # Over when the node and the load balancer have recovered from it, not at the first
        # answer: a node's /readyz stays 503 until its next heartbeat writes, and health
        # checks failed meanwhile may still take it out of HAProxy (then rise 2 brings it back).
        deadline = time.monotonic() + 20
        while not await self.recovered(survivor):
            assert time.monotonic() < deadline, "the node did not recover from the restart"
            await asyncio.sleep(0.1)
        self.moments["pg_back"] = time.monotonic()

    async def recovered(self, node: Node) -> bool:
        async with httpx.AsyncClient() as ops:
            try:
                ready = await ops.get(f"http://127.0.0.1:{node.ops_port}/readyz", timeout=2)
            except httpx.TransportError:
                return False
        if ready.status_code != httpx.codes.OK:
            return False
        servers = await self.cluster.lb.servers()
        check = servers[node.name]["check_status"]
        return (
            servers[node.name]["status"] == "UP"
            and check == "L7OK"
            and await whoami(self.cluster.lb_url, self.cluster.doel_tls) == httpx.codes.OK
        )


class Counting:
    """A chunk sink that says when enough has arrived."""

    def __init__(self, enough: int, event: asyncio.Event) -> None:
        self.received, self.enough, self.event = 0, enough, event

    def write(self, data: bytes, /) -> None:
        self.received += len(data)
        if self.received >= self.enough:
            self.event.set()


async def trickle(cluster: Cluster, node: Node, trickling: asyncio.Event) -> FetchResult:
    """The trickling pupil's dossier (1 KiB every 50 ms) from ``node`` itself."""
    async with DoelClient(f"https://127.0.0.1:{node.port}", tls=cluster.doel_tls) as doel:
        granted = await doel.open_session(BRON.brin, cluster.trickle_pgn)
        sink = Counting(8 * 1024, trickling)
        return await doel.fetch_dossier(
            granted.sessie_id, BRON.routeringskenmerk, cluster.trickle_pgn, sink=sink
        )


def server_error_lines(cluster: Cluster) -> list[dict[str, Any]]:
    """The nodes' canonical exchange lines for answers of 500 or more."""
    lines = []
    for node in cluster.nodes:
        assert node.process is not None
        for line in node.process.log_path.read_text().splitlines():
            with contextlib.suppress(ValueError):
                event = json.loads(line)
                if event.get("event") == "exchange" and (event.get("status") or 0) >= 500:
                    assert event["level"] == "error", event
                    lines.append(event)
    return lines


async def every_transfer_on_the_record(cluster: Cluster, run: Run, cut: FetchResult) -> None:
    """Each session granted is recorded; every dossier exchange started is closed: by its
    node, with the digest the doel received, or — the killed node's open ones — by the
    survivor as Onvolledig."""
    async with open_store(cluster.admin) as store:
        deadline = time.monotonic() + 20
        while (still_open := await store.audit.open_count()) > 0:
            assert time.monotonic() < deadline, f"{still_open} exchanges never closed"
            await asyncio.sleep(0.2)
        started = await store.audit.by_transaction(cut.transactie_id or "", phase=Phase.STARTED)
        closed = await store.audit.by_transaction(cut.transactie_id or "")
        assert started is not None
        assert closed is not None
        assert closed.result == INCOMPLETE
        victim_id = started.node_id
        assert closed.subject == f"node {victim_id}"
        assert closed.node_id not in (None, victim_id)
        for item in run.done:
            if item.sessie_id is None:
                continue  # refused or unreachable before a session was granted
            records = await store.audit.for_session(item.sessie_id)
            assert any(r.type is AuditType.SESSION for r in records), item
            dossier = [r for r in records if r.type is AuditType.DOSSIER]
            opened = {r.transaction_id: r for r in dossier if r.phase is Phase.STARTED}
            final = {r.transaction_id: r for r in dossier if r.phase is Phase.FINAL}
            assert set(opened) <= set(final), f"a started exchange was never closed: {item}"
            for transaction_id, closing in final.items():
                if closing.result == INCOMPLETE:  # only ever the killed node's
                    assert closing.subject == f"node {victim_id}", closing
                    assert opened[transaction_id].node_id == victim_id
            if item.delivered and item.fetched is not None and item.fetched.complete:
                closing = final[item.fetched.transactie_id or ""]
                if closing.result == INCOMPLETE:
                    # Every byte sent, killed before its final record: in flight at the kill
                    # from the node's side (the record follows the last byte).
                    assert item.pgn in run.exposed_at_kill or item.ended <= run.moments["kill"]
                    assert run.moments["kill"] - item.ended < 2
                else:
                    assert closing.sha256 == item.fetched.sha256, closing


async def the_killed_node_rejoins(cluster: Cluster, victim: Node) -> None:
    """Started again with the same command: ready, and HAProxy sends it connections."""
    await cluster.lb.until(victim.name, "DOWN")
    victim.start()
    await victim.ready()
    await cluster.lb.until(victim.name, "UP")
    before = int((await cluster.lb.servers())[victim.name]["stot"])
    answers = [await whoami(cluster.lb_url, cluster.doel_tls) for _ in range(6)]
    assert set(answers) == {httpx.codes.OK}
    assert int((await cluster.lb.servers())[victim.name]["stot"]) > before


async def revocation_reaches_both_nodes_and_the_lb(cluster: Cluster) -> None:
    """`ca revoke` on the admin's machine: refused on each node's port and through HAProxy
    within 5 s (docs/rules.md, rule 1)."""
    urls = [f"https://127.0.0.1:{n.port}" for n in cluster.nodes] + [cluster.lb_url]
    assert [await whoami(u, cluster.doel_tls) for u in urls] == [httpx.codes.OK] * 3
    cluster.cli("ca", "revoke", cluster.doel_serial, "--reason", "keyCompromise")
    revoked_at = time.monotonic()
    pending = set(urls)
    while pending and time.monotonic() - revoked_at < 6:
        for url in list(pending):
            if await whoami(url, cluster.doel_tls) == httpx.codes.FORBIDDEN:
                pending.discard(url)
        await asyncio.sleep(0.1)
    elapsed = time.monotonic() - revoked_at
    assert not pending, f"still accepted after {elapsed:.1f} s: {pending}"
    assert elapsed <= 5.0
