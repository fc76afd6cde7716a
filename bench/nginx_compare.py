"""The Traffic Center against nginx as an mTLS reverse proxy in front of the same bron LAS.

    .venv/bin/python bench/nginx_compare.py [--quick] [--only latency|concurrency]

Starts a sandbox (a Traffic Center and two reference LAS processes on loopback) and, beside
it, Debian's nginx (/usr/sbin/nginx) configured as a streaming mTLS reverse proxy to the
sandbox's bron LAS, with the relay's client certificate (the configuration is in
bench/README.md and in ``nginx_config`` below). Every hop is mTLS on both paths:

    curl --cert doel ──mTLS──▶ nginx       ──mTLS (relay cert)──▶ bron LAS
    curl --cert doel ──mTLS──▶ Traffic Center ──mTLS (relay cert)──▶ bron LAS

The client is curl (one process per fetch for latency; one process with ``--parallel`` per
batch for concurrency), the same binary and options on both sides, its output to /dev/null.
Rounds are interleaved (nginx, TC, nginx, TC…) so a noisy neighbour hurts both alike.

- latency: a 170 kB and a 50 MB dossier, p50/p99 and throughput of two times per fetch:
  *whole* (curl's ``time_total``: TCP connect, the mTLS handshake to the front, request,
  last byte; what a LAS calling with curl waits, as issue 14's figures were taken, and what
  the goals are read on) and *request* (``time_total - time_pretransfer``: from the request
  going out to the last byte, the handshake left out: the relay's own share);
- concurrency: 1, 8 and 32 concurrent 1 MB fetches (``--parallel``), throughput over each
  batch's wall time (connects, handshakes and curl's start included, on both sides).

The Traffic Center's session is opened once per dossier before the clock starts: what is
compared is the relayed documentRequest (``POST /v1/sessions/{id}/dossier``) against the
same request through nginx. It prints tables and the TC/nginx ratios; it asserts no speed.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import hashlib
import json
import os
import pwd
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from _common import (
    KB,
    MB,
    Case,
    Samples,
    add_tc_env_option,
    bron_request,
    cpu_seconds,
    machine_line,
    ms,
    running_sandbox,
    tc_env,
    tc_env_line,
)

from traffic_center.admin.sandbox import SandboxBuilder
from traffic_center.admin.store import open_signed_store, utc_now
from traffic_center.demo.processes import free_port
from traffic_center.demo.sandbox import BRON, Sandbox
from traffic_center.pki.ca import CertificateAuthority

NGINX = Path("/usr/sbin/nginx")
CURL_TIMEOUT = 300.0
# What curl prints after each transfer: status, bytes, seconds from the start to when the
# request could go (connected, TLS handshake done) and to the last byte.
WRITE_OUT = "%{http_code} %{size_download} %{time_pretransfer} %{time_total}\\n"


@dataclass(frozen=True)
class Target:
    """One way to fetch one dossier with curl: where, with which body and headers."""

    name: str
    url: str
    body: str
    headers: tuple[str, ...]
    cert: Path
    key: Path
    ca: Path
    pid: int  # the process serving it (nginx's master, the TC): its CPU and its children's

    def command(self, fetches: int = 1, parallel: int = 0, out: str = os.devnull) -> list[str]:
        command = [
            *("curl", "--silent", "--show-error", "--http1.1"),
            *("--cacert", str(self.ca), "--cert", str(self.cert), "--key", str(self.key)),
            *("--header", "Content-Type: application/json"),
            *(x for header in self.headers for x in ("--header", header)),
            *("--data-binary", self.body, "--write-out", WRITE_OUT),
        ]
        if parallel:
            command += ["--parallel", "--parallel-max", str(parallel)]
        for _ in range(fetches):
            command += [self.url, "--output", out]
        return command


@dataclass(frozen=True)
class Transfer:
    status: int
    size: int
    seconds: float  # curl's time_total: connect, TLS handshake, request, last byte in
    request_seconds: float  # from the request going out to the last byte in


def curl(
    target: Target, fetches: int = 1, parallel: int = 0, out: str = os.devnull
) -> list[Transfer]:
    done = subprocess.run(
        target.command(fetches, parallel, out),
        capture_output=True, text=True, timeout=CURL_TIMEOUT, check=False,
    )  # fmt: skip
    transfers = [_transfer(line) for line in done.stdout.splitlines() if line.strip()]
    if done.returncode != 0 or len(transfers) != fetches:
        raise SystemExit(f"{target.name}: curl failed ({done.returncode}): {done.stderr.strip()}")
    return transfers


def _transfer(line: str) -> Transfer:
    status, size, pretransfer, total = line.split()
    return Transfer(int(status), int(size), float(total), float(total) - float(pretransfer))


def check(target: Target, transfers: list[Transfer], size: int) -> None:
    for transfer in transfers:
        if transfer.status != 200 or transfer.size != size:
            raise SystemExit(f"{target.name}: got {transfer}, not 200 with {size} bytes")


# --- nginx ------------------------------------------------------------------------------------


async def issue_relay_certificate(sandbox: Sandbox, prefix: Path) -> None:
    """A relay certificate of nginx's own, as a second relay node would have: the bron counts
    open connections per certificate (64), and nginx's must not eat the Traffic Center's."""
    assert sandbox.settings is not None
    ca = CertificateAuthority.load(sandbox.settings.ca_dir)
    async with open_signed_store(sandbox.settings) as (store, secret):
        builder = SandboxBuilder(ca, store, secret=secret, clock=utc_now)
        await builder.relay_certificate(prefix)


def nginx_config(directory: Path, sandbox: Sandbox, port: int, workers: int) -> str:
    """A streaming mTLS reverse proxy to the bron, as bench/README.md states it."""
    home, ca = sandbox.root / "tc", sandbox.ca_pem
    relay = directory / "relay"  # issue_relay_certificate's
    bron = urlsplit(sandbox.las[BRON.key].url)  # https://127.0.0.1:port/oso
    # As root, nginx's workers would drop to `nobody`, who cannot read the sandbox's keys.
    user = f"user {pwd.getpwuid(os.geteuid()).pw_name};" if os.geteuid() == 0 else ""
    temp = "\n".join(
        f"    {kind}_temp_path {directory / kind};"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    return f"""{user}
worker_processes {workers};
daemon off;
pid {directory / "nginx.pid"};
error_log {directory / "error.log"} warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
{temp}
    upstream bron {{
        server {bron.netloc};
        keepalive 32;
        keepalive_timeout 4s;  # before the bron's 5 s: never reuse a connection it closes
    }}
    server {{
        listen 127.0.0.1:{port} ssl;
        ssl_protocols TLSv1.2 TLSv1.3;
        ssl_certificate {home / "server.pem"};
        ssl_certificate_key {home / "server.key"};
        ssl_client_certificate {ca};
        ssl_verify_client on;
        location / {{
            proxy_pass https://bron{bron.path.rstrip("/")}/;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_ssl_certificate {relay}.pem;
            proxy_ssl_certificate_key {relay}.key;
            proxy_ssl_trusted_certificate {ca};
            proxy_ssl_verify on;
            proxy_ssl_name 127.0.0.1;
            proxy_ssl_session_reuse on;
            proxy_buffering off;
            proxy_request_buffering off;
            proxy_read_timeout 120s;
        }}
    }}
}}
"""


@asynccontextmanager
async def running_nginx(sandbox: Sandbox, workers: int) -> AsyncIterator[tuple[str, int]]:
    """nginx in front of the sandbox's bron; its base URL and master's pid. Stopped (SIGQUIT)
    afterwards."""
    directory = Path(tempfile.mkdtemp(prefix="nginx-", dir=sandbox.root))
    await issue_relay_certificate(sandbox, directory / "relay")
    with nginx_process(directory, sandbox, workers) as url_and_pid:
        yield url_and_pid


@contextmanager
def nginx_process(directory: Path, sandbox: Sandbox, workers: int) -> Iterator[tuple[str, int]]:
    port = free_port()
    config = directory / "nginx.conf"
    config.write_text(nginx_config(directory, sandbox, port, workers))
    process = subprocess.Popen(  # Debian's nginx, our own config
        [str(NGINX), "-p", str(directory), "-c", str(config), "-e", str(directory / "error.log")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        _wait_listening(process, port, directory)
        yield f"https://127.0.0.1:{port}", process.pid
    except BaseException:
        log = (directory / "error.log").read_text(errors="replace").splitlines()
        print("nginx error.log, last lines:", *log[-10:], sep="\n", file=sys.stderr)
        raise
    finally:
        process.send_signal(signal.SIGQUIT)  # graceful: finish what is in flight
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _wait_listening(process: subprocess.Popen[str], port: int, directory: Path) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if process.poll() is not None:
            log = (
                (directory / "error.log").read_text(errors="replace") if directory.exists() else ""
            )
            raise SystemExit(
                f"nginx exited: {process.stderr.read() if process.stderr else ''}{log}"
            )
        try:
            with socket.create_connection(("127.0.0.1", port), 0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise SystemExit("nginx did not listen within 10 s")


# --- measuring --------------------------------------------------------------------------------


def targets_for(
    sandbox: Sandbox,
    nginx: tuple[str, int],
    sessie_id: str,
    routeringskenmerk: str,
    zoeksleutel: str,
) -> tuple[Target, Target]:
    nginx_url, nginx_pid = nginx
    assert sandbox.tc is not None
    tls = sandbox.doel_tls()
    body, headers = bron_request(zoeksleutel)
    through_nginx = Target(
        "nginx", nginx_url + "/dossier", json.dumps(body),
        tuple(f"{name}: {value}" for name, value in headers.items()),
        tls.cert, tls.key, tls.ca, nginx_pid,
    )  # fmt: skip
    relayed = {
        "routeringskenmerk": routeringskenmerk,
        "zoeksleutel": zoeksleutel,
        "aanvraagdatum": None,
    }
    through_tc = Target(
        "TC", f"{sandbox.tc_url}/v1/sessions/{sessie_id}/dossier", json.dumps(relayed), (),
        tls.cert, tls.key, tls.ca, sandbox.tc.pid,
    )  # fmt: skip
    return through_nginx, through_tc


def same_bytes(targets: tuple[Target, ...], size: int, directory: Path) -> None:
    """One fetch each, written to a file: both paths must give the same bytes."""
    digests = set()
    for target in targets:
        out = directory / f"warm-{target.name}"
        check(target, curl(target, out=str(out)), size)
        digests.add(hashlib.sha256(out.read_bytes()).hexdigest())
        out.unlink()
    if len(digests) != 1:
        raise SystemExit("nginx and the Traffic Center gave different bytes")


def measure_latency(case: Case, nginx: Target, tc: Target) -> list[dict[str, Any]]:
    """Interleaved rounds; a row for the whole fetch and one for the request alone."""
    whole = {nginx.name: Samples(), tc.name: Samples()}
    request = {nginx.name: Samples(), tc.name: Samples()}
    cpu = {nginx.name: 0.0, tc.name: 0.0}
    for _ in range(case.rounds):
        for target in (nginx, tc):
            before = cpu_seconds(target.pid)
            transfers = curl(target)
            cpu[target.name] += cpu_seconds(target.pid) - before
            check(target, transfers, case.size)
            whole[target.name].seconds.append(transfers[0].seconds)
            request[target.name].seconds.append(transfers[0].request_seconds)
    moved = case.rounds * case.size / MB
    cpu_ms_per_mb = {"nginx_cpu_ms_mb": cpu[nginx.name] * 1000 / moved,
                     "tc_cpu_ms_mb": cpu[tc.name] * 1000 / moved}  # fmt: skip
    return [
        latency_row(case, "whole", whole[nginx.name], whole[tc.name]) | cpu_ms_per_mb,
        latency_row(case, "request", request[nginx.name], request[tc.name]) | cpu_ms_per_mb,
    ]


def latency_row(case: Case, timed: str, n: Samples, t: Samples) -> dict[str, Any]:
    return {
        "case": case.label,
        "timed": timed,
        "bytes": case.size,
        "rounds": case.rounds,
        "nginx_p50": n.percentile(0.5),
        "nginx_p99": n.percentile(0.99),
        "tc_p50": t.percentile(0.5),
        "tc_p99": t.percentile(0.99),
        "nginx_mb_s": n.throughput_mb_s(case.size),
        "tc_mb_s": t.throughput_mb_s(case.size),
        "p50_ratio": t.percentile(0.5) / n.percentile(0.5),
        "mb_s_ratio": t.throughput_mb_s(case.size) / n.throughput_mb_s(case.size),
    }


def measure_concurrency(
    level: int, per_client: int, rounds: int, size: int, nginx: Target, tc: Target
) -> dict[str, Any]:
    """``rounds`` batches per side, each ``level`` parallel transfers of ``per_client`` each."""
    fetches = level * per_client
    wall = {nginx.name: 0.0, tc.name: 0.0}
    cpu = {nginx.name: 0.0, tc.name: 0.0}
    for _ in range(rounds):
        for target in (nginx, tc):
            before, started = cpu_seconds(target.pid), time.perf_counter()
            check(target, curl(target, fetches, parallel=level), size)
            wall[target.name] += time.perf_counter() - started
            cpu[target.name] += cpu_seconds(target.pid) - before
    moved = fetches * rounds * size / MB
    nginx_mb_s, tc_mb_s = moved / wall[nginx.name], moved / wall[tc.name]
    return {
        "concurrent": level,
        "fetches": fetches * rounds,
        "nginx_mb_s": nginx_mb_s,
        "tc_mb_s": tc_mb_s,
        "ratio": tc_mb_s / nginx_mb_s,
        "nginx_cpu_ms_mb": cpu[nginx.name] * 1000 / moved,
        "tc_cpu_ms_mb": cpu[tc.name] * 1000 / moved,
    }


async def run(args: argparse.Namespace) -> dict[str, list[dict[str, Any]]]:
    quick = args.quick
    cases = [
        Case("170kB", 170 * KB, 20 if quick else 200, pgn="999990056"),
        Case("50MB", 50 * MB, 3 if quick else 15, pgn="999990068"),
    ]
    cases = [case for case in cases if case.label in args.cases]
    concurrency = Case("1MB", 1 * MB, 1 if quick else 3, pgn="999990081")
    if args.rounds is not None:
        cases = [dataclasses.replace(case, rounds=args.rounds) for case in cases]
        concurrency = dataclasses.replace(concurrency, rounds=args.rounds)
    pupils = {case.pgn: f"grootte-{case.size}" for case in (*cases, concurrency)}
    results: dict[str, list[dict[str, Any]]] = {"latency": [], "concurrency": []}
    async with running_sandbox("tc-nginx-bench-", tc_env=tc_env(args), pupils=pupils) as sandbox:
        async with sandbox.doel_client() as doel:
            targets = {}
            for case in (*cases, concurrency):
                session = await doel.open_session(BRON.brin, case.pgn)
                targets[case.pgn] = (
                    session.sessie_id,
                    session.bron_endpoints[0].routeringskenmerk,
                    doel.zoeksleutel(case.pgn),
                )
        async with running_nginx(sandbox, args.nginx_workers) as nginx:
            pair = {pgn: targets_for(sandbox, nginx, *t) for pgn, t in targets.items()}
            if args.only in (None, "latency"):
                for case in cases:
                    await asyncio.to_thread(same_bytes, pair[case.pgn], case.size, sandbox.root)
                    rows = await asyncio.to_thread(measure_latency, case, *pair[case.pgn])
                    results["latency"].extend(rows)
                if results["latency"]:
                    print_latency(results["latency"])
            if args.only in (None, "concurrency"):
                nginx, tc = pair[concurrency.pgn]
                await asyncio.to_thread(same_bytes, (nginx, tc), concurrency.size, sandbox.root)
                for level in args.levels:
                    # At least two transfers per connection, so each batch is more than
                    # handshakes; and enough bytes that curl's own start-up is small beside it.
                    per_client = max(2, -(-args.batch // level))
                    row = await asyncio.to_thread(
                        measure_concurrency,
                        level, per_client, concurrency.rounds, concurrency.size, nginx, tc,
                    )  # fmt: skip
                    results["concurrency"].append(row)
                print_concurrency(results["concurrency"])
    return results


def print_latency(rows: list[dict[str, Any]]) -> None:
    print("| dossier | timed | n | nginx p50 | p99 | MB/s | TC p50 | p99 | MB/s "
          "| TC/nginx p50 | TC/nginx MB/s | CPU ms/MB nginx | TC |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['case']} | {r['timed']} | {r['rounds']} "
            f"| {ms(r['nginx_p50'])} ms | {ms(r['nginx_p99'])} ms "
            f"| {r['nginx_mb_s']:.0f} | {ms(r['tc_p50'])} ms | {ms(r['tc_p99'])} ms "
            f"| {r['tc_mb_s']:.0f} | {r['p50_ratio']:.2f}× | {r['mb_s_ratio']:.2f}× "
            f"| {r['nginx_cpu_ms_mb']:.1f} | {r['tc_cpu_ms_mb']:.1f} |"
        )
    print("goals, on the whole rows: 170 kB TC/nginx p50 ≤ 1.3×; 50 MB MB/s ≥ 0.9×", flush=True)


def print_concurrency(rows: list[dict[str, Any]]) -> None:
    print("| concurrent 1 MB | fetches per side | nginx MB/s | TC MB/s | TC/nginx "
          "| CPU ms/MB nginx | TC |")  # fmt: skip
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['concurrent']} | {r['fetches']} | {r['nginx_mb_s']:.0f} "
            f"| {r['tc_mb_s']:.0f} | {r['ratio']:.2f}× "
            f"| {r['nginx_cpu_ms_mb']:.1f} | {r['tc_cpu_ms_mb']:.1f} |"
        )
    print("goal: TC/nginx ≥ 0.8× at 32", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer rounds, about a minute")
    parser.add_argument("--rounds", type=int, help="rounds per case (overrides the default)")
    parser.add_argument("--only", choices=("latency", "concurrency"), help="one part only")
    parser.add_argument("--cases", default="170kB,50MB", help="latency dossiers [170kB,50MB]")
    parser.add_argument("--levels", default="1,8,32", help="concurrent fetches to try [1,8,32]")
    parser.add_argument("--batch", type=int, default=32, help="1 MB fetches per batch [32]")
    parser.add_argument("--nginx-workers", type=int, default=1, help="worker_processes [1]")
    add_tc_env_option(parser)
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    args = parser.parse_args(argv)
    args.cases = args.cases.split(",")
    args.levels = [int(level) for level in args.levels.split(",")]
    if not NGINX.exists():
        print(f"{NGINX} is missing: scripts/setup --for-tests installs Debian's nginx")
        return 2
    print(f"# Traffic Center vs nginx ({args.nginx_workers} worker), curl client, every hop mTLS")
    print(f"# {machine_line()}", flush=True)
    if settings_line := tc_env_line(args):
        print(settings_line, flush=True)
    results = asyncio.run(run(args))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
