"""The server's end of a test's TCP connection, read from outside the server process.

pidfd_getfd(2) (Linux 5.6) copies a descriptor out of another process of the same user: the
copy shares the socket, so its options are the server's own. No hook in the server, no
debug endpoint.
"""

from __future__ import annotations

import ctypes
import os
import socket
from collections.abc import Callable, Iterator
from pathlib import Path

_PIDFD_GETFD = 438  # the syscall's number, the same on every architecture


def server_end_option(client: socket.socket, root_pid: int, level: int, option: int) -> int:
    """``getsockopt(level, option)`` on the socket that accepted ``client``'s connection, in
    ``root_pid`` or one of its descendants (uvicorn's workers)."""
    _, value = _server_end(client, root_pid, lambda end: end.getsockopt(level, option))
    return value


def server_end_pid(client: socket.socket, root_pid: int) -> int:
    """The process (``root_pid`` or a descendant) holding the server's end of ``client``'s
    connection: the worker that accepted it."""
    pid, _ = _server_end(client, root_pid, lambda end: 0)
    return pid


def _server_end(
    client: socket.socket, root_pid: int, read: Callable[[socket.socket], int]
) -> tuple[int, int]:
    wanted = (client.getpeername(), client.getsockname())
    for pid in _process_tree(root_pid):
        for server_end in _sockets_of(pid):
            with server_end:
                try:
                    ends = (server_end.getsockname(), server_end.getpeername())
                except OSError:  # a listening or unconnected socket
                    continue
                if ends == wanted:
                    return pid, read(server_end)
    raise LookupError(f"no process under {root_pid} holds the other end of {wanted}")


def listeners_of(pid: int) -> list[tuple[int, int]]:
    """The TCP sockets listening in process ``pid``: (port, inode) each; one listening
    socket held by two processes has the same inode in both."""
    found = []
    for entry, listener in _sockets_with_links(pid):
        with listener:
            if listener.type != socket.SOCK_STREAM or listener.family not in _INET:
                continue
            if listener.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN):
                inode = int(entry.removeprefix("socket:[").removesuffix("]"))
                found.append((listener.getsockname()[1], inode))
    return found


def descendants(pid: int) -> list[int]:
    """The processes ``pid`` started, and theirs."""
    return list(_process_tree(pid))[1:]


_INET = (socket.AF_INET, socket.AF_INET6)


def _process_tree(pid: int) -> Iterator[int]:
    yield pid
    try:
        tasks = list(Path(f"/proc/{pid}/task").iterdir())
    except FileNotFoundError:  # exited meanwhile (a worker being replaced): no children
        return
    for task in tasks:
        try:
            children = (task / "children").read_text().split()
        except FileNotFoundError:  # that thread or the process ended meanwhile
            continue
        for child in children:
            yield from _process_tree(int(child))


def _sockets_of(pid: int) -> Iterator[socket.socket]:
    for _, copy in _sockets_with_links(pid):
        yield copy


def _sockets_with_links(pid: int) -> Iterator[tuple[str, socket.socket]]:
    """Copies of ``pid``'s sockets, each with its /proc link (``socket:[inode]``)."""
    libc = ctypes.CDLL(None, use_errno=True)
    try:
        pidfd = os.pidfd_open(pid)
    except ProcessLookupError:  # exited since it was listed: it holds no socket any more
        return
    try:
        try:
            entries = list(Path(f"/proc/{pid}/fd").iterdir())
        except FileNotFoundError:  # exited meanwhile
            return
        for entry in entries:
            try:
                link = os.readlink(entry)
            except FileNotFoundError:  # closed meanwhile
                continue
            if not link.startswith("socket:"):
                continue
            copy = libc.syscall(_PIDFD_GETFD, pidfd, int(entry.name), 0)
            if copy < 0:
                continue  # closed meanwhile
            yield link, socket.socket(fileno=copy)
    finally:
        os.close(pidfd)
