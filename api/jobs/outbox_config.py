"""The outbox relay's numbers (sweep interval, retry backoff), read once and checked against each other."""

from __future__ import annotations

from dataclasses import dataclass

from core.env import EnvError


@dataclass(frozen=True)
class RelayConfig:
    sweep_seconds: float = 2.0  # how often the sweep looks for due Jobs while all is well
    sweep_max_seconds: float = 60.0  # the sweep's interval grows to this while the database or SQS is down
    retry_seconds: float = 2.0  # a Job's first retry after a failed publish; doubled per attempt
    retry_max_seconds: float = 300.0
    batch: int = 100  # Jobs claimed per sweep at most

    def __post_init__(self) -> None:
        for name in ("sweep_seconds", "sweep_max_seconds", "retry_seconds", "retry_max_seconds", "batch"):
            if not getattr(self, name) > 0:
                raise EnvError(f"OUTBOX_{name.upper()}={getattr(self, name)!r} must be above 0")
        for low, high in (("sweep_seconds", "sweep_max_seconds"), ("retry_seconds", "retry_max_seconds")):
            high_value, low_value = getattr(self, high), getattr(self, low)
            if high_value < low_value:
                raise EnvError(f"OUTBOX_{high.upper()}={high_value:g} is below OUTBOX_{low.upper()}={low_value:g}")

    def retry_delay(self, attempts: int) -> float:
        """Seconds before the next publish of a Job that has had `attempts` attempts (1, 2, …)."""
        return min(self.retry_max_seconds, self.retry_seconds * 2 ** max(0, attempts - 1))

    def next_sweep_delay(self, current: float, *, failing: bool) -> float:
        """The sweep's next interval: back to normal when a sweep worked, doubled (capped) while failing."""
        if not failing:
            return self.sweep_seconds
        return min(self.sweep_max_seconds, max(current, self.sweep_seconds) * 2)
