"""Several server processes on one port, each with a listening socket of its own.

uvicorn's supervisor hands every worker the same listening socket, and whichever
worker wakes first accepts the next connection. API clients keep their connections
open, and connections opened in a burst (a ministry service's pool starting up) land
mostly on one or two workers: with 64 connections and two workers the bench saw 49
and 15, and the second worker sat idle a third of the time while the first was full.

Here each worker gets a socket of its own, bound to the same address with
``SO_REUSEPORT``: the kernel then spreads new connections evenly over the workers'
sockets (by a hash of the client's address and port). The supervisor is uvicorn's own
(restarts, signals, health checks); only the sockets it hands out differ, one new one
per worker started. The parent closes its copy once the worker holds the socket.

``SO_REUSEPORT`` lets another process of the same user join the port, so the port is
first bound without it: a port another server already listens on is refused as before.
"""

from __future__ import annotations

import socket
from typing import Any

from uvicorn.config import Config
from uvicorn.supervisors import Multiprocess


def reuse_port_supported() -> bool:
    return hasattr(socket, "SO_REUSEPORT")


def bind_shared(family: int, address: Any, backlog: int = 2048) -> socket.socket:
    """A listening socket on ``address`` that other sockets of this server may share.

    It listens at once: the kernel spreads connections only over sockets that listen,
    so a worker still starting gets its share queued rather than none (which would send
    a burst to the workers already up). Raises OSError as bind does.
    """
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind(address)
        sock.listen(backlog)
    except OSError:
        sock.close()
        raise
    sock.set_inheritable(True)
    return sock


class BalancedWorkers(Multiprocess):
    """uvicorn's Multiprocess, where each worker started gets its own SO_REUSEPORT socket.

    ``first`` is a socket already bound (with bind_shared) to the address: the first
    worker gets it, later ones new sockets bound the same way.
    """

    def __init__(self, config: Config, first: socket.socket) -> None:
        self._family = first.family
        self._address = first.getsockname()
        self._spare: socket.socket | None = first
        self._handed: list[socket.socket] = []
        super().__init__(config, sockets=[])

    # uvicorn reads self.sockets once for each worker it starts.
    @property  # type: ignore[override]
    def sockets(self) -> list[socket.socket]:
        sock = self._spare or bind_shared(self._family, self._address, self.config.backlog)
        self._spare = None
        self._handed.append(sock)
        return [sock]

    @sockets.setter
    def sockets(self, value: list[socket.socket]) -> None:
        pass  # the sockets are made per worker (above)

    def _close_handed(self) -> None:
        # Each started worker has its own descriptor of its socket by now.
        for sock in self._handed:
            sock.close()
        self._handed.clear()

    def init_processes(self) -> None:
        try:
            super().init_processes()
        finally:
            self._close_handed()

    def restart_all(self) -> None:
        try:
            super().restart_all()
        finally:
            self._close_handed()

    def keep_subprocess_alive(self) -> None:
        try:
            super().keep_subprocess_alive()
        finally:
            self._close_handed()
