"""Which busy prefetch slots of a queue will be free when a receive sent now comes back (issue L item 2)."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable
from typing import Protocol

RUNTIME_SAMPLES = 20  # the longest of a queue's last 20 slot occupancies is its task time (about a p95)
ROUND_TRIP_SAMPLES = 10  # the shortest and longest of its last 10 non-empty receives bound its round trip
MIN_RUNTIME_SAMPLES = 5
MIN_ROUND_TRIP_SAMPLES = 3
# Acks and answers reach the event loop a turn apart: a receive out for a task's time less this has been out for it.
SLACK_SECONDS = 0.001


class InFlight(Protocol):
    queue: str
    count: int
    sent: float


class SlotForecast:
    """Per queue: when each message delivered and not yet acked arrived, how long its recent slots stayed busy
    (delivery to ack: dispatch, run, ack; a message that waited unstarted counts its wait too) and how long its
    recent receives that brought messages took. From these, `free_by_return` predicts the busy slots a receive
    sent now will find free on its return, and predicts none unless every recent task of the queue ended within
    its shortest recent round trip and none running now has run longer than that: long tasks get no prediction.
    """

    def __init__(self, clock: Callable[[], float]):
        self._clock = clock
        self._busy: deque[tuple[str, float]] = deque()  # (queue, delivered at), oldest first
        self._runtimes: dict[str, deque[float]] = {}
        self._round_trips: dict[str, deque[float]] = {}

    @property
    def tracked(self) -> int:
        """Messages delivered and not yet acked, as far as this forecast knows."""
        return len(self._busy)

    def delivered(self, queue: str, count: int, *, sent: float) -> None:
        """A receive sent at `sent` came back with `count` messages, now delivered."""
        if count <= 0:
            return
        now = self._clock()
        self._round_trips.setdefault(queue, deque(maxlen=ROUND_TRIP_SAMPLES)).append(now - sent)
        self._busy.extend((queue, now) for _ in range(count))

    def freed(self, queue: str | None, *, busy: int | None) -> None:
        """A message of `queue` (None: unknown) was acked or rejected; `busy`: the slots kombu still counts busy
        (None: unknown), which drops deliveries this forecast never saw end (oldest first)."""
        entry = next((e for e in self._busy if e[0] == queue), None) if queue is not None else None
        if entry is None and self._busy:
            entry = self._busy[0]
        if entry is not None:
            self._busy.remove(entry)
            samples = self._runtimes.setdefault(entry[0], deque(maxlen=RUNTIME_SAMPLES))
            samples.append(self._clock() - entry[1])
        while busy is not None and len(self._busy) > max(busy, 0):
            self._busy.popleft()

    def runtime(self, queue: str) -> float | None:
        samples = self._runtimes.get(queue, ())
        return max(samples) if len(samples) >= MIN_RUNTIME_SAMPLES else None

    def round_trip(self, queue: str) -> tuple[float, float] | None:
        samples = self._round_trips.get(queue, ())
        return (min(samples), max(samples)) if len(samples) >= MIN_ROUND_TRIP_SAMPLES else None

    def free_by_return(self, queue: str, in_flight: Iterable[InFlight]) -> int:
        """The busy slots of `queue` (its running tasks, its receives in flight) predicted free when a receive sent
        now comes back: 0 without enough samples, when its tasks run longer than its shortest round trip, or while
        one of them has run longer than that. A receive in flight counts only if it is not late (younger than the
        longest round trip) and its messages' tasks should end before the new receive's answer (it has been out
        for a task's time)."""
        basis = self._basis(queue)
        if basis is None:
            return 0
        runtime, shortest, longest = basis
        now = self._clock()
        running = [at for q, at in self._busy if q == queue]
        if any(now - at > shortest for at in running):
            return 0
        count = len(running)
        for receive in in_flight:
            # Out for at least a task's time: at the same round trip, its answer comes that much before the new
            # receive's and its tasks end before that one is back. Older than the longest round trip: late, hung
            # perhaps; its slots stay busy.
            if receive.queue == queue and runtime - SLACK_SECONDS <= now - receive.sent <= longest:
                count += receive.count
        return count

    def counts_from(self, queue: str, in_flight: Iterable[InFlight]) -> float | None:
        """When the earliest receive in flight of `queue` that free_by_return does not count yet will count (it
        will have been out a task's time): a look then may find slots to ask for that no ack would show, since the
        tasks of the last answer may all have ended before. None: no such receive, or no prediction for `queue`."""
        basis = self._basis(queue)
        if basis is None:
            return None
        runtime = basis[0]
        now = self._clock()
        due = [r.sent + runtime - SLACK_SECONDS for r in in_flight if r.queue == queue]
        later = [at for at in due if at > now]
        return min(later) if later else None

    def _basis(self, queue: str) -> tuple[float, float, float] | None:
        """(task time, shortest and longest round trip) of `queue`, if it has enough samples and its tasks end within
        its shortest round trip: the only case anything is predicted."""
        runtime, round_trip = self.runtime(queue), self.round_trip(queue)
        if runtime is None or round_trip is None or runtime > round_trip[0]:
            return None
        return runtime, *round_trip
