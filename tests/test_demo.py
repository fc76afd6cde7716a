"""`traffic-center demo`, as the README runs it: a real transfer, a late one and the SWV flow,
then nothing."""

from __future__ import annotations

import re
import subprocess
import sys
import time
from pathlib import Path

import psutil

from tests.support.processes import clean_env


def test_the_demo_delivers_both_transfers_and_leaves_nothing_behind(tmp_path: Path) -> None:
    env = {**clean_env(), "TMPDIR": str(tmp_path)}
    started = time.monotonic()
    demo = subprocess.run(
        [sys.executable, "-m", "traffic_center", "demo"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    elapsed = time.monotonic() - started
    assert demo.returncode == 0, demo.stdout + demo.stderr
    timeline = demo.stdout
    assert timeline.count("documentRequest    OverdrachtGeslaagd") == 3
    assert "DossierNogNietGereed" in timeline
    assert "NotificatieOntvangen" in timeline
    assert timeline.count("= what the doel received") == 3
    # The SWV flow: a koppelsleutel to the SWV, its dossier, and its feedback to the school.
    assert re.search(r"school → TC → SWV .* \(koppelsleutel [0-9A-F]{8}…\)", timeline)
    assert re.search(r"SWV → TC → school\s+terugkoppeling\s+TerugkoppelingOntvangen", timeline)
    # bytes and SHA-256 of what arrived
    assert re.search(r"OverdrachtGeslaagd\s+[\d,]+ B .* sha256 [0-9a-f]{16}", timeline)
    assert (
        "traffic-center exited 0, las-school-a exited 0, las-school-b exited 0, las-swv-c exited 0"
        in timeline
    )
    assert "demo complete" in timeline
    assert elapsed < 60
    # Nothing left running, nothing left in the temporary directory.
    leftovers = [
        p.info["cmdline"]
        for p in psutil.process_iter(["cmdline"])
        if p.info["cmdline"] and str(tmp_path) in " ".join(p.info["cmdline"])
    ]
    assert leftovers == []
    assert list(tmp_path.iterdir()) == []
