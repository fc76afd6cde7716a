"""Helpers for tests that run real processes: free loopback ports, a clean environment."""

from __future__ import annotations

from traffic_center.demo.processes import child_env, free_port

__all__ = ["clean_env", "free_port"]


def clean_env() -> dict[str, str]:
    """This environment without TC_* settings or a metrics directory that would leak in."""
    return child_env()
