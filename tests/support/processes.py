"""Helpers for tests that run real processes: free loopback ports, a clean environment."""

from __future__ import annotations

import os
import socket


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def clean_env() -> dict[str, str]:
    """This environment without TC_* settings or a metrics directory that would leak in."""
    return {k: v for k, v in os.environ.items() if not k.startswith(("TC_", "PROMETHEUS_"))}
