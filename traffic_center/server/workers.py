"""Several uvicorn worker processes on one socket, the ops listener in the supervisor."""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import tempfile
import threading

from fastapi import FastAPI
from prometheus_client.multiprocess import mark_process_dead
from pydantic import SecretStr
from uvicorn import Config
from uvicorn.supervisors import Multiprocess

from traffic_center.api.app import create_app
from traffic_center.api.ops import Lifecycle
from traffic_center.observability.logging import configure_logging
from traffic_center.server.runner import TrafficCenterServer, vendor_config
from traffic_center.settings import Settings

APP_FACTORY = "traffic_center.server.workers:app_from_env"


def app_from_env() -> FastAPI:
    """Each worker process builds its own app from the TC_* environment the supervisor set."""
    settings = Settings()
    configure_logging(settings.log_level)
    return create_app(settings)


def settings_as_env(settings: Settings) -> dict[str, str]:
    env: dict[str, str] = {}
    for name in type(settings).model_fields:
        value = getattr(settings, name)
        if value is None:
            continue
        if isinstance(value, SecretStr):
            value = value.get_secret_value()
        if isinstance(value, bool):
            value = "true" if value else "false"
        env[f"TC_{name.upper()}"] = str(value)
    return env


class _DrainingSupervisor(Multiprocess):
    """uvicorn's supervisor, turning the ops listener's /readyz to 503 as the drain begins.

    The workers then drain on their own (uvicorn sends them SIGTERM; each finishes its
    requests in flight within TC_DRAIN_SECONDS). A worker that exited (died and was
    replaced, or stopped at shutdown) is marked dead for prometheus_client's multiprocess
    mode, so its live gauges (relays in flight, the audit outbox) leave the sums.
    """

    def __init__(
        self, config: Config, *, sockets: list[socket.socket], lifecycle: Lifecycle
    ) -> None:
        super().__init__(config, sockets=sockets)
        self._lifecycle = lifecycle
        self._live_pids: set[int] = set()
        lifecycle.worker_pids = self.worker_pids

    def worker_pids(self) -> list[int]:
        return [pid for process in list(self.processes) if (pid := process.pid) is not None]

    def keep_subprocess_alive(self) -> None:
        super().keep_subprocess_alive()
        self._mark_exited_workers_dead()

    def join_all(self) -> None:
        super().join_all()
        self._mark_exited_workers_dead()

    def _mark_exited_workers_dead(self) -> None:
        live = {p.pid for p in list(self.processes) if p.pid is not None and p.process.is_alive()}
        for pid in self._live_pids - live:
            mark_process_dead(pid)  # type: ignore[no-untyped-call]
        self._live_pids = live

    def handle_term(self) -> None:
        self._lifecycle.draining = True
        super().handle_term()

    def handle_int(self) -> None:
        self._lifecycle.draining = True
        super().handle_int()


def run_workers(settings: Settings) -> None:
    """The supervisor binds the socket, forks N workers, and serves /metrics for all of them."""
    # The secret was made (or checked) once by `serve` before this, so workers find it.
    metrics_dir = tempfile.mkdtemp(prefix="traffic-center-metrics-")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir
    os.environ.update(settings_as_env(settings))
    os.environ["TC_RUN_MIGRATIONS"] = "false"  # the supervisor migrated already
    config = vendor_config(settings, APP_FACTORY, factory=True, workers=settings.workers)
    # Listening before /readyz can say ready: connections queue until a worker accepts them
    # (uvicorn only binds here; its workers would start listening a second later).
    listener = config.bind_socket()
    listener.listen(config.backlog)
    ops = TrafficCenterServer(settings, serve_vendor_api=False)
    ops_thread = threading.Thread(target=lambda: asyncio.run(ops.serve()), daemon=True)
    ops_thread.start()
    try:
        _DrainingSupervisor(config, sockets=[listener], lifecycle=ops.lifecycle).run()
    finally:
        ops.request_exit()
        ops_thread.join(timeout=10)
        shutil.rmtree(metrics_dir, ignore_errors=True)
