"""`serve --workers 2`: keep-alive connections spread over both workers, each on its own socket.

With one listening socket shared by the workers, the worker whose accept loop woke first took
a whole burst of connections, and keep-alive clients stayed on it: one core busy, the other
idle (issue 14). Now each worker has its own listener on the same port (SO_REUSEPORT) and the
kernel picks one per connection by a hash of its addresses. Real processes, real TLS; a
connection's worker is found by which process holds the server's end of it.
"""

from __future__ import annotations

import collections
import contextlib
import inspect
import os
import signal
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from uvicorn import Config
from uvicorn.config import STARTUP_FAILURE
from uvicorn.supervisors import Multiprocess

from tests.support.node import Node, start_node
from tests.support.processes import clean_env, free_port
from tests.support.sockets import descendants, listeners_of, server_end_pid
from traffic_center.server.workers import _DrainingSupervisor, listening_sockets

WHOAMI = b"GET /v1/whoami HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"


def test_a_burst_of_keep_alive_connections_lands_on_both_workers(tmp_path: Path) -> None:
    """32 connections opened at once, each answered and kept open: each worker holds >= 4.

    If the kernel's hash sends each connection to either listener with probability 1/2,
    a worker holding <= 3 of 32 has probability 2 * (1 + 32 + 496 + 4960) / 2**32 ~= 2.6e-6:
    one failing run in ~390,000. (16 connections with >= 3 each would fail one run in ~240,
    too often for a test.) With the old shared socket nearly all landed on one worker.
    """
    node = start_node(tmp_path, {"TC_WORKERS": "2"})
    try:
        connections = _connect_at_once(node, 32)
        try:
            served_by = collections.Counter(_served_by(node, tls) for tls in connections)
        finally:
            for tls in connections:
                tls.close()
        assert set(served_by) == set(_workers(node))
        assert min(served_by.values()) >= 4, served_by
    finally:
        node.stop()


def test_port_zero_with_workers_gives_every_worker_a_listener_on_one_port(
    tmp_path: Path,
) -> None:
    home, ops_port = tmp_path / "home", free_port()
    process = subprocess.Popen(
        [
            *(sys.executable, "-m", "traffic_center", "--home", str(home), "serve", "--dev"),
            *("--port", "0", "--ops-port", str(ops_port), "--workers", "2"),
        ],
        env=clean_env(),
        stdout=(tmp_path / "serve.log").open("wb"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    node = Node(home, 0, ops_port, tmp_path / "serve.log", process)
    try:
        node.port = _vendor_port(node)
        _wait_until_served(node)
        own = {inode for port, inode in listeners_of(process.pid) if port == node.port}
        assert len(own) == 2  # the supervisor's copy of each worker's listener
        held = [
            {inode for port, inode in listeners_of(pid) if port == node.port}
            for pid in _workers(node)
        ]
        assert len(held) == 2
        assert held[0] | held[1] == own
        assert len(held[0]) == len(held[1]) == 1
        assert held[0] != held[1]
        connections = _connect_at_once(node, 8)
        for tls in connections:
            tls.close()
    finally:
        node.stop()


def test_a_killed_worker_is_replaced_and_connections_queued_for_it_are_served(
    tmp_path: Path,
) -> None:
    """The kernel keeps sending a dead worker's share of connections to its listener; the
    supervisor's copy keeps that listener open, so they wait there for the replacement.

    16 connections made while the worker is dead: the replacement serves at least one
    unless all 16 hashed to the survivor's listener, probability 2**-16 (one run in 65,536).

    The supervisor is stopped (SIGSTOP) from before the kill until the connections are made:
    it reaps a dead worker and starts its replacement in one pass of its loop, so under load
    the replacement could already listen before the connections were made, and they would
    not have waited for it (a CI run failed on that precondition once).
    """
    node = start_node(tmp_path, {"TC_WORKERS": "2"})
    try:
        victim, survivor = _workers(node)
        victim_listener = {i for p, i in listeners_of(victim) if p == node.port}
        with _supervisor_paused(node):
            os.kill(victim, signal.SIGKILL)
            _wait_until_gone(victim)
            # Connected (the kernel completes the TCP handshake for a listener), not served:
            # no replacement can listen while the supervisor is stopped.
            raw = [
                socket.create_connection(("127.0.0.1", node.port), timeout=30) for _ in range(16)
            ]
            assert _workers(node) == [survivor]
        with ThreadPoolExecutor(16) as pool:
            connections = list(pool.map(lambda r: _handshake(node, r), raw))
        try:
            served_by = collections.Counter(_served_by(node, tls) for tls in connections)
        finally:
            for tls in connections:
                tls.close()
        [replacement] = set(_workers(node)) - {survivor}
        assert {i for p, i in listeners_of(replacement) if p == node.port} == victim_listener
        assert set(served_by) <= {survivor, replacement}
        assert served_by[replacement] >= 1, served_by
    finally:
        node.stop()


def test_sighup_restarts_each_worker_on_its_predecessors_listener(tmp_path: Path) -> None:
    node = start_node(tmp_path, {"TC_WORKERS": "2"})
    try:
        before = {pid: _listeners_on_port(node, pid) for pid in _workers(node)}
        node.process.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 60
        while set(_workers(node)) & set(before) or len(_workers(node)) < 2:
            assert time.monotonic() < deadline, node.log.read_text()
            time.sleep(0.2)
        after = {pid: _listeners_on_port(node, pid) for pid in _workers(node)}
        # Each replacement holds its predecessor's listener, and only that one.
        assert {frozenset(held) for held in after.values()} == {
            frozenset(held) for held in before.values()
        }
        assert all(len(held) == 1 for held in after.values())
        connections = _connect_at_once(node, 8)
        try:
            assert {_served_by(node, tls) for tls in connections} <= set(after)
        finally:
            for tls in connections:
                tls.close()
    finally:
        node.stop()


def test_a_draining_node_refuses_new_connections_while_a_request_finishes(
    tmp_path: Path,
) -> None:
    """On SIGTERM each worker closes its listener and the supervisor lets go of its copies:
    the port refuses new connections at once. (Before, the supervisor's copy kept listening:
    the kernel queued new connections that no worker would ever accept, until the drain
    ended.) A request whose body is still coming keeps the drain going meanwhile."""
    node = start_node(
        tmp_path, {"TC_WORKERS": "2", "TC_DRAIN_SECONDS": "30", "TC_BODY_TIMEOUT_SECONDS": "30"}
    )
    try:
        in_flight = node.tls()
        in_flight.sendall(
            b"POST /v1/sessions HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            b"Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{"
        )
        time.sleep(0.5)  # the worker has the request's head, and waits for its body
        node.process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 5
        while True:
            try:
                socket.create_connection(("127.0.0.1", node.port), timeout=1).close()
            except ConnectionRefusedError:
                break
            assert time.monotonic() < deadline, "still accepting connections 5 s into the drain"
            time.sleep(0.1)
        assert node.process.poll() is None  # still draining: the request is in flight
        assert node.ops("/readyz").status_code == 503
        in_flight.close()
    finally:
        node.stop()


def test_a_port_another_reuseport_listener_holds_is_refused() -> None:
    """SO_REUSEPORT would let the workers join another program's listener (a second node
    started by mistake) and split its connections; the start fails instead, as it did with
    one shared socket."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as other:
        other.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        other.bind(("127.0.0.1", 0))
        other.listen()
        config = Config("traffic_center.server.workers:app_from_env", port=other.getsockname()[1])
        with pytest.raises(SystemExit) as stopped:
            listening_sockets(config, 2)
        assert stopped.value.code == STARTUP_FAILURE


def test_port_zero_binds_every_listener_to_the_port_the_first_got() -> None:
    config = Config("traffic_center.server.workers:app_from_env", port=0)
    listeners = listening_sockets(config, 3)
    try:
        ports = {listener.getsockname()[1] for listener in listeners}
        assert len(listeners) == 3
        assert len(ports) == 1
        assert ports != {0}
        for listener in listeners:
            assert listener.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT) == 1
            assert listener.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN) == 1
            assert listener.proto == socket.IPPROTO_TCP  # else no TCP_NODELAY (asyncio)
    finally:
        for listener in listeners:
            listener.close()


def test_every_uvicorn_method_that_makes_a_worker_is_overridden() -> None:
    """uvicorn's supervisor would hand each worker every listener: each of its methods that
    makes a worker (``Process(self.config, self.sockets)``) is replaced by ours, which
    gives it its own. Fails when an uvicorn upgrade adds or renames one."""
    makers = {
        name
        for name, member in vars(Multiprocess).items()
        if callable(member) and "Process(self.config" in inspect.getsource(member)
    }
    assert makers == {"init_processes", "keep_subprocess_alive", "restart_all", "handle_ttin"}
    assert makers <= set(vars(_DrainingSupervisor))


def _connect_at_once(node: Node, count: int) -> list[ssl.SSLSocket]:
    """``count`` keep-alive connections opened in one burst, then each answered once (200).

    The TCP connections are made back to back before any TLS handshake, as a client pool
    starting up does: they all wait in the listen queue together."""
    raw = [socket.create_connection(("127.0.0.1", node.port), timeout=30) for _ in range(count)]
    with ThreadPoolExecutor(count) as pool:
        return list(pool.map(lambda r: _handshake(node, r), raw))


def _handshake(node: Node, raw: socket.socket) -> ssl.SSLSocket:
    tls = node.context().wrap_socket(raw, server_hostname="127.0.0.1")
    tls.sendall(WHOAMI)
    assert tls.recv(65536).startswith(b"HTTP/1.1 200 ")
    return tls


def _served_by(node: Node, tls: ssl.SSLSocket) -> int:
    return server_end_pid(tls, node.process.pid)


def _workers(node: Node) -> list[int]:
    """The supervisor's children listening on the vendor port (not the dev world's LAS)."""
    found = []
    for pid in descendants(node.process.pid):
        try:
            if any(port == node.port for port, _ in listeners_of(pid)):
                found.append(pid)
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue  # exited meanwhile
    return sorted(found)


def _listeners_on_port(node: Node, pid: int) -> set[int]:
    return {inode for port, inode in listeners_of(pid) if port == node.port}


def _vendor_port(node: Node) -> int:
    """The port `--port 0` got: the supervisor's one listening port besides the ops port."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if node.process.poll() is not None:
            raise RuntimeError(node.log.read_text())
        ports = {port for port, _ in listeners_of(node.process.pid)} - {node.ops_port}
        if ports:
            [port] = ports
            return port
        time.sleep(0.2)
    raise RuntimeError(node.log.read_text())


def _wait_until_served(node: Node) -> None:
    deadline = time.monotonic() + 60
    while len(_workers(node)) < 2:
        assert time.monotonic() < deadline, node.log.read_text()
        time.sleep(0.2)
    with node.client() as client:
        assert client.get("/v1/whoami").status_code == 200


@contextlib.contextmanager
def _supervisor_paused(node: Node) -> Iterator[None]:
    """The supervisor stopped: it neither reaps nor replaces a worker until it continues."""
    node.process.send_signal(signal.SIGSTOP)
    try:
        yield
    finally:
        node.process.send_signal(signal.SIGCONT)


def _wait_until_gone(pid: int) -> None:
    """Killed: no longer running (a zombie until uvicorn's supervisor reaps it)."""
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except FileNotFoundError:
            return
        if state in {"Z", "X"}:
            return
        time.sleep(0.02)
    raise AssertionError(f"worker {pid} still running after SIGKILL")
