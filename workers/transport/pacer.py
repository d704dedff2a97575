"""The fetch pacer: when each queue's receive loop may receive, and for how many of the worker's prefetch slots."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from workers.transport.slot_forecast import SlotForecast

# With some slots still busy, wait this long for more to free, so one receive fills them together.
FETCH_COALESCE_SECONDS = 0.02
# A slot that frees while a receive of its hot queue is in flight waits this long (or until that receive's answer,
# whichever first) for more slots to free, so they share one receive ahead (WORKER_RECEIVE_AHEAD_COALESCE_MS).
AHEAD_COALESCE_SECONDS = 0.005
# A receive whose answer never came (a bug, a lost callback) stops holding its slots this long after it went out:
# kombu's async client answers within its read timeout, so this is only a safety net.
RESERVATION_GRACE_SECONDS = 60.0
COUNTS_LATE_SECONDS = 0.001


@dataclass(eq=False)
class Reservation:
    """Slots a receive in flight asked for: no other receive asks for them until it is answered."""

    queue: str
    count: int
    expires: float
    ahead: bool = False  # a receive ahead (not the queue's loop, which kombu's _loop1 runs again itself)
    sent: float = 0.0  # when it went out (the pacer's clock)


class FetchPacer:
    """Paces the receive loops of one channel by its prefetch slots (kombu's QoS).

    kombu re-checks a loop whose slots are all busy every polling_interval (1 s): with short tasks a worker then
    idles most of each second (prefetch / (interval + round trip) tasks/s). Here a loop that finds no slot free
    waits, parked, and a freed slot resumes it at once (when every slot is free) or `coalesce_seconds` later, so
    tasks that end together share one ReceiveMessage (SQS bills a receive of 1 like a receive of 10). A timer at
    polling_interval stays as the fallback. Exactly one of these resumes a parked queue (`waiting` drops it
    first), so a queue never has two loops, each of which would keep a receive outstanding.

    With `receive_ahead` (a callable sending one extra receive: the channel's) a queue whose last answer brought
    messages ("hot") does not wait for its loop's receive to come back: a slot that frees while that receive is
    in flight gets a receive of its own, so at a round trip of 15 ms the next message is already on its way while
    the other tasks run. That receive waits up to `ahead_coalesce_seconds` (or until the queue's receive in flight
    is answered, whichever first) for more slots to free and share it: eager, it was nearly one receive per task.
    Every receive in flight holds the slots it asked for (a Reservation), and no receive asks for more than the
    slots free and not held, so the worker never receives a message no slot can start at once: prefetch 1 still
    means no message held unstarted. A queue whose answer was empty is cold again: only its loop polls it (one
    long poll at a time), so an idle worker costs what it did.

    With `forecast` (a SlotForecast), a hot queue's receive also asks for the busy slots predicted free by the time
    it comes back: while its tasks are shorter than its round trip, the next receive goes out while they run, not
    after. A prediction that misses leaves messages held unstarted (reserved: covered by the visibility heartbeat,
    handed back at SIGTERM), so the receives in flight never ask for more than would leave `max_held` (default:
    the prefetch) held if every one came back full and no task ended; a queue whose tasks run longer than its
    round trip, or one of them does now, gets no prediction: it receives only for free slots, as without one; so
    does a queue `may_predict` refuses (the channel's: one without a visibility heartbeat, whose held message could
    outlive its visibility timeout behind a long task).

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
        receive_ahead: Callable[[Reservation], bool] | None = None,
        wait_seconds: Callable[[], float] = lambda: 20,
        coalesce_seconds: float = FETCH_COALESCE_SECONDS,
        ahead_coalesce_seconds: float = AHEAD_COALESCE_SECONDS,
        max_per_receive: int = 10,
        clock: Callable[[], float] = time.monotonic,
        forecast: SlotForecast | None = None,
        max_held: Callable[[], int] | None = None,
        may_predict: Callable[[str], bool] = lambda queue: True,
    ):
        self._hub, self._free_slots, self._prefetch = hub, free_slots, prefetch
        self._polling_interval, self._resume_loop = polling_interval, resume
        self._receive_ahead, self._wait_seconds, self._clock = receive_ahead, wait_seconds, clock
        self.coalesce_seconds, self.max_per_receive = coalesce_seconds, max_per_receive
        self.ahead_coalesce_seconds = ahead_coalesce_seconds
        self._forecast = forecast if receive_ahead is not None else None
        self._max_held = max_held or (lambda: self._prefetch() or 0)
        self._may_predict = may_predict
        self._waiting: dict[str, None] = {}  # an ordered set: the longest waiting first
        self._fallback_timers: set[str] = set()  # at most one fallback timer per queue
        self._coalescing = False  # a resume is due coalesce_seconds after the first freed slot
        self._released: set[str] = set()  # queues that may receive for fewer than enough_slots()
        self._reservations: list[Reservation] = []
        self._hot: set[str] = set()  # queues whose last answer brought messages
        self._ahead_due = False  # a receive-ahead pass is scheduled on the event loop
        self._ahead_timer = False  # a pass is due ahead_coalesce_seconds after a slot freed beside a receive
        self._counts_at: float | None = None  # a look is due when a receive in flight starts to count (forecast)

    @property
    def waiting(self) -> tuple[str, ...]:
        """The parked queues, the longest waiting first."""
        return tuple(self._waiting)

    @property
    def in_flight(self) -> tuple[Reservation, ...]:
        """The receives in flight that hold slots (receive-ahead only)."""
        return tuple(self._live())

    def enough_slots(self) -> int:
        """Free slots worth a receive at once: the whole prefetch (a receive takes up to 10)."""
        return max(1, min(self._prefetch() or 1, self.max_per_receive))

    def may_receive(self, queue: str) -> bool:
        """Whether the loop of `queue` receives now; if not, it is parked until slots free."""
        free = self._available(queue)
        if free is None:
            return True
        if free <= 0:
            self.park(queue, coalesce=False)
            return False
        hot = self._receive_ahead is not None and queue in self._hot
        if free < self.enough_slots() and queue not in self._released and not hot:
            self.park(queue, coalesce=True)
            return False
        if queue not in self._released and self._too_few_beside_a_receive(queue, free):
            self.park(queue, coalesce=False)
            return False
        self._released.discard(queue)
        return True

    def reserve(self, queue: str) -> Reservation | None:
        """The slots the loop's receive of `queue`, going out now, asks for (None: receive-ahead is off, kombu
        counts)."""
        if self._receive_ahead is None:
            return None
        free = self._available(queue)
        count = self.max_per_receive if free is None else max(1, min(free, self.max_per_receive))
        return self._hold(queue, count)

    def answered(self, reservation: Reservation | None, fetched: int) -> None:
        """A receive came back (with `fetched` messages, now delivered and counted by the QoS): its slots are no
        longer held, the queue is hot or cold, and any slot still free and unasked gets a receive ahead."""
        if reservation is None:
            return
        if reservation in self._reservations:
            self._reservations.remove(reservation)
        if self._forecast is not None:
            self._forecast.delivered(reservation.queue, fetched, sent=reservation.sent)
        if fetched:
            self._hot.add(reservation.queue)
        else:
            self._hot.discard(reservation.queue)
        if fetched and reservation.ahead:
            self._ahead_soon()

    def park(self, queue: str, *, coalesce: bool = False) -> None:
        """Stop the queue's loop until slots free (or the fallback timer, at polling_interval, fires)."""
        self._waiting[queue] = None
        self._look_when_a_receive_counts(queue)
        if queue not in self._fallback_timers:
            self._fallback_timers.add(queue)
            self._hub().call_later(self._polling_interval() or 1, self._on_fallback_timer, queue)
        if coalesce:
            self._start_coalescing()

    def cool(self, queue: str) -> None:
        """No receives ahead for `queue` until its loop's answer brings messages again (the gate closed)."""
        self._hot.discard(queue)

    def slot_freed(self, queue: str | None = None) -> None:
        """A task's message (of `queue`, if known) was acked or rejected: resume the waiting loops, at once when
        every slot is free (or the queue is hot), else coalesce_seconds later; and receive ahead for the hot
        queues."""
        if self._forecast is not None:
            free, prefetch = self._free_slots(), self._prefetch()
            self._forecast.freed(queue, busy=None if free is None or not prefetch or free <= 0 else prefetch - free)
        if self._waiting:
            free = self._free_slots()
            hot_waiting = self._receive_ahead is not None and any(q in self._hot for q in self._waiting)
            if free is None or free >= self.enough_slots() or hot_waiting:
                self.resume_waiting(release=False)  # a hot queue receives for any free slot (may_receive)
            else:
                self._start_coalescing()
        if self._receive_ahead is not None and self._hot:
            self._ahead_soon()  # after the resumed loops (call_soon runs in order): they come first

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

    # --- receive ahead ------------------------------------------------------------------------------------

    def _ahead_soon(self) -> None:
        """One pass on the event loop after the acks of this turn: tasks that end together share a receive."""
        if not self._ahead_due:
            self._ahead_due = True
            self._hub().call_soon(self._receive_ahead_pass)

    def _on_ahead_timer(self) -> None:
        self._ahead_timer = False
        self._receive_ahead_pass(coalesce=False)

    def _receive_ahead_pass(self, *, coalesce: bool = True) -> None:
        """A receive ahead for each hot queue's free, unasked slots. While a receive of that queue is still out
        (`coalesce`), wait up to ahead_coalesce_seconds first: more slots may free by then, or its answer come
        (answered() runs a pass at once), and one receive serves them all (SQS bills each request)."""
        self._ahead_due = False
        if self._receive_ahead is None or any(q not in self._hot for q in self._waiting):
            return  # a queue waiting for a slot (another queue, or one gone cold) has the first claim on it
        for queue in sorted(self._hot):
            if queue in self._waiting:
                continue  # its loop is parked: resuming it is the receive
            free = self._available(queue)
            if free is None or free <= 0:
                self._look_when_a_receive_counts(queue)
                return
            if self._too_few_beside_a_receive(queue, free):
                self._look_when_a_receive_counts(queue)
                continue
            if coalesce and self.ahead_coalesce_seconds > 0 and any(r.queue == queue for r in self._live()):
                if not self._ahead_timer:
                    self._ahead_timer = True
                    self._hub().call_later(self.ahead_coalesce_seconds, self._on_ahead_timer)
                continue
            reservation = self._hold(queue, min(free, self.max_per_receive), ahead=True)
            if not self._receive_ahead(reservation):
                self._reservations.remove(reservation)
                self._hot.discard(queue)

    def _look_when_a_receive_counts(self, queue: str) -> None:
        """With a forecast, a hot queue that cannot ask for slots now may once a receive in flight has been out a
        task's time (its tasks then end before a receive sent then is back). Acks and answers are what make the
        pacer look again; by then the last answer's tasks have often all ended, and nothing would: one receive
        out at a time, where the bound allows two. One timer at a time, at the earliest such moment."""
        if self._forecast is None or queue not in self._hot:
            return
        at = self._forecast.counts_from(queue, self._live())
        if at is None or (self._counts_at is not None and self._counts_at <= at):
            return
        self._counts_at = at
        # (a moment after: a timer may fire a hair early, and the receive would not count yet)
        self._hub().call_later(max(at - self._clock(), 0.0) + COUNTS_LATE_SECONDS, self._on_receive_counts, at)

    def _on_receive_counts(self, at: float) -> None:
        if self._counts_at != at:
            return  # an earlier look was set after this one and has run (it sets the next)
        self._counts_at = None
        for queue in list(self._waiting):
            if queue in self._hot and (self._available(queue) or 0) > 0:
                self._hub().call_soon(self._resume, queue)  # its loop receives (may_receive decides how many)
        self._ahead_soon()

    # --- slot accounting ----------------------------------------------------------------------------------

    def _live(self) -> list[Reservation]:
        now = self._clock()
        self._reservations = [r for r in self._reservations if r.expires > now]
        return self._reservations

    def _available(self, queue: str) -> int | None:
        """Free slots not held by a receive in flight of this queue or of a hot one. A cold queue's long poll
        (an idle queue's) holds nothing against the others, as in kombu: each queue's loop asks for the free
        slots."""
        free = self._free_slots()
        if free is None or self._receive_ahead is None:
            return free
        live = self._live()
        available = free - sum(r.count for r in live if r.queue == queue or r.queue in self._hot)
        if self._forecast is None or queue not in self._hot or not self._may_predict(queue):
            return available
        predicted = self._forecast.free_by_return(queue, live)
        if predicted <= 0:
            return available
        # If every receive in flight came back full and no task ended, at most max_held messages wait unstarted.
        prefetch = self._prefetch() or 0
        delivered = max(prefetch - free, self._forecast.tracked) if free <= 0 else prefetch - free
        room = prefetch + self._max_held() - delivered - sum(r.count for r in live)
        return max(available, min(available + predicted, room))

    def _too_few_beside_a_receive(self, queue: str, free: int) -> bool:
        """While predictions are made for `queue` and one of its receives is in flight (its answer brings work), a
        receive waits until it can ask for enough_slots(): small receives ahead would multiply the requests."""
        if self._forecast is None or free >= self.enough_slots() or not self._may_predict(queue):
            return False
        live = self._live()
        return any(r.queue == queue for r in live) and self._forecast.free_by_return(queue, live) > 0

    def _hold(self, queue: str, count: int, *, ahead: bool = False) -> Reservation:
        now = self._clock()
        reservation = Reservation(queue, count, now + self._wait_seconds() + RESERVATION_GRACE_SECONDS, ahead, now)
        self._reservations.append(reservation)
        return reservation

    # --- timers -------------------------------------------------------------------------------------------

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
