"""The dependency-gate pause: while the database is down (workers/dependency_gate.py) a queue's receive loop is
parked, so it makes no ReceiveMessage and every message stays in SQS, unreceived."""

from __future__ import annotations

from collections.abc import Callable

from workers.dependency_gate import clear_stale_pause, dependency_gate


class DependencyPause:
    """Watches the worker's gate from the first poll on; `closed()` says whether to park. When the gate reopens
    (on the gate's probe thread) `on_reopen` runs on the event loop, through `call_soon`."""

    def __init__(self, *, call_soon: Callable[..., object], on_reopen: Callable[[], None]):
        self._call_soon, self._on_reopen = call_soon, on_reopen
        self._watching = False

    def closed(self) -> bool:
        if not self._watching:
            self._watching = True
            if not dependency_gate.closed:
                clear_stale_pause()
            dependency_gate.watch(self._reopened)
        return dependency_gate.closed

    def _reopened(self) -> None:
        """Called from the gate's probe thread: resume on the event loop (Hub.call_soon wakes it up)."""
        self._call_soon(self._on_reopen)
