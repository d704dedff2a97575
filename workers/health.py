"""Liveness by heartbeat files: the worker's consumer touches one after each successful SQS poll, beat
after each tick; `python -m workers.healthcheck worker|beat` fails when the file is stale."""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

from core.env import env_int

# A successful long poll returns at least every wait_time_seconds (20 s) + polling_interval (1 s).
DEFAULT_MAX_AGE = {"worker": 90, "beat": 60}
THROTTLE_SECONDS = 1.0


def heartbeat_path(kind: str) -> Path:
    env = f"{kind.upper()}_HEARTBEAT_FILE"
    return Path(os.environ.get(env) or Path(tempfile.gettempdir()) / f"celery-{kind}-heartbeat")


def max_age(kind: str) -> int:
    return env_int(f"{kind.upper()}_HEALTH_MAX_AGE", DEFAULT_MAX_AGE[kind])


class Heartbeat:
    """Touch a file, at most once a second."""

    def __init__(self, kind: str):
        self.kind = kind
        self.path = heartbeat_path(kind)
        self._last = 0.0

    def beat(self) -> None:
        now = time.monotonic()
        if now - self._last < THROTTLE_SECONDS:
            return
        self._last = now
        self.path.write_text(f"{time.time():.3f}\n")

    def clear(self) -> None:
        self.path.unlink(missing_ok=True)


def heartbeat_age(kind: str) -> float | None:
    """Seconds since the last heartbeat, or None if there is none."""
    try:
        return max(0.0, time.time() - float(heartbeat_path(kind).read_text().strip()))
    except (OSError, ValueError):
        return None


poll_heartbeat = Heartbeat("worker")
