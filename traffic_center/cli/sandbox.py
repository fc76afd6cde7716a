"""`traffic-center sandbox`: the qualification sandbox, running until SIGINT or SIGTERM."""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from traffic_center.domain.errors import InvalidInput
from traffic_center.qualify.sandbox import QualifySandbox, describe


async def sandbox_command(args: argparse.Namespace) -> int:
    async with running_sandbox(args.sandbox_home, port=args.port) as sandbox:
        # One JSON line on stdout for scripts, the same as a block for people on stderr.
        print(json.dumps({"event": "sandbox_ready", **sandbox.description()}), flush=True)
        sys.stderr.write(describe(sandbox) + "Ctrl-C stops the sandbox.\n")
        await _until_signalled()
    print(json.dumps({"event": "sandbox_stopped"}), flush=True)
    return 0


@asynccontextmanager
async def running_sandbox(
    home: Path | None, *, port: int | None, limit_sessions: bool = False
) -> AsyncIterator[QualifySandbox]:
    """A started sandbox in ``home`` (kept) or in a temporary directory (removed after)."""
    with tempfile.TemporaryDirectory(prefix="tc-sandbox-") as scratch:
        sandbox = QualifySandbox(
            _new_root(home, Path(scratch)), port=port, limit_sessions=limit_sessions
        )
        await sandbox.start()
        try:
            yield sandbox
        finally:
            await sandbox.stop()


async def _until_signalled() -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    try:
        await stop.wait()
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)


def _new_root(home: Path | None, scratch: Path) -> Path:
    """Certificates are made fresh: a directory that already holds something is refused."""
    if home is None:
        return scratch
    if home.exists() and any(home.iterdir()):
        raise InvalidInput(f"{home} is not empty: give a new directory")
    return home
