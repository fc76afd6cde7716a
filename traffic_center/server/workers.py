"""Several uvicorn worker processes, each on its own listening socket where the kernel can
spread connections over them (SO_REUSEPORT), and the ops listener in the supervisor."""

from __future__ import annotations

import logging
import os
import shutil
import socket
import sys
import tempfile

from fastapi import FastAPI
from prometheus_client.multiprocess import mark_process_dead
from pydantic import SecretStr
from uvicorn import Config
from uvicorn.config import STARTUP_FAILURE
from uvicorn.supervisors import Multiprocess
from uvicorn.supervisors.multiprocess import Process

from traffic_center.api.app import create_app
from traffic_center.api.ops import Lifecycle
from traffic_center.observability.logging import configure_logging
from traffic_center.server.embedded import ServerThread
from traffic_center.server.process import tune_garbage_collector
from traffic_center.server.runner import TrafficCenterServer, vendor_config
from traffic_center.settings import Settings

APP_FACTORY = "traffic_center.server.workers:app_from_env"

uvicorn_log = logging.getLogger("uvicorn.error")  # where uvicorn reports a failed bind


def app_from_env() -> FastAPI:
    """Each worker process builds its own app from the TC_* environment the supervisor set."""
    settings = Settings()
    configure_logging(settings.log_level)
    tune_garbage_collector()  # a spawned interpreter: the supervisor's setting is not inherited
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
    """uvicorn's supervisor, with worker ``i`` on listener ``i``, turning the ops listener's
    /readyz to 503 as the drain begins.

    The workers then drain on their own (uvicorn sends them SIGTERM; each finishes its
    requests in flight within TC_DRAIN_SECONDS). A worker that exited (died and was
    replaced, or stopped at shutdown) is marked dead for prometheus_client's multiprocess
    mode, so its live gauges (relays in flight, the audit outbox) leave the sums.

    uvicorn hands every worker the same socket list. With one listener per worker
    (``listening_sockets``), each worker slot gets its own instead: the methods below that
    make a worker are uvicorn 0.51-0.54's own (the bound in pyproject.toml), with
    ``Process(self.config, self.sockets)`` replaced by ``self._new_process(slot)``;
    tests/test_worker_balance.py checks that no other method of uvicorn's makes one.
    The supervisor keeps its copy of every listener open while it serves, so connections
    the kernel queues on a dead worker's listener are served by its replacement.
    """

    def __init__(
        self, config: Config, *, listeners: list[socket.socket], lifecycle: Lifecycle
    ) -> None:
        super().__init__(config, sockets=listeners)
        self._lifecycle = lifecycle
        self._live_pids: set[int] = set()
        lifecycle.worker_pids = self.worker_pids

    def worker_pids(self) -> list[int]:
        return [pid for process in list(self.processes) if (pid := process.pid) is not None]

    def _new_process(self, slot: int) -> Process:
        """A worker for ``slot``: its own listener, or (one shared listener) that one."""
        return Process(self.config, [self.sockets[slot % len(self.sockets)]])

    def init_processes(self) -> None:
        for slot in range(self.processes_num):
            process = self._new_process(slot)
            process.start()
            self.processes.append(process)

    def keep_subprocess_alive(self) -> None:
        self._keep_workers_alive()
        self._mark_exited_workers_dead()

    def _keep_workers_alive(self) -> None:
        """uvicorn's ``keep_subprocess_alive``, the replacement on the dead worker's listener."""
        if self.should_exit.is_set():
            return
        for idx, process in enumerate(self.processes):
            if process.is_alive(timeout=self.config.timeout_worker_healthcheck):
                continue
            process.kill()  # process is hung, kill it
            process.join()
            if process.exitcode == STARTUP_FAILURE:
                # Broken app, TLS or bind: every replacement would fail the same way.
                uvicorn_log.error(
                    f"Child process [{process.pid}] failed to start, stopping the parent process."
                )
                self.should_exit.set()
                return
            if self.should_exit.is_set():
                return
            # An error, not uvicorn's info: a worker that dies is a crash to look into (the
            # replacement hides it from every probe), and operators page on errors.
            uvicorn_log.error(
                f"Child process [{process.pid}] died (exit code {process.exitcode}); "
                "a new one replaces it"
            )
            process = self._new_process(idx)
            process.start()
            self.processes[idx] = process

    def restart_all(self) -> None:
        """uvicorn's SIGHUP: each replacement on its predecessor's listener, ready before the
        predecessor is retired."""
        for idx, old_process in enumerate(self.processes):
            if self.should_exit.is_set():
                return
            new_process = self._new_process(idx)
            new_process.start()
            ready = new_process.wait_until_ready(
                self.config.timeout_worker_healthcheck, self.should_exit
            )
            if not ready:
                new_process.kill()
                new_process.join()
                if not self.should_exit.is_set():
                    uvicorn_log.error(
                        f"New child process [{new_process.pid}] was not ready in time; "
                        f"keeping worker [{old_process.pid}] and aborting the restart."
                    )
                return
            old_process.terminate()
            old_process.join()
            self.processes[idx] = new_process

    def handle_ttin(self) -> None:
        """One more worker; beyond one per listener it shares a listener with another."""
        uvicorn_log.info("Received SIGTTIN, increasing the number of processes.")
        self.processes_num += 1
        process = self._new_process(len(self.processes))
        process.start()
        self.processes.append(process)

    def handle_ttou(self) -> None:
        """One worker fewer, never leaving a listener without a worker: the kernel would
        keep sending it connections that nobody accepts."""
        if self.processes_num <= len(self.sockets):
            uvicorn_log.info(
                "Received SIGTTOU: every listener needs its worker; restart with fewer --workers."
            )
            return
        super().handle_ttou()

    def join_all(self) -> None:
        super().join_all()
        self._mark_exited_workers_dead()

    def _mark_exited_workers_dead(self) -> None:
        live = {p.pid for p in list(self.processes) if p.pid is not None and p.process.is_alive()}
        for pid in self._live_pids - live:
            mark_process_dead(pid)  # type: ignore[no-untyped-call]
        self._live_pids = live

    def handle_term(self) -> None:
        self._start_drain()
        super().handle_term()

    def handle_int(self) -> None:
        self._start_drain()
        super().handle_int()

    def _start_drain(self) -> None:
        """/readyz says 503, and the supervisor lets go of the listeners: once each worker
        has closed its copy (the first thing it does on the SIGTERM that follows) the port
        refuses new connections at once, instead of queueing them in a listener nobody will
        accept from again until the drain ends."""
        self._lifecycle.draining = True
        for listener in self.sockets:
            listener.close()


def listening_sockets(config: Config, workers: int) -> list[socket.socket]:
    """The vendor listener, listening: one socket per worker on the same address with
    SO_REUSEPORT where the kernel spreads new connections over such sockets (Linux, by a
    hash of the connection's addresses); elsewhere uvicorn's one socket, shared.

    With one shared socket the worker whose accept loop wakes first takes every connection
    waiting in it, so a burst of keep-alive clients (a LAS, a load balancer) stays on one
    worker for good and the other cores idle.
    """
    if workers < 2 or not sys.platform.startswith("linux") or not hasattr(socket, "SO_REUSEPORT"):
        shared = config.bind_socket()
        shared.listen(config.backlog)
        return [shared]
    family = address_family(config.host)
    try:
        port = port_nobody_listens_on(config.host, config.port)
        listeners = [_reuseport_listener(family, config.host, port) for _ in range(workers)]
    except OSError as exc:
        uvicorn_log.error(exc)
        sys.exit(STARTUP_FAILURE)
    for listener in listeners:
        listener.listen(config.backlog)
    uvicorn_log.info(
        "Uvicorn running on https://%s:%d, one listener per worker (%d)",
        config.host,
        port,
        workers,
    )
    return listeners


def address_family(host: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def port_nobody_listens_on(host: str, port: int) -> int:
    """``port`` (or, for 0, a free one) after a bind without SO_REUSEPORT: another process
    of this user listening there with SO_REUSEPORT (a second node started by mistake) would
    otherwise share the port silently instead of failing this start as it does today."""
    with socket.socket(address_family(host), socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn's own
        probe.bind((host, port))
        bound: int = probe.getsockname()[1]
        return bound


def _reuseport_listener(family: socket.AddressFamily, host: str, port: int) -> socket.socket:
    # IPPROTO_TCP, not 0: asyncio sets TCP_NODELAY only on sockets that say TCP
    # (server/limits.py, TcpConfig, tells the story).
    listener = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        listener.bind((host, port))
    except OSError:
        listener.close()
        raise
    listener.set_inheritable(True)
    return listener


def run_workers(settings: Settings) -> None:
    """The supervisor binds the listeners, forks N workers, and serves /metrics for all."""
    metrics_dir = tempfile.mkdtemp(prefix="traffic-center-metrics-")
    try:
        _supervise(settings, metrics_dir)
    finally:
        # Also after a start that failed (a port in use exits from inside _supervise).
        shutil.rmtree(metrics_dir, ignore_errors=True)


def _supervise(settings: Settings, metrics_dir: str) -> None:
    # The secret was made (or checked) once by `serve` before this, so workers find it.
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir
    os.environ.update(settings_as_env(settings))
    os.environ["TC_RUN_MIGRATIONS"] = "false"  # the supervisor migrated already
    config = vendor_config(settings, APP_FACTORY, factory=True, workers=settings.workers)
    # Listening before /readyz can say ready: connections queue until a worker accepts them
    # (uvicorn only binds here; its workers would start listening a second later).
    listeners = listening_sockets(config, settings.workers)
    ops = TrafficCenterServer(settings, serve_vendor_api=False)
    ops_listener = ServerThread(ops, name="ops")
    try:
        _start_ops_listener(ops_listener)
        _DrainingSupervisor(config, listeners=listeners, lifecycle=ops.lifecycle).run()
    finally:
        for listener in listeners:
            listener.close()
        ops_listener.stop(timeout=10)


def _start_ops_listener(ops_listener: ServerThread) -> None:
    """The ops listener listening before any worker starts, or no start, as without
    --workers (exit 3): a node without /readyz, /healthz and /metrics served on, unseen by
    its load balancer and its alerts."""
    try:
        ops_listener.start()
    except RuntimeError as error:
        # uvicorn has logged why it could not (the port in use, say); a timeout it has not.
        uvicorn_log.error("The ops listener did not start (%s); stopping.", error)
        sys.exit(STARTUP_FAILURE)
