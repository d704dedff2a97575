"""The fetch pacer: when each queue's receive loop may receive, given the worker's free prefetch slots."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

# With some slots still busy, wait this long for more to free, so one receive fills them together.
FETCH_COALESCE_SECONDS = 0.02


class FetchPacer:
    """Paces the receive loops of one channel by its prefetch slots (kombu's QoS).

    kombu re-checks a loop whose slots are all busy every polling_interval (1 s): with short tasks a worker then
    idles most of each second (prefetch / (interval + round trip) tasks/s). Here a loop that finds no slot free
    waits, parked, and a freed slot resumes it at once (when every slot is free) or `coalesce_seconds` later, so
    tasks that end together share one ReceiveMessage (SQS bills a receive of 1 like a receive of 10). A timer at
    polling_interval stays as the fallback. Exactly one of these resumes a parked queue (`waiting` drops it
    first), so a queue never has two loops, each of which would keep a receive outstanding.

    `hub` returns the event loop (call_soon, call_later); `free_slots` kombu's estimate (None: unlimited);
    `resume(queue)` runs the queue's loop again (the channel's _schedule_queue).
    """

    def __init__(
        self,
        *,
        hub: Callable[[], Any],
        free_slots: Callable[[], int | None],
        prefetch: Callable[[], int | None],
        polling_interval: Callable[[], float],
        resume: Callable[[str], None],
        coalesce_seconds: float = FETCH_COALESCE_SECONDS,
        max_per_receive: int = 10,
    ):
        self._hub, self._free_slots, self._prefetch = hub, free_slots, prefetch
        self._polling_interval, self._resume_loop = polling_interval, resume
        self.coalesce_seconds, self.max_per_receive = coalesce_seconds, max_per_receive
        self._waiting: dict[str, None] = {}  # an ordered set: the longest waiting first
        self._fallback_timers: set[str] = set()  # at most one fallback timer per queue
        self._coalescing = False  # a resume is due coalesce_seconds after the first freed slot
        self._released: set[str] = set()  # queues that may receive for fewer than enough_slots()

    @property
    def waiting(self) -> tuple[str, ...]:
        """The parked queues, the longest waiting first."""
        return tuple(self._waiting)

    def enough_slots(self) -> int:
        """Free slots worth a receive at once: the whole prefetch (a receive takes up to 10)."""
        return max(1, min(self._prefetch() or 1, self.max_per_receive))

    def may_receive(self, queue: str) -> bool:
        """Whether the loop of `queue` receives now; if not, it is parked until slots free."""
        free = self._free_slots()
        if free is None:
            return True
        if free == 0 or (free < self.enough_slots() and queue not in self._released):
            self.park(queue, coalesce=free > 0)
            return False
        self._released.discard(queue)
        return True

    def park(self, queue: str, *, coalesce: bool = False) -> None:
        """Stop the queue's loop until slots free (or the fallback timer, at polling_interval, fires)."""
        self._waiting[queue] = None
        if queue not in self._fallback_timers:
            self._fallback_timers.add(queue)
            self._hub().call_later(self._polling_interval() or 1, self._on_fallback_timer, queue)
        if coalesce:
            self._start_coalescing()

    def slot_freed(self) -> None:
        """A task's message was acked or rejected: resume the waiting loops, at once when every slot is free,
        else coalesce_seconds later."""
        if not self._waiting:
            return
        free = self._free_slots()
        if free is None or free >= self.enough_slots():
            self.resume_waiting(release=False)
        else:
            self._start_coalescing()

    def resume_waiting(self, *, release: bool = True) -> None:
        """Resume, on the event loop, as many waiting loops as there are free slots, longest waiting first (each
        resumed loop receives for every free slot; resuming more would fetch messages no slot can take, and a
        queue parked again goes to the back). `release`: they may receive for fewer than enough_slots()."""
        free = self._free_slots()
        waiting = list(self._waiting)
        for queue in waiting if free is None else waiting[: max(free, 0)]:
            if release:
                self._released.add(queue)
            self._hub().call_soon(self._resume, queue)

    def _start_coalescing(self) -> None:
        if not self._coalescing:
            self._coalescing = True
            self._hub().call_later(self.coalesce_seconds, self._on_coalesce_timer)

    def _on_coalesce_timer(self) -> None:
        self._coalescing = False
        self.resume_waiting(release=True)

    def _on_fallback_timer(self, queue: str) -> None:
        """kombu's own pace: after polling_interval any free slot is worth a receive."""
        self._fallback_timers.discard(queue)
        if queue in self._waiting:
            self._released.add(queue)
            self._resume(queue)

    def _resume(self, queue: str) -> None:
        if queue in self._waiting:
            del self._waiting[queue]
            self._resume_loop(queue)
