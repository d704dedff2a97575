"""`make run`'s output: one line per step with its time, children's lines prefixed, never silent for long."""

from __future__ import annotations

import contextlib
import sys
import threading
import time
from collections.abc import Iterator

SILENCE_SECONDS = 3.0  # a step still running after this long without output says so


class RunOutput:
    """Prints lines whole (children's pump threads and the steps share stdout), and watches for silence."""

    def __init__(self, out=sys.stdout, *, silence_seconds: float = SILENCE_SECONDS) -> None:
        self._out, self._silence = out, silence_seconds
        self._lock = threading.Lock()
        self._last = time.monotonic()
        self._step: tuple[str, float] | None = None
        self._stopped = threading.Event()
        threading.Thread(target=self._watch, name="run-output-watch", daemon=True).start()

    def say(self, line: str) -> None:
        with self._lock:
            self._out.write(line + "\n")
            self._out.flush()
            self._last = time.monotonic()

    def done(self, name: str, started: float) -> None:
        """`run: <name> ... 3.1 s`: a step that ended, timed from `started` (time.monotonic())."""
        self.say(f"run: {name} ... {time.monotonic() - started:.1f} s")

    @contextlib.contextmanager
    def step(self, name: str, *, since: float | None = None) -> Iterator[None]:
        """Time what runs inside, or since `since` (time.monotonic()) when the step began earlier."""
        started = time.monotonic() if since is None else since
        self._step = (name, started)
        try:
            yield
        finally:
            self._step = None
        self.done(name, started)

    def close(self) -> None:
        self._stopped.set()

    def _watch(self) -> None:
        while not self._stopped.wait(0.5):
            step = self._step
            if step and time.monotonic() - self._last >= self._silence:
                self.say(f"run: {step[0]} still going ({time.monotonic() - step[1]:.0f} s)")
