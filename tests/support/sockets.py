"""The server's end of a test's TCP connection, read from outside the server process.

pidfd_getfd(2) (Linux 5.6) copies a descriptor out of another process of the same user: the
copy shares the socket, so its options are the server's own. No hook in the server, no
debug endpoint.
"""

from __future__ import annotations

import ctypes
import os
import socket
from collections.abc import Iterator
from pathlib import Path

_PIDFD_GETFD = 438  # the syscall's number, the same on every architecture


def server_end_option(client: socket.socket, root_pid: int, level: int, option: int) -> int:
    """``getsockopt(level, option)`` on the socket that accepted ``client``'s connection, in
    ``root_pid`` or one of its descendants (uvicorn's workers)."""
    wanted = (client.getpeername(), client.getsockname())
    for pid in _process_tree(root_pid):
        for server_end in _sockets_of(pid):
            with server_end:
                try:
                    ends = (server_end.getsockname(), server_end.getpeername())
                except OSError:  # a listening or unconnected socket
                    continue
                if ends == wanted:
                    return server_end.getsockopt(level, option)
    raise LookupError(f"no process under {root_pid} holds the other end of {wanted}")


def _process_tree(pid: int) -> Iterator[int]:
    yield pid
    for task in Path(f"/proc/{pid}/task").iterdir():
        children = (task / "children").read_text().split()
        for child in children:
            yield from _process_tree(int(child))


def _sockets_of(pid: int) -> Iterator[socket.socket]:
    libc = ctypes.CDLL(None, use_errno=True)
    pidfd = os.pidfd_open(pid)
    try:
        for entry in Path(f"/proc/{pid}/fd").iterdir():
            try:
                if not os.readlink(entry).startswith("socket:"):
                    continue
            except FileNotFoundError:  # closed meanwhile
                continue
            copy = libc.syscall(_PIDFD_GETFD, pidfd, int(entry.name), 0)
            if copy < 0:
                continue  # closed meanwhile
            yield socket.socket(fileno=copy)
    finally:
        os.close(pidfd)
