"""The registry's writer thread: the event loop hands it the latest snapshot and never waits on the database."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta

from workers.env import EnvError, env_float
from workers.registry.snapshot import WorkerSnapshot

logger = logging.getLogger(__name__)

INTERVAL_ENV, KEEP_ENV = "WORKER_REGISTRY_SECONDS", "WORKER_REGISTRY_KEEP_HOURS"
DEFAULT_INTERVAL_SECONDS = 15.0  # one UPSERT per worker this often: 240 an hour
DEFAULT_KEEP_HOURS = 24.0  # lost and stopped rows are deleted after this
PRUNE_EVERY_SECONDS = 3600.0
STOP_WRITE_SECONDS = 3.0  # a clean shutdown waits this long at most for its "stopped" write


def registry_interval() -> float:
    seconds = env_float(INTERVAL_ENV, DEFAULT_INTERVAL_SECONDS)
    if not 0 < seconds <= 300:
        raise EnvError(f"{INTERVAL_ENV}={seconds} must be above 0 and at most 300")
    return seconds


def registry_keep() -> timedelta:
    hours = env_float(KEEP_ENV, DEFAULT_KEEP_HOURS)
    if hours <= 0:
        raise EnvError(f"{KEEP_ENV}={hours} must be above 0")
    return timedelta(hours=hours)


def lost_after(interval: float, tick_gap: float) -> int:
    """A row not renewed this long is lost: two renewals missed, after the longest gap between two liveness
    ticks (a long poll plus polling_interval) that the next renewal may wait for."""
    return int(2 * interval + tick_gap + 0.999)


class RegistryWriter:
    """`renew(tick)` runs on the event loop at each liveness tick: at most once per `interval` it takes a
    snapshot (in memory, cheap) and leaves it in a one-slot mailbox. The thread writes whatever is newest
    when it is free: a hung or refusing database delays the row, never the loop, and never queues writes."""

    def __init__(
        self,
        *,
        snapshot: Callable[[float], WorkerSnapshot],
        write: Callable[[WorkerSnapshot, int], None],
        prune: Callable[[], object] | None = None,
        interval: float,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.snapshot, self.write, self.prune = snapshot, write, prune
        self.interval, self.clock = interval, clock
        self.renewals = 0  # rows written
        self.failures = 0
        self._latest: WorkerSnapshot | None = None
        self._taken_at: float | None = None
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stopping = False
        self._last_prune: float | None = None
        self._failing_since: float | None = None
        self._thread = threading.Thread(target=self._run, name="worker-registry", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def renew(self, tick: float) -> None:
        """On the event loop: no I/O, no lock the writer holds while it writes."""
        now = self.clock()
        if self._taken_at is not None and now - self._taken_at < self.interval:
            return
        self._taken_at = now
        self._post(self.snapshot(tick))

    def stop(self, stopped: WorkerSnapshot | None = None, timeout: float = STOP_WRITE_SECONDS) -> bool:
        """Write `stopped` (the row marked stopped) if the database answers within `timeout`; True if written."""
        before = self.renewals
        if stopped is not None:
            self._post(stopped)
        with self._lock:
            self._stopping = True
        self._wake.set()
        if self._thread.is_alive():
            self._thread.join(timeout)
        if self._thread.is_alive():
            logger.warning("worker registry: the database did not take the stopped row within %.0f s", timeout)
            return False
        return stopped is None or self.renewals > before

    def _post(self, snapshot: WorkerSnapshot) -> None:
        with self._lock:
            self._latest = snapshot
        self._wake.set()

    def _take(self) -> tuple[WorkerSnapshot | None, bool]:
        with self._lock:
            latest, self._latest = self._latest, None
            self._wake.clear()
            return latest, self._stopping

    def _run(self) -> None:
        while True:
            self._wake.wait(timeout=self.interval)
            latest, stopping = self._take()
            if latest is not None:
                self._write(latest)
            if stopping:
                return
            self._maybe_prune()

    def _write(self, snapshot: WorkerSnapshot) -> None:
        from django.db import close_old_connections, connection

        try:
            close_old_connections()  # this thread's own connection: drop a broken one before using it
            self.write(snapshot, self.renewals + 1)
        except Exception as exc:  # noqa: BLE001  (a database outage: the next snapshot tries again)
            self.failures += 1
            connection.close()
            if self._failing_since is None:
                self._failing_since = self.clock()
                logger.warning("worker registry: cannot write this worker's row (%s: %s)", type(exc).__name__, exc)
            return
        if self._failing_since is not None:
            logger.warning("worker registry: writing again after %.0f s", self.clock() - self._failing_since)
            self._failing_since = None
        self.renewals += 1

    def _maybe_prune(self) -> None:
        now = self.clock()
        if self.prune is None or (self._last_prune is not None and now - self._last_prune < PRUNE_EVERY_SECONDS):
            return
        self._last_prune = now
        try:
            self.prune()
        except Exception:  # noqa: BLE001
            logger.warning("worker registry: pruning old rows failed; tried again in an hour", exc_info=True)


def stopped(snapshot: WorkerSnapshot) -> WorkerSnapshot:
    """The last row of a worker that shut down cleanly."""
    return replace(snapshot, stopped_at=datetime.now(UTC))
