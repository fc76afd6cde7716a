"""How long a certificate admin waits for the CLI: `--help`, `ca list`, and `school list`
(which still takes the ordinary path: settings, the async store) for comparison.

Each command runs alternately with a bare interpreter (`python -c pass`) as the baseline, so
a busy machine shows in both. Reports the median and the worst wall time and the median CPU
time (user + system) of the child, in seconds.

    .venv/bin/python bench/cli_startup.py            # 15 runs each
    .venv/bin/python bench/cli_startup.py --runs 5
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

COMMANDS = {
    "python -c pass": [sys.executable, "-c", "pass"],
    "traffic-center --help": [sys.executable, "-m", "traffic_center", "--help"],
    "traffic-center ca list": [sys.executable, "-m", "traffic_center", "ca", "list"],
    "traffic-center school list": [sys.executable, "-m", "traffic_center", "school", "list"],
}


def prepare(home: Path, env: dict[str, str]) -> None:
    """A CA and three issued certificates, as an admin's store holds them."""

    def cli(*args: str) -> None:
        subprocess.run(
            [sys.executable, "-m", "traffic_center", *args],
            env=env,
            check=True,
            capture_output=True,
        )

    cli("ca", "init")
    cli("school", "add", "--brin", "12AB", "--name", "School", "--sector", "PO")
    for n in range(3):
        out = str(home / f"school-{n}")
        routeringskenmerk = f"000000070000{n:02d}000001"
        cli("endpoint", "add", "--routeringskenmerk", routeringskenmerk, "--brin", "12AB",
            "--url", f"https://las-{n}.example/oso")  # fmt: skip
        cli("ca", "issue", "--routeringskenmerk", routeringskenmerk, "--brin", "12AB",
            "--name", f"School {n}", "--out", out)  # fmt: skip


def timed(command: list[str], env: dict[str, str]) -> tuple[float, float]:
    """Wall and CPU (user + system) seconds of one run."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    subprocess.run(command, env=env, check=True, stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15)
    runs = parser.parse_args().runs
    with tempfile.TemporaryDirectory(prefix="tc-cli-bench-") as directory:
        home = Path(directory)
        env = {k: v for k, v in os.environ.items() if not k.startswith("TC_")}
        env["TC_HOME"] = str(home)
        prepare(home, env)
        samples: dict[str, list[tuple[float, float]]] = {name: [] for name in COMMANDS}
        for _ in range(runs):
            for name, command in COMMANDS.items():
                samples[name].append(timed(command, env))
    print(f"{'command':<28} {'wall p50':>9} {'wall max':>9} {'cpu p50':>8}   ({runs} runs)")
    for name, found in samples.items():
        walls, cpus = [w for w, _ in found], [c for _, c in found]
        print(
            f"{name:<28} {statistics.median(walls):>9.3f} {max(walls):>9.3f}"
            f" {statistics.median(cpus):>8.3f}"
        )
    print(f"load average: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
