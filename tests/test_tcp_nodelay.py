"""Issue 14: every accepted vendor connection has TCP_NODELAY, with and without workers.

uvicorn's workers share a socket it made with protocol 0; asyncio sets TCP_NODELAY only on a
socket whose protocol says TCP, so each small answer waited ~40 ms for a delayed ACK.
"""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from tests.support.node import Node, start_node
from tests.support.sockets import server_end_option


@pytest.mark.parametrize("workers", ["1", "2"])
def test_accepted_connections_have_tcp_nodelay(tmp_path: Path, workers: str) -> None:
    node = start_node(tmp_path, {"TC_WORKERS": workers})
    try:
        connections = [node.tls() for _ in range(6)]  # with workers, some land on each
        try:
            for tls in connections:
                assert_answered_without_delay(tls, node, "/v1/whoami")
        finally:
            for tls in connections:
                tls.close()
    finally:
        node.stop()


@pytest.mark.parametrize(
    "settings",
    [{"TC_WORKERS": "2"}, {"TC_WORKERS": "1", "TC_EVENT_LOOP": "asyncio"}],
    ids=["workers", "asyncio-loop"],
)
def test_the_ops_listener_s_connections_have_tcp_nodelay(
    tmp_path: Path, settings: dict[str, str]
) -> None:
    """Its socket is bound before the apps start (server/runner.py): made by uvicorn with
    protocol 0, on asyncio's loop each kept-alive scrape or probe answer waited ~40 ms."""
    node = start_node(tmp_path, settings)
    try:
        with socket.create_connection(("127.0.0.1", node.ops_port), timeout=5) as probe:
            assert_answered_without_delay(probe, node, "/healthz")
    finally:
        node.stop()


def assert_answered_without_delay(client: socket.socket, node: Node, path: str) -> None:
    """A GET of ``path`` answered 200 on ``client``, whose server end has TCP_NODELAY."""
    client.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
    assert client.recv(65536).startswith(b"HTTP/1.1 200 ")
    nodelay = server_end_option(client, node.process.pid, socket.IPPROTO_TCP, socket.TCP_NODELAY)
    assert nodelay != 0
