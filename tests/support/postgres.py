"""A throwaway PostgreSQL server from the machine's binaries, run as an unprivileged user."""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shlex
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tests.support.processes import free_port

POSTGRES_URL_ENV = "TC_TEST_POSTGRES_URL"  # set it to use a server you run yourself


@dataclass(frozen=True)
class PostgresServer:
    host: str
    port: int
    user: str
    # Where its Unix socket is (a throwaway cluster's; None for a server given by URL).
    socket_directory: Path | None = None

    def url(self, database: str) -> str:
        return f"postgresql+asyncpg://{self.user}@{self.host}:{self.port}/{database}"

    def socket_url(self, database: str) -> str:
        """The same server over its Unix socket, as an operator names a local PostgreSQL."""
        if self.socket_directory is None:
            raise RuntimeError(f"no Unix socket known for the server at {self.host}:{self.port}")
        return (
            f"postgresql+asyncpg://{self.user}@/{database}"
            f"?host={self.socket_directory}&port={self.port}"
        )


def find_bindir() -> Path:
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True)
    for candidate in candidates:
        if (Path(candidate) / "initdb").exists():
            return Path(candidate)
    initdb = shutil.which("initdb")
    if initdb:
        return Path(initdb).resolve().parent
    raise RuntimeError(
        "PostgreSQL server binaries not found; install Debian's `postgresql` package "
        "(scripts/test does this)"
    )


def _run_as(user: str | None, command: list[str]) -> list[str]:
    # PostgreSQL refuses to run as root; CI runs as root, so drop to the package's user.
    return ["runuser", "-u", user, "--", *command] if user else command


class ThrowawayPostgres:
    """A PostgreSQL cluster in a temporary directory, on a free loopback port."""

    def __init__(self) -> None:
        self.bindir = find_bindir()
        self.as_user = "postgres" if os.geteuid() == 0 else None
        self.workdir = Path(tempfile.mkdtemp(prefix="tc-postgres-"))
        self.data, self.sockets = self.workdir / "data", self.workdir / "sock"
        self.port = free_port()
        self._reaper: subprocess.Popen[bytes] | None = None

    @property
    def server(self) -> PostgresServer:
        return PostgresServer("127.0.0.1", self.port, "tc", self.sockets)

    def init(self) -> None:
        self.sockets.mkdir()
        if self.as_user:
            entry = pwd.getpwnam(self.as_user)
            for path in (self.workdir, self.sockets):
                os.chown(path, entry.pw_uid, entry.pw_gid)
        initdb = [str(self.bindir / "initdb"), "-D", str(self.data), "-U", "tc", "-A", "trust"]
        self._run([*initdb, "-E", "UTF8", "--no-sync"])
        self._reaper = self._reap_when_owner_dies()

    def start(self) -> None:
        options = (
            f"-p {self.port} -k {self.sockets} -c listen_addresses=127.0.0.1 -c fsync=off "
            "-c synchronous_commit=off -c full_page_writes=off -c max_connections=300"
        )
        log = str(self.workdir / "log")
        self._run(
            [
                str(self.bindir / "pg_ctl"),
                "-D",
                str(self.data),
                "-l",
                log,
                "-o",
                options,
                "-w",
                "start",
            ]
        )
        _wait_ready(self.port)

    def stop(self, mode: str = "immediate") -> None:
        self._run(
            [str(self.bindir / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "stop"],
            check=False,
        )

    def remove(self) -> None:
        if self._reaper is not None:
            self._reaper.kill()
            self._reaper.wait()
        shutil.rmtree(self.workdir, ignore_errors=True)

    def _reap_when_owner_dies(self) -> subprocess.Popen[bytes]:
        """A watcher that stops and removes the cluster once this process is gone.

        A test run killed with SIGKILL (a timeout, a helper's ^C twice) never reaches
        ``stop()``: its postmaster kept running, port and memory taken, until someone noticed.
        The watcher is in a session of its own, so a signal to the run's process group does not
        take it along; ``remove()`` kills it when the owner cleans up by itself.
        """
        stop = shlex.join(
            _run_as(
                self.as_user,
                [str(self.bindir / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "stop"],
            )
        )
        script = (
            f"while kill -0 {os.getpid()} 2>/dev/null; do sleep 1; done; "
            f"{stop} >/dev/null 2>&1; rm -rf {shlex.quote(str(self.workdir))}"
        )
        return subprocess.Popen(
            ["sh", "-c", script],
            start_new_session=True,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def _run(self, command: list[str], *, check: bool = True) -> None:
        subprocess.run(_run_as(self.as_user, command), check=check, capture_output=True)


@contextlib.contextmanager
def throwaway_postgres() -> Iterator[PostgresServer]:
    cluster = ThrowawayPostgres()
    try:
        cluster.init()
        cluster.start()
        yield cluster.server
    finally:
        cluster.stop()
        cluster.remove()


def _wait_ready(port: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1):
            return
        time.sleep(0.1)
    raise RuntimeError(f"PostgreSQL did not start on port {port}")
