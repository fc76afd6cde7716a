"""The benchmarks still run: each new bench's smallest run prints its table and exits 0.

Speed is not asserted here (bench/ measures it); only that a bench measures what it says,
so a change to the Traffic Center cannot leave bench/ broken until someone needs a figure.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.postgres import PostgresServer
from tests.support.processes import clean_env

BENCH = Path(__file__).resolve().parent.parent / "bench"
RATIO = r"\d+\.\d\d×"
CPU_MS_PER_MB = r"(\d+\.\d)"


def run_bench(script: str, *args: str, env: dict[str, str] | None = None) -> str:
    done = subprocess.run(
        [sys.executable, str(BENCH / script), *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**clean_env(), **(env or {})},
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def test_nginx_compare_prints_both_tables_with_ratios() -> None:
    out = run_bench(
        "nginx_compare.py", "--rounds", "2", "--cases", "170kB", "--levels", "1,2", "--batch", "2"
    )
    assert "| dossier | timed | n | nginx p50 |" in out
    tc_cpu_figures = []
    for timed in ("whole", "request"):
        ratios = rf"\| {RATIO} \| {RATIO} \| {CPU_MS_PER_MB} \| {CPU_MS_PER_MB} \|$"
        found = re.search(rf"^\| 170kB \| {timed} \| 2 \| .* {ratios}", out, re.MULTILINE)
        assert found, out
        tc_cpu_figures.append(found.group(2))
    assert "| concurrent 1 MB |" in out
    for level in (1, 2):
        ratio = rf"\| {RATIO} \| {CPU_MS_PER_MB} \| {CPU_MS_PER_MB} \|$"
        found = re.search(rf"^\| {level} \| \d+ \| \d+ \| \d+ {ratio}", out, re.MULTILINE)
        assert found, out
        tc_cpu_figures.append(found.group(2))
    # The TC's CPU per MB was read from its process: a relayed MB costs it some. (nginx's
    # few milliseconds for two fetches may fall under one clock tick: not asserted.)
    assert all(float(figure) > 0 for figure in tc_cpu_figures), out


@pytest.mark.parametrize("client", ["raw", "httpx"])
def test_session_bench_prints_sessions_per_second(client: str) -> None:
    out = run_bench(
        "session_bench.py", "--seconds", "0.5", "--backends", "sqlite", "--workers", "1",
        "--clients", "1,2", "--client", client,
    )  # fmt: skip
    assert f"{client} client" in out
    assert "| store | workers | clients | sessions | sessions/s |" in out
    rows = re.findall(r"^\| sqlite \| 1 \| (\d+) \| (\d+) \| (\d+) \|", out, re.MULTILINE)
    assert [clients for clients, _, _ in rows] == ["1", "2"], out
    assert all(int(sessions) > 0 for _, sessions, _ in rows), out


def test_session_bench_on_postgresql_prints_what_the_server_saw(postgres: PostgresServer) -> None:
    out = run_bench(
        "session_bench.py", "--seconds", "2.5", "--backends", "postgres", "--workers", "1",
        "--clients", "2",
        env={"TC_BENCH_POSTGRES_URL": postgres.url("postgres")},
    )  # fmt: skip
    found = re.search(r"^\| postgres \| 1 \| 2 \| (\d+) \|", out, re.MULTILINE)
    assert found, out
    assert int(found.group(1)) > 0, out
    # The server side's line: read from the server's statistics and its backends' CPU.
    server = re.search(
        r"^#   postgres: (\d+\.\d) transactions per session, (\d+\.\d\d) ms backend CPU",
        out,
        re.MULTILINE,
    )
    assert server, out
    assert float(server.group(1)) > 0, out
    assert float(server.group(2)) > 0, out


def test_gauges_bench_reads_what_its_baselines_read(postgres: PostgresServer) -> None:
    out = run_bench(
        "gauges_bench.py", "--quick", "--backends", "sqlite,postgres",
        env={"TC_BENCH_POSTGRES_URL": postgres.url("postgres")},
    )  # fmt: skip
    for backend in ("sqlite", "postgres"):
        timed = re.findall(rf"^\| {backend} \| [^|]+ \| (\d+\.\d) \| (\d+\.\d) \|$", out, re.M)
        assert len(timed) == 6, out
        # A tenth of the 10,000 sessions is open: the gauge counts what the loop counts.
        assert f"# {backend}: open sessions 1000 (counted on the loop: 1000)" in out, out
        assert f"# {backend}: the soonest expiry in 1 days" in out, out
