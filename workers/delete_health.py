"""The delete-failure part of the worker's health: acked messages SQS would not delete, and since when."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from core.env import EnvError, env_float
from core.state_files import write_atomically
from workers.health import liveness_path

logger = logging.getLogger(__name__)

# Deletes failing for longer than this (or refused with AccessDenied at once) make the worker unhealthy.
DEFAULT_UNHEALTHY_AFTER_SECONDS = 60.0
ERROR_LOG_EVERY_SECONDS = 60.0


def unhealthy_after() -> float:
    seconds = env_float("WORKER_DELETE_FAILURE_SECONDS", DEFAULT_UNHEALTHY_AFTER_SECONDS)
    if seconds <= 0:
        raise EnvError(f"WORKER_DELETE_FAILURE_SECONDS={seconds} must be above 0")
    return seconds


def failure_path() -> Path:
    """Beside the liveness file, so a worker given its own liveness file gets its own state too."""
    live = liveness_path("worker")
    return live.with_name(live.name + ".deletes-failing")


def failure_reason() -> str | None:
    """What the health check says when deletes are failing, or None."""
    try:
        state = json.loads(failure_path().read_text())
        return f"deletes failing: {int(state['undeleted'])} acked messages not deleted since {state['since']}"
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError):
        return "deletes failing: unreadable state at " + str(failure_path())


def clear() -> None:
    failure_path().unlink(missing_ok=True)


class DeleteFailures:
    """A streak of failed deletes: from the first failure to the next request that succeeds with nothing left
    to retry. Past `unhealthy_after` seconds (at once for AccessDenied, which no retry fixes) it writes the
    state file the health check reads and logs at ERROR, at most once every ERROR_LOG_EVERY_SECONDS."""

    def __init__(
        self,
        *,
        unhealthy_after: float = DEFAULT_UNHEALTHY_AFTER_SECONDS,
        path: Path | None = None,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.unhealthy_after, self.clock = unhealthy_after, clock
        self.path = path or failure_path()
        self.since: float | None = None  # monotonic start of the streak
        self.since_utc: str | None = None
        self.denied = False
        self.unhealthy = False
        self._last_error_log: float | None = None
        self._written: int | None = None

    def failed(self, *, undeleted: int, error: str, denied: bool) -> None:
        now = self.clock()
        if self.since is None:
            self.since, self.since_utc = now, datetime.now(UTC).isoformat(timespec="seconds")
        self.denied = self.denied or denied
        if not (self.denied or now - self.since >= self.unhealthy_after):
            return
        self.unhealthy = True
        if self._written != undeleted:
            self._write(undeleted)
        if self._last_error_log is None or now - self._last_error_log >= ERROR_LOG_EVERY_SECONDS:
            self._last_error_log = now
            logger.error(
                "deletes failing: %d acked messages not deleted since %s (last error: %s); each runs again "
                "after its visibility timeout, and the worker reports unhealthy until a delete succeeds",
                undeleted,
                self.since_utc,
                error,
            )

    def recovered(self) -> None:
        if self.since is None:
            return
        if self.unhealthy:
            logger.warning("SQS deletes work again (failing since %s)", self.since_utc)
        self.since = self.since_utc = None
        self.denied = self.unhealthy = False
        self._last_error_log = self._written = None
        self.path.unlink(missing_ok=True)

    def _write(self, undeleted: int) -> None:
        self._written = undeleted
        try:
            write_atomically(self.path, json.dumps({"undeleted": undeleted, "since": self.since_utc}))
        except OSError:
            logger.exception("could not write the delete-failure state to %s", self.path)
