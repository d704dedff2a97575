"""The relay's loop: sweep every few seconds; while the database or SQS is down, back off and say so once."""

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

from api.jobs.outbox import Sweep, sweep_once
from api.jobs.outbox_config import RelayConfig

logger = logging.getLogger(__name__)


class RelayLoop:
    """Runs sweeps until stopped. One WARNING when sweeps start failing, one INFO when they work again."""

    def __init__(
        self,
        *,
        sweep: Callable[[], Sweep] = sweep_once,
        config: RelayConfig | None = None,
        clock: Callable[[], float] = time.monotonic,
        heartbeat: Path | None = None,
    ):
        self.sweep = sweep
        self.config = config or settings.OUTBOX_RELAY
        self.clock = clock
        self.heartbeat = heartbeat
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
        self.delay = self.config.next_sweep_delay(self.delay, failing=self.failing is not None)
        if self.heartbeat is not None:
            with contextlib.suppress(OSError):  # a full disk must not stop the relay; the check will say so
                self.heartbeat.write_text(f"{time.time():.3f}\n")
        return self.delay

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


def heartbeat_problem(path: Path, config: RelayConfig, now: float | None = None) -> str | None:
    """Why the relay looks dead (no sweep for two of its longest intervals plus a minute), or None."""
    limit = 2 * config.sweep_max_seconds + 60
    try:
        age = (now or time.time()) - float(path.read_text().strip())
    except (OSError, ValueError):
        return f"no outbox relay heartbeat in {path}"
    if age > limit:
        return f"the outbox relay last swept {age:.0f} s ago (more than {limit:g} s)"
    return None
