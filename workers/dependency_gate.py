"""The dependency gate: a worker whose database is down stops receiving, probes it with backoff, resumes."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import threading
import time
import weakref
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from core.env import EnvError, env_float
from core.state_files import write_atomically
from workers.dependency_errors import DATABASE
from workers.health import Liveness, liveness_path, poll_liveness

logger = logging.getLogger(__name__)

PROBE_SECONDS_ENV = "WORKER_DEPENDENCY_PROBE_SECONDS"
PROBE_MAX_SECONDS_ENV = "WORKER_DEPENDENCY_PROBE_MAX_SECONDS"
DEFAULT_PROBE_SECONDS = 1.0  # the first probe, then doubling ...
DEFAULT_PROBE_MAX_SECONDS = 5.0  # ... up to this: the database is back at most this long before the worker knows
PROBE_CONNECT_TIMEOUT = 3  # seconds: a black-holed database must not stall the probe for minutes
LIVENESS_SECONDS = 5.0  # while paused the gate keeps the liveness file fresh (the worker is alive, not stuck)


def pause_file() -> Path:
    """Beside the liveness file (WORKER_LIVENESS_FILE): present, with the worker's pid, while paused."""
    live = liveness_path("worker")
    return live.with_name(live.name + ".dependency-down")


def read_pause(path: Path | None = None) -> dict | None:
    """The pause a live worker wrote ({"dependency", "since", "reason", "pid"}), or None. A file left by a
    process that is gone is ignored."""
    try:
        pause = json.loads((path or pause_file()).read_text())
        os.kill(int(pause["pid"]), 0)
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return pause


def dependency_down_message() -> str | None:
    """For the health check: "dependency down: database (paused since …)" while this worker is paused. Healthy
    for ECS all the same: a replacement task could not reach the database either (README, "Health")."""
    pause = read_pause()
    if pause is None:
        return None
    since = datetime.fromtimestamp(float(pause["since"]), UTC)
    return (
        f"dependency down: {pause['dependency']} (paused since {since:%Y-%m-%dT%H:%M:%SZ}, "
        f"{time.time() - float(pause['since']):.0f} s; {pause.get('reason', '')})"
    )


def paused_in_parent() -> bool:
    """In a pool child: has this worker's main process paused? (A child does not share the gate's memory.)"""
    pause = read_pause()
    return pause is not None and pause["pid"] == os.getppid()


def probe_database(timeout: int = PROBE_CONNECT_TIMEOUT) -> str | None:
    """A fresh connection (never a pooled one) and SELECT 1: None when the database answers, else why not."""
    from django.db import connections
    from django.db.utils import load_backend

    settings = connections.settings["default"]
    db = {**settings, "OPTIONS": {**settings.get("OPTIONS", {})}}
    if "postgresql" in db["ENGINE"]:
        db["OPTIONS"]["connect_timeout"] = timeout
    conn = load_backend(db["ENGINE"]).DatabaseWrapper(db, "dependency-probe")
    try:
        with conn.cursor() as cursor:
            cursor.execute("SELECT 1")
        return None
    except Exception as exc:  # any failure is "not yet"; the next probe tries again
        return f"{type(exc).__name__}: {(str(exc).strip().splitlines() or [''])[0]}"
    finally:
        with contextlib.suppress(Exception):  # closing a connection that never opened
            conn.close()


class DependencyGate:
    """Open while the database answers. close() (on the event loop, from workers/gate_request.py) pauses every
    queue's receive loop (workers/transport/dependency_pause.py parks it), writes the pause file and starts a probe
    thread; when a probe answers, the gate reopens and calls each watcher (the channels resume on their event
    loop). One log line at each change, none per task or probe."""

    def __init__(
        self,
        *,
        probe: Callable[[], str | None] = probe_database,
        first_delay: float | None = None,
        max_delay: float | None = None,
        liveness: Liveness = poll_liveness,
        wait: Callable[[float], None] | None = None,
        spawn: Callable[[Callable[[], None]], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.probe, self.liveness, self.clock = probe, liveness, clock
        if first_delay is None:
            first_delay = env_float(PROBE_SECONDS_ENV, DEFAULT_PROBE_SECONDS)
        if max_delay is None:
            max_delay = env_float(PROBE_MAX_SECONDS_ENV, DEFAULT_PROBE_MAX_SECONDS)
        if not 0 < first_delay <= max_delay:
            raise EnvError(
                f"{PROBE_SECONDS_ENV}={first_delay} and {PROBE_MAX_SECONDS_ENV}={max_delay}: need 0 < first <= max"
            )
        self.first_delay, self.max_delay = first_delay, max_delay
        self._wait = wait or threading.Event().wait
        self._spawn = spawn or (lambda run: threading.Thread(target=run, name="dependency-probe", daemon=True).start())
        self._lock = threading.Lock()
        self._closed_since: float | None = None
        self._reopened_at: float | None = None
        self._watchers: list[weakref.WeakMethod] = []
        self.probes = 0  # in the current pause (for tests and the resume line)

    @property
    def closed(self) -> bool:
        return self._closed_since is not None

    def watch(self, on_reopen: Callable[[], None]) -> None:
        """Call the bound method `on_reopen` (from the probe thread) when the gate reopens; held weakly."""
        with self._lock:
            self._watchers = [w for w in self._watchers if w() is not None]
            if not any(w() == on_reopen for w in self._watchers):
                self._watchers.append(weakref.WeakMethod(on_reopen))

    def close(self, reason: str, dependency: str = DATABASE) -> bool:
        """Pause (once: further calls while closed do nothing). Returns whether this call closed it."""
        with self._lock:
            if self._closed_since is not None:
                return False
            self._closed_since, self.probes = self.clock(), 0
        _write_pause(dependency, reason)
        logger.warning(
            "dependency down: %s (%s): paused receiving; running tasks finish or fail, unstarted ones are handed "
            "back; probing every %.0f-%.0f s",
            dependency,
            reason,
            self.first_delay,
            self.max_delay,
        )
        # Closed again soon after a reopen: the probe answers but tasks still fail (a flapping database, or a
        # dependency the probe does not see). Wait the longest delay first, so the worker pauses instead of
        # handing back a task or two every first_delay seconds.
        flapping = self._reopened_at is not None and self.clock() - self._reopened_at < 2 * self.max_delay
        first = self.max_delay if flapping else self.first_delay
        self._spawn(lambda: self._probe_until_open(dependency, first))
        return True

    def _probe_until_open(self, dependency: str, first: float) -> None:
        delay = first
        while True:
            self._sleep_alive(delay)
            self.probes += 1
            if self.probe() is None:
                break
            delay = min(delay * 2, self.max_delay)
        self._reopen(dependency)

    def _sleep_alive(self, seconds: float) -> None:
        """Sleep, keeping the liveness file fresh: a paused worker is alive (see the README's health check)."""
        left = seconds
        while left > 0:
            self.liveness.touch()
            step = min(left, LIVENESS_SECONDS)
            self._wait(step)
            left -= step
        self.liveness.touch()

    def _reopen(self, dependency: str) -> None:
        with self._lock:
            since, self._closed_since = self._closed_since, None
            self._reopened_at = self.clock()
            watchers = [w() for w in self._watchers]
        pause_file().unlink(missing_ok=True)
        logger.warning(
            "dependency back: %s answered after %.1f s (%d probe(s)): resumed receiving",
            dependency,
            self.clock() - (since or self.clock()),
            self.probes,
        )
        for on_reopen in watchers:
            if on_reopen is not None:
                on_reopen()


def _write_pause(dependency: str, reason: str) -> None:
    path = pause_file()
    try:
        pause = {"dependency": dependency, "since": time.time(), "reason": reason, "pid": os.getpid()}
        write_atomically(path, json.dumps(pause))  # each pool child reads it before each task
    except OSError as exc:  # the pause itself must not fail: only the health check's detail is lost
        logger.warning("could not write %s: %s", path, exc)


def clear_stale_pause() -> None:
    """A worker starting: no pause of a previous process may survive it."""
    pause_file().unlink(missing_ok=True)


#: The worker's gate (its main process): closed by workers/gate_request.py, read by workers/transport/.
dependency_gate = DependencyGate()
