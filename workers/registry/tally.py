"""Done, failed and retried tasks of this worker process over a sliding window, counted in memory; and a
signal to the registry writer whenever a task starts or ends."""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable

WINDOW_SECONDS = 15 * 60
OUTCOMES = ("done", "failed", "retried")


class TaskTally:
    """Counts per second, kept for `window` seconds: at most `window` buckets whatever the task rate."""

    def __init__(self, window: int = WINDOW_SECONDS, clock: Callable[[], float] = time.monotonic):
        self.window, self.clock = window, clock
        self._buckets: deque[list[int]] = deque()  # [second, done, failed, retried]
        self._lock = threading.Lock()  # the prefork pool reports on the event loop; other pools from threads
        self.listeners: list[Callable[[], None]] = []  # told of every start and end (the registry writer)

    def started(self) -> None:
        self._tell()

    def add(self, outcome: str) -> None:
        column = 1 + OUTCOMES.index(outcome)
        second = int(self.clock())
        with self._lock:
            if not self._buckets or self._buckets[-1][0] != second:
                self._buckets.append([second, 0, 0, 0])
                self._drop_old(second)
            self._buckets[-1][column] += 1
        self._tell()

    def _tell(self) -> None:
        for listener in self.listeners:
            listener()

    def counts(self) -> dict[str, int]:
        with self._lock:
            self._drop_old(int(self.clock()))
            totals = [sum(bucket[i] for bucket in self._buckets) for i in (1, 2, 3)]
        return {**dict(zip(OUTCOMES, totals, strict=True)), "window_minutes": self.window // 60}

    def _drop_old(self, now: int) -> None:
        while self._buckets and self._buckets[0][0] <= now - self.window:
            self._buckets.popleft()


# One per worker process: the Request class (workers/registry/request.py) adds, the registry snapshot reads.
task_tally = TaskTally()
