"""Child processes of the demo and the benchmarks: started, watched, always stopped."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

STOP_SECONDS = 15.0


class ChildProcess:
    """A ``python -m traffic_center …`` process; its output goes to a log file, line by line.

    JSON lines on stdout are also kept as events, so a caller can wait for "listening" or
    "notification received" without parsing logs after the fact.
    """

    def __init__(self, name: str, args: Sequence[str], *, log_dir: Path, env: dict[str, str]):
        self.name = name
        self.log_path = log_dir / f"{name}.log"
        self.events: list[dict[str, Any]] = []
        self._changed = threading.Condition()
        self._log = self.log_path.open("a", encoding="utf-8")
        self.process = subprocess.Popen(  # noqa: S603 - our own interpreter and module
            [sys.executable, "-m", "traffic_center", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env=env,
            text=True,
            bufsize=1,
        )
        self._reader = threading.Thread(target=self._read, name=f"{name}-output", daemon=True)
        self._reader.start()

    @property
    def pid(self) -> int:
        return self.process.pid

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self._log.write(line)
            self._log.flush()
            event = _json_object(line)
            with self._changed:
                if event is not None:
                    self.events.append(event)
                self._changed.notify_all()
        with self._changed:
            self._changed.notify_all()

    def wait_for_event(
        self, matches: Callable[[dict[str, Any]], bool], *, timeout: float
    ) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                for event in self.events:
                    if matches(event):
                        return event
                if self.process.poll() is not None:
                    raise RuntimeError(
                        f"{self.name} exited ({self.process.returncode}); {self.tail()}"
                    )
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(f"{self.name}: no such event in {timeout} s; {self.tail()}")
                self._changed.wait(min(remaining, 0.5))

    def tail(self, lines: int = 15) -> str:
        try:
            text = self.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""
        return "log tail:\n" + "\n".join(text.splitlines()[-lines:])

    def stop(self) -> int:
        """SIGTERM, then SIGKILL if it does not go within STOP_SECONDS; returns the exit code."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(STOP_SECONDS)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._reader.join(timeout=5)
        self._log.close()
        return self.process.returncode


def child_env(**settings: str) -> dict[str, str]:
    """The environment without TC_* variables of the caller, plus the given ones."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TC_", "PROMETHEUS_"))}
    env.update(settings)
    env["PYTHONUNBUFFERED"] = "1"
    return env


def _json_object(line: str) -> dict[str, Any] | None:
    line = line.strip()
    if not line.startswith("{"):
        return None
    try:
        parsed = json.loads(line)
    except ValueError:
        return None
    return parsed if isinstance(parsed, dict) else None


def free_port() -> int:
    """A loopback port nobody listens on right now (for a child that cannot report its own)."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
