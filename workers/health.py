"""Liveness files: the worker's consumer touches one after each successful SQS poll, beat after each tick;
`python -m workers.healthcheck worker|beat` fails when the file is stale. (Not the visibility heartbeat of
workers/visibility.py, nor the beat lease, nor Celery's own worker heartbeat, which this project turns off.)"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from core.env import env_int
from core.state_files import write_atomically

# A successful long poll returns at least every wait_time_seconds (20 s) + polling_interval (1 s).
DEFAULT_MAX_AGE = {"worker": 90, "beat": 60}
THROTTLE_SECONDS = 1.0


def liveness_path(kind: str) -> Path:
    """`<KIND>_LIVENESS_FILE`, or the name the README documented before (`<KIND>_HEARTBEAT_FILE`)."""
    env = os.environ.get(f"{kind.upper()}_LIVENESS_FILE") or os.environ.get(f"{kind.upper()}_HEARTBEAT_FILE")
    return Path(env or Path(tempfile.gettempdir()) / f"celery-{kind}-liveness")


def max_age(kind: str) -> int:
    return env_int(f"{kind.upper()}_HEALTH_MAX_AGE", DEFAULT_MAX_AGE[kind])


class Liveness:
    """Touch a file, at most once a second, and tell the listeners (the worker registry) each time."""

    def __init__(self, kind: str):
        self.kind = kind
        self.path = liveness_path(kind)
        self._last = 0.0
        self.listeners: list[Callable[[float], None]] = []

    def touch(self) -> None:
        now = time.monotonic()
        if now - self._last < THROTTLE_SECONDS:
            return
        self._last = now
        wall = time.time()
        write_atomically(self.path, f"{wall:.3f}\n")  # the health check reads it at any moment
        for listener in self.listeners:
            listener(wall)

    def clear(self) -> None:
        self.path.unlink(missing_ok=True)


def liveness_age(kind: str) -> float | None:
    """Seconds since the liveness file was last touched, or None if there is none."""
    try:
        return max(0.0, time.time() - float(liveness_path(kind).read_text().strip()))
    except (OSError, ValueError):
        return None


poll_liveness = Liveness("worker")
