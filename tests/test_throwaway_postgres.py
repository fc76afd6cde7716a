"""The test suite's throwaway PostgreSQL does not outlive a test run killed outright."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# A stand-in for a test run: starts a cluster, says where, then waits to be killed.
OWNER = """
import json, sys, time
from tests.support.postgres import ThrowawayPostgres
cluster = ThrowawayPostgres()
cluster.init()
cluster.start()
print(json.dumps({"port": cluster.port, "workdir": str(cluster.workdir)}), flush=True)
time.sleep(600)
"""


def test_a_killed_owner_leaves_no_cluster_behind() -> None:
    owner = subprocess.Popen(
        [sys.executable, "-c", OWNER],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert owner.stdout is not None
        where = json.loads(owner.stdout.readline())
        assert _accepts(where["port"]), "the cluster should be up while its owner lives"
    finally:
        owner.send_signal(signal.SIGKILL)  # no clean-up code of the owner runs
        owner.wait()
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and (
        _accepts(where["port"]) or Path(where["workdir"]).exists()
    ):
        time.sleep(0.2)
    assert not _accepts(where["port"]), "the postmaster outlived its owner"
    assert not Path(where["workdir"]).exists(), "the cluster's directory outlived its owner"


def _accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False
