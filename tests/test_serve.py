"""`traffic-center serve --dev` as a real process: curl as the README shows, workers, SIGTERM."""

from __future__ import annotations

import json
import signal
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.support.processes import clean_env, free_port
from traffic_center.domain.identifiers import derive_zoeksleutel
from traffic_center.las.pupils import TEST_SCHEME_KEY, pupil_with

SCHOOL_A = "00000007000012000001"


@pytest.fixture
def dev_server(tmp_path: Path) -> Iterator[tuple[Path, int, int, subprocess.Popen[bytes]]]:
    home, port, ops_port = tmp_path / "home", free_port(), free_port()
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "traffic_center",
            "--home",
            str(home),
            "serve",
            "--dev",
            "--port",
            str(port),
            "--ops-port",
            str(ops_port),
            "--workers",
            "2",
        ],
        env=clean_env(),
        stdout=open(tmp_path / "serve.out", "wb"),  # noqa: SIM115
        stderr=open(tmp_path / "serve.log", "wb"),  # noqa: SIM115
    )
    deadline = time.monotonic() + 60
    while True:
        try:
            # The supervisor is ready first; then the workers must accept too.
            ready = httpx.get(f"http://127.0.0.1:{ops_port}/readyz", timeout=1).status_code == 200
            if ready and _curl(home, port).returncode == 0:
                break
        except httpx.TransportError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError((tmp_path / "serve.log").read_text())
        time.sleep(0.3)
    yield home, port, ops_port, process
    if process.poll() is None:
        process.kill()
        process.wait()


def _curl(home: Path, port: int, *extra: str) -> subprocess.CompletedProcess[str]:
    # Exactly the README's line, plus -sS and the status code.
    return subprocess.run(
        [
            "curl",
            "-sS",
            "-w",
            "\n%{http_code}",
            "--cacert",
            f"{home}/ca/ca.pem",
            "--cert",
            f"{home}/dev/school-a.pem",
            "--key",
            f"{home}/dev/school-a.key",
            *extra,
            f"https://127.0.0.1:{port}/v1/whoami",
        ],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def _dev_transfer(home: Path, port: int, bron_brin: str) -> bytes:
    """As the dev VO school: a session at ``bron_brin`` for test pupil "gereed", then the
    dossier through the relay."""
    context = ssl.create_default_context(cafile=str(home / "ca" / "ca.pem"))
    context.load_cert_chain(str(home / "dev" / "school-b.pem"), str(home / "dev" / "school-b.key"))
    key = derive_zoeksleutel(TEST_SCHEME_KEY, pupil_with("gereed"))
    with httpx.Client(base_url=f"https://127.0.0.1:{port}", verify=context, timeout=30) as client:
        granted = client.post(
            "/v1/sessions",
            json={"bron_brin": bron_brin, "overdrachtsoort": "overstapdossier", "zoeksleutel": key},
        )
        assert granted.status_code == 201, granted.text
        [endpoint] = granted.json()["bron_endpoints"]
        fetched = client.post(
            f"/v1/sessions/{granted.json()['sessie_id']}/dossier",
            json={"routeringskenmerk": endpoint["routeringskenmerk"], "zoeksleutel": key},
        )
    assert fetched.status_code == 200, fetched.text
    return fetched.content


def test_dev_server_curl_workers_revocation_and_sigterm(
    dev_server: tuple[Path, int, int, subprocess.Popen[bytes]],
) -> None:
    home, port, ops_port, process = dev_server
    ok = _curl(home, port)
    body, status = ok.stdout.rsplit("\n", 1)
    assert status == "200"
    assert json.loads(body)["routeringskenmerk"] == SCHOOL_A

    old_tls = _curl(home, port, "--tls-max", "1.1")
    assert old_tls.returncode != 0

    # The dev world relays at once: its endpoints are live reference LAS processes.
    for bron_brin in ("12AB", "00YY"):
        assert _dev_transfer(home, port, bron_brin).startswith(b"<?xml")

    listing = subprocess.run(
        [sys.executable, "-m", "traffic_center", "--home", str(home), "ca", "list", "--json"],
        capture_output=True,
        text=True,
        env=clean_env(),
        check=True,
    )
    serial = next(
        c["serial"] for c in json.loads(listing.stdout) if c["routeringskenmerk"] == SCHOOL_A
    )
    subprocess.run(
        [sys.executable, "-m", "traffic_center", "--home", str(home), "ca", "revoke", serial],
        capture_output=True,
        env=clean_env(),
        check=True,
    )
    revoked_at = time.monotonic()
    time.sleep(4.5)
    # Fresh connections land on either worker: every one must be refused by now.
    statuses = {_curl(home, port).stdout.rsplit("\n", 1)[1] for _ in range(12)}
    assert time.monotonic() - revoked_at < 8
    assert statuses == {"403"}

    metrics = httpx.get(f"http://127.0.0.1:{ops_port}/metrics", timeout=5).text
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(metrics)
        for s in family.samples
    }
    refused = [
        v
        for (name, labels), v in samples.items()
        if name == "traffic_center_refused_callers_total"
        and ("reason", "CertificaatIngetrokken") in labels
    ]
    assert sum(refused) >= 12  # counted across both workers

    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=45) == 0

    # Not a terminal: every line, start-up and shutdown included, is a JSON log event.
    lines = [
        json.loads(line)
        for name in ("serve.out", "serve.log")
        for line in (home.parent / name).read_text().splitlines()
    ]
    [starting] = [line for line in lines if line["event"] == "starting"]
    assert (starting["api"], starting["workers"]) == (f"https://127.0.0.1:{port}", 2)
    assert any(line["event"] == "dev_try" for line in lines)


def test_dev_on_port_0_tells_its_schools_and_its_user_the_port_it_listens_on(
    tmp_path: Path,
) -> None:
    """With ``--port 0`` the dev schools' LAS were told, and the curl line printed, port 0:
    the line could not work, nor could test school 00YY's session check at the node."""
    home, ops_port = tmp_path / "home", free_port()
    command = [sys.executable, "-m", "traffic_center", "--home", str(home), "serve", "--dev"]
    log_path = tmp_path / "serve.log"
    with open(log_path, "wb") as log_file:
        process = subprocess.Popen(
            [*command, "--port", "0", "--ops-port", str(ops_port)],
            env=clean_env(),
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 60
        while not _ready(ops_port):
            assert process.poll() is None, log_path.read_text()
            assert time.monotonic() < deadline, log_path.read_text()
            time.sleep(0.3)
        lines = [json.loads(line) for line in log_path.read_text().splitlines()]
        [starting] = [line for line in lines if line["event"] == "starting"]
        port = int(starting["api"].rsplit(":", 1)[1])
        assert port != 0
        [dev_try] = [line for line in lines if line["event"] == "dev_try"]
        assert f"https://127.0.0.1:{port}/v1/whoami" in dev_try["command"]
        assert _curl(home, port).stdout.endswith("\n200")
        # 00YY's reference LAS checks the session at the node before it answers.
        assert _dev_transfer(home, port, "00YY").startswith(b"<?xml")
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=45) == 0


def _ready(ops_port: int) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{ops_port}/readyz", timeout=1).status_code == 200
    except httpx.TransportError:
        return False
