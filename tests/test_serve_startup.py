"""`traffic-center serve` refuses a start it cannot carry through: one line on stderr and a
non-zero exit before anything listens, with or without --workers; never a traceback, and
never a node that looks ready while it cannot serve."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.processes import clean_env, free_port
from traffic_center.cli.main import main
from traffic_center.settings import unknown_settings

# How long a refused start may take before the test calls it a node that kept running: not
# a speed requirement, the bound on waiting for a process that will never exit by itself.
HANGING_SECONDS = 60


@pytest.fixture(scope="module")
def issued(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A home with a CA, a server certificate and a relay certificate, made once."""
    home = tmp_path_factory.mktemp("issued")
    for command in (
        ["ca", "init"],
        ["ca", "issue-server", "--host", "127.0.0.1", "--out", str(home / "server")],
        ["ca", "issue-relay", "--out", str(home / "relay")],
    ):
        assert main(["--home", str(home), *command]) == 0
    return home


@pytest.fixture
def home(issued: Path, tmp_path: Path) -> Path:
    """A fresh copy of ``issued``: a start may write its database and secret there."""
    copy = tmp_path / "home"
    shutil.copytree(issued, copy)
    return copy


def serve(
    home: Path,
    *args: str,
    env: dict[str, str] | None = None,
    port: int | None = None,
    ops_port: int | None = None,
) -> subprocess.CompletedProcess[str]:
    """`serve` as a real process, stopped (with its workers) if it does not exit by itself."""
    command = [sys.executable, "-m", "traffic_center", "--home", str(home), "serve"]
    command += ["--port", str(port or free_port()), "--ops-port", str(ops_port or free_port())]
    command += args
    process = subprocess.Popen(
        command,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**clean_env(), "TMPDIR": str(temporary_directory(home)), **(env or {})},
        start_new_session=True,  # its own process group: the workers stop with it
    )
    try:
        stdout, stderr = process.communicate(timeout=HANGING_SECONDS)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        stdout, stderr = process.communicate()
        pytest.fail(f"serve kept running instead of refusing to start:\n{stdout}{stderr}")
    return subprocess.CompletedProcess(command, process.returncode, stdout, stderr)


def temporary_directory(home: Path) -> Path:
    """The node's TMPDIR, beside its home, so a test sees what the node leaves there."""
    directory = home.parent / "tmp"
    directory.mkdir(exist_ok=True)
    return directory


def assert_refused_in_one_line(result: subprocess.CompletedProcess[str], *quoted: str) -> None:
    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stderr.count("\n") == 1, result.stderr
    assert result.stderr.startswith("traffic-center: error: "), result.stderr
    for text in quoted:
        assert text in result.stderr
    # Refused before anything listens or any worker starts.
    assert "Uvicorn running" not in result.stdout
    assert "Started server process" not in result.stdout


@pytest.mark.parametrize("workers", ["1", "2"])
def test_a_key_that_is_not_the_certificate_s_stops_the_start(home: Path, workers: str) -> None:
    result = serve(
        home,
        "--workers",
        workers,
        "--tls-cert",
        str(home / "server.pem"),
        "--tls-key",
        str(home / "relay.key"),
    )
    assert_refused_in_one_line(result, "TC_TLS_KEY", str(home / "relay.key"), "not the key of")


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ("TC_TLS_KEY", "holds no PEM private key"),
        ("TC_TLS_CERT", "holds no PEM certificate"),
        ("TC_CLIENT_CA", "holds no PEM certificate"),
        ("TC_UPSTREAM_CA", "holds no PEM certificate"),
    ],
)
def test_a_garbage_tls_file_is_named_in_one_line(
    home: Path, tmp_path: Path, setting: str, message: str
) -> None:
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a PEM file\n")
    env = {setting: str(garbage)}
    if setting in ("TC_TLS_CERT", "TC_TLS_KEY"):  # the two come as a pair
        env = {"TC_TLS_CERT": str(home / "server.pem"), "TC_TLS_KEY": str(home / "server.key")}
        env[setting] = str(garbage)
    assert_refused_in_one_line(serve(home, env=env), setting, str(garbage), message)


def test_a_relay_key_that_is_not_the_relay_certificate_s_stops_the_start(home: Path) -> None:
    result = serve(
        home,
        "--workers",
        "2",
        "--upstream-cert",
        str(home / "relay.pem"),
        "--upstream-key",
        str(home / "server.key"),
    )
    assert_refused_in_one_line(result, "TC_UPSTREAM_KEY", "not the key of")


def test_an_encrypted_key_is_refused_rather_than_asked_for(home: Path, tmp_path: Path) -> None:
    encrypted = tmp_path / "encrypted.key"
    subprocess.run(
        ["openssl", "pkey", "-in", str(home / "server.key"), "-aes256", "-passout", "pass:x"],
        stdout=encrypted.open("wb"),
        check=True,
    )
    result = serve(home, "--tls-cert", str(home / "server.pem"), "--tls-key", str(encrypted))
    assert_refused_in_one_line(result, "TC_TLS_KEY", "encrypted")


@contextlib.contextmanager
def port_in_use() -> Iterator[int]:
    """A loopback port another process listens on, as long as the block runs."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        yield taken.getsockname()[1]


def test_an_ops_port_in_use_stops_a_start_with_workers_as_without(home: Path) -> None:
    """Without --workers the node exits 3 when its ops port is taken; with them it served on
    without /readyz, /healthz or /metrics."""
    with port_in_use() as ops_port:
        result = serve(home, "--workers", "2", ops_port=ops_port)
    assert result.returncode == 3, result.stdout + result.stderr
    assert "address already in use" in result.stdout.lower()
    # No worker began, nor the supervisor's ops app: its port is bound before the app starts.
    assert "Started server process" not in result.stdout, result.stdout


def test_an_ops_port_in_use_stops_a_single_process_before_its_store_opens(home: Path) -> None:
    """Bound as each server started, the taken ops port stopped the start while the vendor
    app was still opening its store in a worker thread: a traceback of the cancelled
    migration check, and now and then a segfault inside SQLite (exit -11). Every port is
    bound before any app starts."""
    with port_in_use() as ops_port:
        results = [serve(home, ops_port=ops_port) for _ in range(3)]
    for result in results:
        assert result.returncode == 3, result.stdout + result.stderr
        assert "address already in use" in result.stdout.lower()
        assert "Traceback" not in result.stdout + result.stderr
        assert "Started server process" not in result.stdout  # no app began


@pytest.mark.parametrize(
    ("url", "quoted"),
    [
        ("postgres://tc@127.0.0.1:1/tc", ["(postgres://)", "postgresql+asyncpg://"]),
        ("notaurl", ["is not a database URL", "postgresql+asyncpg://"]),
        ("postgresql://tc:hunter2@127.0.0.1:1/tc", ["write postgresql+asyncpg://"]),
    ],
)
def test_a_database_url_that_cannot_work_is_one_line(
    home: Path, url: str, quoted: list[str]
) -> None:
    result = serve(home, env={"TC_DATABASE_URL": url})
    assert_refused_in_one_line(result, "TC_DATABASE_URL", *quoted)
    assert "hunter2" not in result.stderr


def test_a_secret_file_that_cannot_be_read_is_one_line(home: Path) -> None:
    # A directory where the file belongs: unreadable as a file, for root too.
    (home / "secret.key").unlink(missing_ok=True)
    (home / "secret.key").mkdir()
    result = serve(home)
    assert_refused_in_one_line(result, str(home / "secret.key"), "TC_SECRET_KEY")


@pytest.mark.parametrize("given_as", ["flags", "env"])
def test_a_relay_certificate_named_but_missing_stops_the_start(
    home: Path, tmp_path: Path, given_as: str
) -> None:
    """Only the default path may be empty (a warning, relays answer 503): a named file that
    is not there is a typo, and the node reported ready while every relay answered 503."""
    cert, key = tmp_path / "typo" / "relay.pem", tmp_path / "typo" / "relay.key"
    if given_as == "flags":
        result = serve(home, "--upstream-cert", str(cert), "--upstream-key", str(key))
    else:
        result = serve(home, env={"TC_UPSTREAM_CERT": str(cert), "TC_UPSTREAM_KEY": str(key)})
    assert_refused_in_one_line(result, "TC_UPSTREAM_CERT", str(cert), "No such file")


def test_a_vendor_port_in_use_leaves_no_metrics_directory_behind(home: Path) -> None:
    """With --workers the supervisor made its multiprocess metrics directory, then exited
    (exit 3) on the bind before the code that removes it."""
    with port_in_use() as port:
        result = serve(home, "--workers", "2", port=port)
    assert result.returncode == 3, result.stdout + result.stderr
    assert "address already in use" in result.stdout.lower()
    assert list(temporary_directory(home).iterdir()) == []


def test_a_misspelt_setting_is_named_in_one_warning_with_what_it_likely_meant(
    tmp_path: Path,
) -> None:
    """Settings ignore a TC_* variable they do not read: TC_DRAIN_SECONDZ=5 left the drain
    at 30 s without a word. The start goes on (here it stops later, for want of a CA)."""
    env = {
        "TC_DRAIN_SECONDZ": "5",
        "TC_NOTHING_LIKE_A_SETTING": "1",
        "TC_BENCH_POSTGRES_URL": "postgresql+asyncpg://bench@127.0.0.1/bench",
    }
    result = serve(tmp_path / "empty-home", env=env)
    warnings = [
        line for line in map(json.loads, result.stdout.splitlines()) if line["level"] == "warning"
    ]
    assert [w["event"] for w in warnings] == ["unknown_settings"], result.stdout
    assert warnings[0]["variables"] == ["TC_DRAIN_SECONDZ", "TC_NOTHING_LIKE_A_SETTING"]
    assert warnings[0]["did_you_mean"] == {"TC_DRAIN_SECONDZ": "TC_DRAIN_SECONDS"}
    assert "ca init" in result.stderr  # the start went on to its next check


def test_only_tc_variables_no_setting_or_tool_reads_are_unknown() -> None:
    environ = {
        "TC_WORKER": "2",
        "TC_WORKERS": "2",
        "TC_TEST_POSTGRES_URL": "x",
        "TC_PROXY_CERTS": "/etc/haproxy/tc",
        "PATH": "/bin",
    }
    assert unknown_settings(environ) == {"TC_WORKER": "TC_WORKERS"}


def test_a_node_warns_at_start_that_its_own_certificate_is_revoked(home: Path) -> None:
    """A node loads its server and relay certificates at start only: one revoked (replaced
    and revoked before the node was given its replacement) was presented all the same,
    without a word, and LAS that check the CRL refuse it."""
    listed = subprocess.run(
        [sys.executable, "-m", "traffic_center", "--home", str(home), "ca", "list", "--json"],
        capture_output=True, text=True, env=clean_env(), check=True,
    )  # fmt: skip
    [relay] = [c for c in json.loads(listed.stdout) if c["role"] == "relay"]
    assert main(["--home", str(home), "ca", "revoke", relay["serial"]]) == 0
    with port_in_use() as port:  # the start stops at the bind, after its checks
        result = serve(home, port=port)
    assert result.returncode == 3, result.stdout + result.stderr
    warnings = [
        line
        for line in map(json.loads, filter(str.strip, result.stdout.splitlines()))
        if line.get("event") == "own_certificate_revoked"
    ]
    assert [(w["certificate"], w["serial"]) for w in warnings] == [("relay", relay["serial"])]
