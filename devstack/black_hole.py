"""A TCP endpoint on 127.0.0.1 that can black-hole (accept, read, never answer) or forward to a target."""

from __future__ import annotations

import contextlib
import socket
import threading

from devstack.tcp_proxy import TcpProxy


class BlackHoleProxy(TcpProxy):
    """Forwards like TcpProxy until black_hole(); then new connections are accepted and never answered.

    A connection accepted while black-holed stays unanswered even after restore(), as one that crossed a
    dead network path would: only new connections are forwarded again.
    """

    def __init__(self, target_port: int, port: int = 0):
        super().__init__(target_port, port)
        self.holding = False
        self.held: list[socket.socket] = []

    def black_hole(self) -> None:
        self.holding = True

    def restore(self) -> None:
        self.holding = False

    def stop(self) -> None:
        self.cut()
        for conn in self.held:
            with contextlib.suppress(OSError):
                conn.close()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return  # cut
            if self.holding:
                self.held.append(client)
                threading.Thread(target=self._swallow, args=(client,), daemon=True).start()
                continue
            self._forward(client, listener)

    def _swallow(self, client: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while client.recv(65536):
                pass

    def _forward(self, client: socket.socket, listener: socket.socket) -> None:
        try:
            upstream = socket.create_connection(("127.0.0.1", self.target_port), timeout=5)
        except OSError:
            client.close()
            return
        upstream.settimeout(None)
        with self._lock:
            if self._listener is not listener:
                client.close()
                upstream.close()
                return
            self._conns.update((client, upstream))
            self.connections += 1
        for src, dst in ((client, upstream), (upstream, client)):
            threading.Thread(target=self._pipe, args=(src, dst), daemon=True).start()
