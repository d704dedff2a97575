"""The registry's writer thread: the event loop only wakes it; it takes the newest snapshot and writes it, so the
loop never waits on the database."""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta

from core.env import EnvError, env_float
from workers.registry.snapshot import WorkerSnapshot

logger = logging.getLogger(__name__)

INTERVAL_ENV, KEEP_ENV = "WORKER_REGISTRY_SECONDS", "WORKER_REGISTRY_KEEP_HOURS"
DEFAULT_INTERVAL_SECONDS = 15.0  # at most one UPSERT per worker this often: 240 an hour
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
    """A worker whose row's last poll is older than this is lost. A healthy worker's row shows a last poll at
    most one tick gap (a long poll plus polling_interval) plus one interval old (the write that carries the
    next tick may wait for the interval); the bound allows one more interval and 5 s for the write itself."""
    return math.ceil(2 * interval + tick_gap + 5)


class RegistryWriter:
    """A thread that writes this worker's row: at most once per `interval`, when a liveness tick arrived
    since the last write (the renewal: the event loop polls) or a task started or ended (the row's tasks).

    `renew(tick)` runs on the event loop at each liveness tick and `changed()` wherever a task starts or ends:
    both only note the fact, and wake the thread only if no write was due yet: a thread that knows of one sleeps until
    the interval allows it, and would only go back to sleep (a wake-up per task start and end cost the main process
    0.2-0.4 s of CPU per 1000 tasks). The thread takes the snapshot (from thread-safe reads) and writes it, so a hung
    or refusing database delays the row, never the loop, and writes never queue up."""

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
        self.wakeups = 0  # times the thread woke (by a call or a due write)
        self._tick: float | None = None  # the last liveness tick (epoch seconds)
        self._new_tick = False
        self._changed = False
        self._final_of: Callable[[float], WorkerSnapshot] | None = None
        self._stopping = False
        self._written_at: float | None = None
        self._lock = threading.Lock()  # held for flag flips only, never while writing
        self._wake = threading.Event()
        self._last_prune: float | None = None
        self._failing_since: float | None = None
        self._thread = threading.Thread(target=self._run, name="worker-registry", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def renew(self, tick: float) -> None:
        """On the event loop, at each liveness tick: no I/O, no wait."""
        with self._lock:
            due = self._new_tick or self._changed
            self._tick, self._new_tick = tick, True
        if not due:
            self._wake.set()

    def changed(self) -> None:
        """A task started or ended: shown at the next write, which still waits for the interval."""
        with self._lock:
            due = self._new_tick or self._changed
            self._changed = True
        if not due:
            self._wake.set()

    def stop(self, final: Callable[[float], WorkerSnapshot] | None = None, timeout: float = STOP_WRITE_SECONDS) -> bool:
        """Write `final(last tick)` (the row marked stopped) if the database takes it within `timeout`, then end
        the thread; True if it was written."""
        before = self.renewals
        with self._lock:
            self._stopping, self._final_of = True, final
        self._wake.set()
        if self._thread.is_alive():
            self._thread.join(timeout)
        if self._thread.is_alive():
            logger.warning("worker registry: the database did not take the stopped row within %.0f s", timeout)
            return False
        return final is None or self.renewals > before

    def _due_in(self) -> float | None:
        """Seconds until the next write may happen (0: now), or None if nothing calls for one."""
        with self._lock:
            if self._tick is None or not (self._new_tick or self._changed):
                return None
        if self._written_at is None:
            return 0.0
        return max(0.0, self.interval - (self.clock() - self._written_at))

    def _run(self) -> None:
        while True:
            due = self._due_in()
            self._wake.wait(timeout=self.interval if due is None else due)
            self._wake.clear()
            self.wakeups += 1
            with self._lock:
                stopping, final = self._stopping, self._final_of
            if stopping:
                if final is not None and self._tick is not None:
                    self._write(final(self._tick))
                return
            if self._due_in() == 0.0:
                with self._lock:
                    tick, self._new_tick, self._changed = self._tick, False, False
                self._write(self.snapshot(tick))
            self._maybe_prune()

    def _write(self, snapshot: WorkerSnapshot) -> None:
        from django.db import close_old_connections, connection

        self._written_at = self.clock()
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
    """The last row of a worker that shut down cleanly: nothing runs any more (a task cut off was handed back)."""
    return replace(snapshot, running=[], stopped_at=datetime.now(UTC))
