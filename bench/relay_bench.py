"""Relay vs direct: the same dossiers from the same reference LAS, in the same run.

    .venv/bin/python bench/relay_bench.py [--quick]

Starts a sandbox (a Traffic Center process and two reference LAS processes on loopback, all
over mTLS), then for a 170 kB and a 50 MB dossier fetches each one

- direct: this process calls the bron LAS itself, with the relay's certificate; and
- relayed: this process is the doel and fetches through the Traffic Center,

interleaving the two so a noisy neighbour hurts both alike. It prints latency p50/p99,
throughput, and the Traffic Center process's idle and peak RSS (sampled every 10 ms).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import statistics
import sys
import time
from pathlib import Path

import httpx
import psutil
from _common import KB, MB, Case, Samples, fetch_direct, running_sandbox

from traffic_center.demo.memory import RssSampler
from traffic_center.demo.sandbox import BRON, Sandbox
from traffic_center.las.doel import ClientTLS, DoelClient


async def run(cases: list[Case]) -> list[dict[str, object]]:
    pupils = {case.pgn: f"grootte-{case.size}" for case in cases}
    results: list[dict[str, object]] = []
    async with running_sandbox("traffic-center-bench-", pupils=pupils) as sandbox:
        assert sandbox.tc is not None
        tc_home = sandbox.root / "tc"
        relay_tls = ClientTLS(tc_home / "relay.pem", tc_home / "relay.key", sandbox.ca_pem)
        bron_url = sandbox.las[BRON.key].url
        async with (
            httpx.AsyncClient(verify=relay_tls.ssl_context(), timeout=120) as direct,
            sandbox.doel_client() as doel,
        ):
            for case in cases:
                results.append(await _measure(case, sandbox, direct, doel, bron_url))
    return results


async def _measure(
    case: Case, sandbox: Sandbox, direct: httpx.AsyncClient, doel: DoelClient, bron_url: str
) -> dict[str, object]:
    assert sandbox.tc is not None
    zoeksleutel = doel.zoeksleutel(case.pgn)  # what the relay sends the bron, for direct calls
    session = await doel.open_session(BRON.brin, case.pgn)
    routeringskenmerk = session.bron_endpoints[0].routeringskenmerk
    # One of each first: warm the connections and check both paths give the same bytes.
    _, direct_sha = await fetch_direct(direct, bron_url, zoeksleutel)
    warm = await doel.fetch_dossier(session.sessie_id, routeringskenmerk, case.pgn)
    if not warm.complete or warm.sha256 != direct_sha:
        raise SystemExit(
            f"{case.label}: relay gave {warm.resultaat} {warm.sha256}, not {direct_sha}"
        )
    sampler = RssSampler(sandbox.tc.pid)
    idle = sampler.rss()
    direct_samples, relay_samples = Samples(), Samples()
    with sampler:
        for _ in range(case.rounds):
            started = time.perf_counter()
            await fetch_direct(direct, bron_url, zoeksleutel)
            direct_samples.seconds.append(time.perf_counter() - started)
            started = time.perf_counter()
            fetched = await doel.fetch_dossier(session.sessie_id, routeringskenmerk, case.pgn)
            relay_samples.seconds.append(time.perf_counter() - started)
            if not (fetched.complete and fetched.sha256 == direct_sha):
                raise SystemExit(f"{case.label}: a relayed fetch differed: {fetched}")
    return {
        "case": case.label,
        "bytes": case.size,
        "rounds": case.rounds,
        "direct_p50_ms": direct_samples.percentile(0.5) * 1000,
        "direct_p99_ms": direct_samples.percentile(0.99) * 1000,
        "relay_p50_ms": relay_samples.percentile(0.5) * 1000,
        "relay_p99_ms": relay_samples.percentile(0.99) * 1000,
        "direct_mb_s": direct_samples.throughput_mb_s(case.size),
        "relay_mb_s": relay_samples.throughput_mb_s(case.size),
        "relay_over_direct_p50": relay_samples.percentile(0.5) / direct_samples.percentile(0.5),
        "tc_idle_rss_mb": idle / MB,
        "tc_peak_rss_mb": sampler.peak / MB,
        "mean_relay_ms": statistics.fmean(relay_samples.seconds) * 1000,
    }


def print_table(results: list[dict[str, object]]) -> None:
    cpu = platform.processor() or platform.machine()
    print(
        f"# relay vs direct, {psutil.cpu_count()} CPUs ({cpu}), Python {platform.python_version()}"
    )
    header = (
        f"{'dossier':>8} {'n':>4} | {'direct p50':>10} {'p99':>8} {'MB/s':>7} | "
        f"{'relay p50':>10} {'p99':>8} {'MB/s':>7} | {'x p50':>5} | {'TC RSS idle→peak':>17}"
    )
    print(header)
    print("-" * len(header))
    for r in results:
        print(
            f"{r['case']:>8} {r['rounds']:>4} | {r['direct_p50_ms']:>8.1f}ms {r['direct_p99_ms']:>6.1f}ms "
            f"{r['direct_mb_s']:>7.1f} | {r['relay_p50_ms']:>8.1f}ms {r['relay_p99_ms']:>6.1f}ms "
            f"{r['relay_mb_s']:>7.1f} | {r['relay_over_direct_p50']:>5.2f} | "
            f"{r['tc_idle_rss_mb']:>6.1f} → {r['tc_peak_rss_mb']:>6.1f} MB"
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer rounds, for a smoke run")
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    args = parser.parse_args()
    cases = [
        Case("170 kB", 170 * KB, 20 if args.quick else 200, pgn="999990056"),
        Case("50 MB", 50 * MB, 3 if args.quick else 20, pgn="999990068"),
    ]
    results = asyncio.run(run(cases))
    print_table(results)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
