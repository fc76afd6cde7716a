"""A throwaway PostgreSQL server from the machine's binaries, run as an unprivileged user."""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
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

    def url(self, database: str) -> str:
        return f"postgresql+asyncpg://{self.user}@{self.host}:{self.port}/{database}"


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


@contextlib.contextmanager
def throwaway_postgres() -> Iterator[PostgresServer]:
    bindir = find_bindir()
    as_user = "postgres" if os.geteuid() == 0 else None
    workdir = Path(tempfile.mkdtemp(prefix="tc-postgres-"))
    data, sockets = workdir / "data", workdir / "sock"
    sockets.mkdir()
    if as_user:
        entry = pwd.getpwnam(as_user)
        for path in (workdir, sockets):
            os.chown(path, entry.pw_uid, entry.pw_gid)
    port = free_port()
    subprocess.run(
        _run_as(
            as_user,
            [
                str(bindir / "initdb"),
                "-D",
                str(data),
                "-U",
                "tc",
                "-A",
                "trust",
                "-E",
                "UTF8",
                "--no-sync",
            ],
        ),
        check=True,
        capture_output=True,
    )
    options = (
        f"-p {port} -k {sockets} -c listen_addresses=127.0.0.1 -c fsync=off "
        "-c synchronous_commit=off -c full_page_writes=off -c max_connections=300"
    )
    subprocess.run(
        _run_as(
            as_user,
            [
                str(bindir / "pg_ctl"),
                "-D",
                str(data),
                "-l",
                str(workdir / "log"),
                "-o",
                options,
                "-w",
                "start",
            ],
        ),
        check=True,
        capture_output=True,
    )
    try:
        _wait_ready(port)
        yield PostgresServer("127.0.0.1", port, "tc")
    finally:
        subprocess.run(
            _run_as(as_user, [str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"]),
            capture_output=True,
            check=False,
        )
        shutil.rmtree(workdir, ignore_errors=True)


def _wait_ready(port: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1):
            return
        time.sleep(0.1)
    raise RuntimeError(f"PostgreSQL did not start on port {port}")
