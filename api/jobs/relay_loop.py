"""The relay's loop: sweep every few seconds; while the database or SQS is down, back off and say so once. It
also runs the lost-worker sweep (api/jobs/lost_workers.py) every LOST_SWEEP_SECONDS: the relay is one
service, always running, and that sweep is safe to run from several anyway."""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path

from django.conf import settings
from django.db import Error as DatabaseError
from django.db import close_old_connections, connection

from api.jobs.lost_workers import LostSweep
from api.jobs.outbox import Sweep, sweep_once
from api.jobs.outbox_config import RelayConfig
from core.state_files import write_atomically

logger = logging.getLogger(__name__)

LOST_SWEEP_SECONDS = 10.0  # a lost worker's row turns lost after ~55 s (workers/registry/writer.py lost_after)


class RelayLoop:
    """Runs sweeps until stopped. One WARNING when sweeps start failing, one INFO when they work again."""

    def __init__(
        self,
        *,
        sweep: Callable[[], Sweep] = sweep_once,
        config: RelayConfig | None = None,
        clock: Callable[[], float] = time.monotonic,
        liveness: Path | None = None,
        lost_sweep: Callable[[], LostSweep] | None = None,
        lost_every: float = LOST_SWEEP_SECONDS,
    ):
        self.sweep = sweep
        self.config = config or settings.OUTBOX_RELAY
        self.clock = clock
        self.liveness = liveness
        self.lost_sweep = lost_sweep  # None: this loop does not sweep for lost workers
        self.lost_every = lost_every
        self.lost_swept_at: float | None = None
        self.released = 0  # Jobs the lost-worker sweep put back to queued or dead_lettered
        self.delay = self.config.sweep_seconds
        self.failing: str | None = None  # what is down, while it is
        self.failing_since = 0.0
        self.failed_sweeps = 0
        self.sweeps = 0
        self.published = 0

    def tick(self) -> float:
        """One sweep; returns the seconds to wait before the next."""
        self.sweeps += 1
        try:
            close_old_connections()
            result = self.sweep()
        except DatabaseError as exc:  # django.db.Error: OperationalError, InterfaceError (a closed connection)…
            connection.close()  # reconnect on the next sweep
            self._failed("the database", exc)
        else:
            self.published += result.published
            if result.broker_error is not None:
                self._failed("SQS", result.broker_error)
            else:
                self._worked(result)
            self._sweep_lost()
        self.delay = self.config.next_sweep_delay(self.delay, failing=self.failing is not None)
        if self.liveness is not None:
            with contextlib.suppress(OSError):  # a full disk must not stop the relay; the check will say so
                write_atomically(self.liveness, f"{time.time():.3f}\n")
        return self.delay

    def _sweep_lost(self) -> None:
        """The lost-worker sweep, at most every `lost_every` seconds; its failure never stops the relay."""
        now = self.clock()
        if self.lost_sweep is None or (self.lost_swept_at is not None and now - self.lost_swept_at < self.lost_every):
            return
        self.lost_swept_at = now
        try:
            swept = self.lost_sweep()
        except DatabaseError as exc:
            connection.close()
            self._failed("the database", exc)
            return
        except Exception:
            logger.exception("outbox relay: the lost-worker sweep failed; it runs again in %g s", self.lost_every)
            return
        released = len(swept.requeued) + len(swept.dead_lettered)
        self.released += released
        if released:
            logger.warning(
                "lost workers: %d Jobs were running on a worker lost past its bound: %d back to queued %s, "
                "%d dead_lettered %s",
                released,
                len(swept.requeued),
                swept.requeued,
                len(swept.dead_lettered),
                swept.dead_lettered,
            )

    def _failed(self, what: str, error: object) -> None:
        self.failed_sweeps += 1
        if self.failing is None:
            self.failing, self.failing_since = what, self.clock()
            logger.warning(
                "outbox relay: %s is failing (%s); sweeps back off up to %g s until it answers",
                what,
                error,
                self.config.sweep_max_seconds,
            )
        else:
            logger.debug("outbox relay: %s is still failing: %s", what, error)

    def _worked(self, result: Sweep) -> None:
        if self.failing is not None:
            logger.info(
                "outbox relay: %s answers again after %.0f s (%d failed sweeps); published %d",
                self.failing,
                self.clock() - self.failing_since,
                self.failed_sweeps,
                result.published,
            )
            self.failing, self.failed_sweeps = None, 0
        elif result.claimed:
            logger.info("outbox relay: published %d of %d due jobs", result.published, result.due)

    def run(self, stop: threading.Event, *, max_seconds: float | None = None) -> None:
        """Sweep until `stop` is set (SIGTERM) or `max_seconds` have passed."""
        deadline = None if max_seconds is None else self.clock() + max_seconds
        while not stop.is_set():
            delay = self.tick()
            if deadline is not None:
                delay = min(delay, deadline - self.clock())
                if delay <= 0:
                    break
            stop.wait(delay)


def liveness_problem(path: Path, config: RelayConfig, now: float | None = None) -> str | None:
    """Why the relay looks dead (no sweep for two of its longest intervals plus a minute), or None."""
    limit = 2 * config.sweep_max_seconds + 60
    try:
        age = (now or time.time()) - float(path.read_text().strip())
    except (OSError, ValueError):
        return f"no outbox relay liveness file in {path}"
    if age > limit:
        return f"the outbox relay last swept {age:.0f} s ago (more than {limit:g} s)"
    return None
