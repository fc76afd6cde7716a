"""A real `traffic-center serve --dev` process on loopback, and TLS clients that attack it.

For the tests (and the attack bench) that measure a node's memory and its answers under abuse:
they need the process's own RSS, so the node is a child process, not a thread.
"""

from __future__ import annotations

import contextlib
import os
import resource
import signal
import socket
import ssl
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
from cryptography import x509

from traffic_center.demo.processes import child_env, free_port
from traffic_center.pki.ca import CertificateAuthority, write_issued
from traffic_center.pki.inspect import routeringskenmerk_of, serial_hex

SCHOOL_A = "school-a"  # the certificate `serve --dev` issues and registers


@dataclass
class Node:
    home: Path
    port: int
    ops_port: int
    log: Path
    process: subprocess.Popen[bytes]

    def context(self, who: str = SCHOOL_A) -> ssl.SSLContext:
        """A client context with the certificate ``home/dev/<who>.pem``."""
        context = ssl.create_default_context(cafile=str(self.home / "ca" / "ca.pem"))
        context.load_cert_chain(
            str(self.home / "dev" / f"{who}.pem"), str(self.home / "dev" / f"{who}.key")
        )
        return context

    def tls(self, who: str = SCHOOL_A, *, timeout: float = 5) -> ssl.SSLSocket:
        """A connection with ``who``'s certificate, handshake done."""
        raw = socket.create_connection(("127.0.0.1", self.port), timeout=timeout)
        return self.context(who).wrap_socket(raw, server_hostname="127.0.0.1")

    def client(self, who: str = SCHOOL_A) -> httpx.Client:
        return httpx.Client(
            base_url=f"https://127.0.0.1:{self.port}", verify=self.context(who), timeout=5
        )

    def ops(self, path: str) -> httpx.Response:
        return httpx.get(f"http://127.0.0.1:{self.ops_port}{path}", timeout=5)

    def cli(self, *args: str) -> str:
        """A `traffic-center` command on this node's home; its output."""
        done = subprocess.run(
            [sys.executable, "-m", "traffic_center", "--home", str(self.home), *args],
            env=child_env(),
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        return done.stdout

    def issue(self, who: str, *, register: bool) -> str:
        """Another certificate for school A's endpoint, as ``home/dev/<who>``; its serial.

        ``register``: recorded in the inventory (as `ca issue` does); otherwise signed by the CA
        and never recorded: an unknown certificate that still passes the TLS handshake.
        """
        school_a = x509.load_pem_x509_certificate(
            (self.home / "dev" / f"{SCHOOL_A}.pem").read_bytes()
        )
        routeringskenmerk = routeringskenmerk_of(school_a)
        assert routeringskenmerk is not None
        ou = school_a.subject.get_attributes_for_oid(x509.NameOID.ORGANIZATIONAL_UNIT_NAME)
        brin, prefix = str(ou[0].value), self.home / "dev" / who
        if register:
            self.cli(
                *("ca", "issue", "--routeringskenmerk", routeringskenmerk, "--brin", brin),
                *("--name", "School A", "--out", str(prefix)),
            )
            certificate = x509.load_pem_x509_certificate(prefix.with_suffix(".pem").read_bytes())
            return serial_hex(certificate)
        ca = CertificateAuthority.load(self.home / "ca")
        issued = ca.issue_client_certificate(
            routeringskenmerk=routeringskenmerk, brin=brin, name="School A"
        )
        write_issued(issued, prefix)
        return serial_hex(issued.certificate)

    def stop(self) -> None:
        """SIGKILL the node and everything it started (`serve --dev` runs reference LAS
        processes, and --workers worker processes): killed alone, they would outlive it."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()


def start_node(tmp: Path, settings: dict[str, str], *, open_files: int | None = None) -> Node:
    """`serve --dev` with these TC_* settings (and, if given, a lower open-file limit);
    returns once school A's whoami answers."""
    home, port, ops_port, log = tmp / "home", free_port(), free_port(), tmp / "serve.log"

    def limit_files() -> None:
        if open_files is not None:
            resource.setrlimit(resource.RLIMIT_NOFILE, (open_files, open_files))

    process = subprocess.Popen(
        [
            *(sys.executable, "-m", "traffic_center", "--home", str(home), "serve", "--dev"),
            *("--port", str(port), "--ops-port", str(ops_port)),
        ],
        env={**child_env(), **settings},
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
        preexec_fn=limit_files,  # only setrlimit, before exec
        start_new_session=True,  # its own process group, so stop() takes its children too
    )
    node = Node(home, port, ops_port, log, process)
    deadline = time.monotonic() + 60
    while True:
        try:
            with node.client() as client:
                if client.get("/v1/whoami").status_code == 200:
                    return node
        except (httpx.TransportError, OSError):
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            node.stop()
            raise RuntimeError(log.read_text())
        time.sleep(0.3)
