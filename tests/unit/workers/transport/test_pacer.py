"""Unit tests of workers/transport/pacer.py: when a queue's receive loop may receive, on a virtual-clock loop."""

from __future__ import annotations

import itertools

import pytest

from tests.unit.workers.conftest import RecordingHub
from workers.transport.pacer import AHEAD_COALESCE_SECONDS, FETCH_COALESCE_SECONDS, FetchPacer, Reservation
from workers.transport.slot_forecast import SlotForecast

POLLING_INTERVAL = 1.0


class Slots:
    """A worker's prefetch slots, as kombu's QoS counts them."""

    def __init__(self, prefetch: int):
        self.prefetch, self.busy = prefetch, 0

    @property
    def free(self) -> int:
        return self.prefetch - self.busy


@pytest.fixture
def make_pacer():
    def make(prefetch: int = 1, *, ahead: list | None = None, clock=None, ahead_coalesce: float | None = None):
        hub, slots, resumed = RecordingHub(), Slots(prefetch), []

        def receive_ahead(reservation):
            ahead.append(reservation)
            return True

        def resume(queue):
            """kombu's loop, resumed: it asks the pacer, then receives for the slots reserved."""
            resumed.append(queue)
            if pacer.may_receive(queue):
                pacer.reserve(queue)

        pacer = FetchPacer(
            hub=lambda: hub,
            free_slots=lambda: slots.free,
            prefetch=lambda: slots.prefetch,
            polling_interval=lambda: POLLING_INTERVAL,
            resume=resume,
            receive_ahead=receive_ahead if ahead is not None else None,
            **({"clock": clock} if clock else {}),
            **({"ahead_coalesce_seconds": ahead_coalesce} if ahead_coalesce is not None else {}),
        )
        return pacer, hub, slots, resumed

    return make


def loop_receives(pacer, slots, queue: str = "default"):
    """The queue's loop comes round and receives (kombu's _schedule_queue, then _get_bulk_async): its reservation."""
    assert pacer.may_receive(queue)
    return pacer.reserve(queue)


def hot_and_running(pacer, slots, busy: int) -> None:
    """The loop receives and its answer brings `busy` messages, all running now: the queue is hot."""
    first = loop_receives(pacer, slots)
    slots.busy = busy
    pacer.answered(first, fetched=busy)


def test_a_worker_with_every_slot_free_receives_at_once(make_pacer):
    # GIVEN four slots, all free
    pacer, _hub, _slots, _resumed = make_pacer(prefetch=4)
    # WHEN a loop asks THEN it receives now, and nothing waits
    assert pacer.may_receive("default")
    assert pacer.waiting == ()


def test_a_busy_worker_waits_and_the_freed_slot_resumes_the_loop_at_once(make_pacer):
    # GIVEN one slot, busy with a running task
    pacer, hub, slots, resumed = make_pacer(prefetch=1)
    slots.busy = 1
    # WHEN the loop comes round
    assert not pacer.may_receive("default")
    # THEN it waits
    assert pacer.waiting == ("default",)
    # WHEN the task ends and the event loop runs (no time passes)
    slots.busy = 0
    pacer.slot_freed()
    hub.advance(0)
    # THEN the loop runs again at once, not a polling_interval later, and waits no more
    assert resumed == ["default"]
    assert pacer.waiting == ()
    # AND the fallback timer, when its time comes, resumes nothing more: one loop per queue
    hub.advance(POLLING_INTERVAL)
    assert resumed == ["default"]


def test_a_loop_asking_twice_while_busy_is_resumed_once(make_pacer):
    # GIVEN a busy slot and a loop that came round twice
    pacer, hub, slots, resumed = make_pacer(prefetch=1)
    slots.busy = 1
    assert not pacer.may_receive("default")
    assert not pacer.may_receive("default")
    # WHEN nothing frees for a polling_interval
    hub.advance(POLLING_INTERVAL)
    # THEN kombu's own pace: the loop is resumed once, to look again, and parks again with one timer
    assert resumed == ["default"]
    assert pacer.waiting == ("default",)
    assert len(hub.later) == 1


def test_one_free_slot_of_four_waits_briefly_for_company_then_receives(make_pacer):
    # GIVEN four busy slots and a waiting loop
    pacer, hub, slots, resumed = make_pacer(prefetch=4)
    slots.busy = 4
    assert not pacer.may_receive("default")
    # WHEN one task ends
    slots.busy = 3
    pacer.slot_freed()
    hub.advance(FETCH_COALESCE_SECONDS / 2)
    # THEN no receive for one slot yet
    assert resumed == []
    # WHEN the short wait ends with nothing else freed
    hub.advance(FETCH_COALESCE_SECONDS / 2)
    # THEN the loop is resumed, and receives for the lone slot (it waits no more)
    assert resumed == ["default"]
    assert pacer.waiting == ()


def test_slots_that_free_together_share_one_receive(make_pacer):
    # GIVEN four busy slots and a waiting loop
    pacer, hub, slots, resumed = make_pacer(prefetch=4)
    slots.busy = 4
    assert not pacer.may_receive("default")
    # WHEN all four end within the short wait
    for busy in (3, 2, 1, 0):
        slots.busy = busy
        pacer.slot_freed()
    hub.advance(0)
    # THEN the loop is resumed at once, once
    assert resumed == ["default"]
    hub.advance(FETCH_COALESCE_SECONDS)
    assert resumed == ["default"]


def test_one_free_slot_resumes_only_the_queue_that_waited_longest(make_pacer):
    # GIVEN two queues waiting behind one busy slot, `high_priority` first
    pacer, hub, slots, resumed = make_pacer(prefetch=1)
    slots.busy = 1
    assert not pacer.may_receive("high_priority")
    assert not pacer.may_receive("default")
    # WHEN the slot frees
    slots.busy = 0
    pacer.slot_freed()
    hub.advance(0)
    # THEN only the longest-waiting queue runs; the other keeps waiting
    assert resumed == ["high_priority"]
    assert pacer.waiting == ("default",)


def test_a_parked_queue_resumes_only_when_told(make_pacer):
    # GIVEN a queue parked from outside (the dependency gate), every slot free
    pacer, hub, _slots, resumed = make_pacer(prefetch=4)
    pacer.park("default")
    # THEN it waits, free slots or not
    assert pacer.waiting == ("default",)
    assert resumed == []
    # WHEN told to resume (the gate reopened)
    pacer.resume_waiting()
    hub.advance(0)
    assert resumed == ["default"]
    # AND the resumed loop receives for whatever is free (it waits no more)
    assert pacer.waiting == ()


# --- receive ahead (issue L item 2) -------------------------------------------------------------------------


def hot_with_loop_receive_out(make_pacer, *, busy: int, **kwargs):
    """Four slots, a hot queue (its last receive brought messages) running `busy` tasks, its loop's receive out for
    the rest."""
    ahead: list = []
    pacer, hub, slots, resumed = make_pacer(prefetch=4, ahead=ahead, **kwargs)
    hot_and_running(pacer, slots, busy)
    loop = loop_receives(pacer, slots)
    assert loop.count == 4 - busy
    return pacer, hub, slots, ahead, loop


def test_a_slot_freed_while_the_loops_receive_is_in_flight_gets_a_receive_within_the_coalesce_window(make_pacer):
    # GIVEN a hot queue running 3 tasks, its loop's receive for the fourth slot in flight
    pacer, hub, slots, ahead, _loop = hot_with_loop_receive_out(make_pacer, busy=3)
    # WHEN one task ends, while the other two still run and the loop's receive is still out
    slots.busy = 2
    pacer.slot_freed()
    hub.advance(0)
    # THEN nothing goes out at once (another slot may free and share the receive)
    assert ahead == []
    # AND once the short window has passed, a receive for that one slot goes out beside the loop's
    hub.advance(AHEAD_COALESCE_SECONDS)
    assert [(r.queue, r.count) for r in ahead] == [("default", 1)]
    assert sorted(r.count for r in pacer.in_flight) == [1, 1]


def test_without_a_coalesce_window_a_slot_freed_while_a_receive_is_out_gets_one_at_once(make_pacer):
    # GIVEN the window off (0), a hot queue running 3 tasks, its loop's receive for the fourth slot in flight
    pacer, hub, slots, ahead, _loop = hot_with_loop_receive_out(make_pacer, busy=3, ahead_coalesce=0)
    # WHEN one task ends
    slots.busy = 2
    pacer.slot_freed()
    hub.advance(0)
    # THEN a receive for that one slot goes out at once
    assert [(r.queue, r.count) for r in ahead] == [("default", 1)]


def test_slots_freed_a_moment_apart_while_a_receive_is_out_share_one_receive_ahead(make_pacer):
    # GIVEN a hot queue running 3 tasks, its loop's receive for the fourth slot in flight
    pacer, hub, slots, ahead, _loop = hot_with_loop_receive_out(make_pacer, busy=3)
    # WHEN two tasks end a moment apart (in different turns of the event loop), within the window
    slots.busy = 2
    pacer.slot_freed()
    hub.advance(AHEAD_COALESCE_SECONDS / 3)
    slots.busy = 1
    pacer.slot_freed()
    hub.advance(AHEAD_COALESCE_SECONDS)
    # THEN one receive ahead asks for both slots
    assert [r.count for r in ahead] == [2]
    assert sorted(r.count for r in pacer.in_flight) == [1, 2]


def test_a_slot_freed_while_a_receive_is_out_goes_with_its_answer_if_that_comes_first(make_pacer):
    # GIVEN a hot queue running 2 tasks, its loop's receive out for 2 slots, and a receive ahead out for a third
    # slot freed since (the loop's answered with 2 messages: 3 tasks run, only the receive ahead is out)
    pacer, hub, slots, ahead, loop = hot_with_loop_receive_out(make_pacer, busy=2)
    slots.busy = 1
    pacer.slot_freed()
    hub.advance(0)
    hub.advance(AHEAD_COALESCE_SECONDS)
    assert [r.count for r in ahead] == [1]
    slots.busy = 3
    pacer.answered(loop, fetched=2)
    # WHEN a task ends, and the receive ahead comes back with a message before the window ends
    slots.busy = 2
    pacer.slot_freed()
    hub.advance(0)
    assert [r.count for r in ahead] == [1]
    slots.busy = 3
    pacer.answered(ahead[0], fetched=1)
    hub.advance(0)
    # THEN the freed slot's receive goes out at once, with the answer
    assert [r.count for r in ahead] == [1, 1]
    # AND the window's end sends nothing more (no slot is left unasked)
    hub.advance(AHEAD_COALESCE_SECONDS)
    assert [r.count for r in ahead] == [1, 1]
    assert sum(r.count for r in pacer.in_flight) == 1


def test_a_slot_freed_with_no_receive_out_gets_a_receive_at_once(make_pacer):
    # GIVEN a hot queue whose four tasks run and whose loop waits (parked, nothing in flight)
    ahead = []
    pacer, hub, slots, resumed = make_pacer(prefetch=4, ahead=ahead)
    hot_and_running(pacer, slots, 4)
    assert not pacer.may_receive("default")
    # WHEN one task ends
    slots.busy = 3
    pacer.slot_freed()
    hub.advance(0)
    # THEN the loop is resumed at once and receives for the slot: no window when nothing is on its way
    assert resumed == ["default"]
    assert [r.count for r in pacer.in_flight] == [1]


def test_prefetch_1_never_holds_an_unstarted_message_with_the_window(make_pacer):
    # GIVEN one slot and a hot queue whose task runs, its loop parked
    ahead = []
    pacer, hub, slots, _resumed = make_pacer(prefetch=1, ahead=ahead)
    hot_and_running(pacer, slots, 1)
    assert not pacer.may_receive("default")
    # WHEN the task ends, slot-freed events repeat, and the window passes again and again
    slots.busy = 0
    for _ in range(3):
        pacer.slot_freed()
        hub.advance(AHEAD_COALESCE_SECONDS)
    # THEN one receive for the one slot is out, never two
    assert sum(r.count for r in pacer.in_flight) == 1


def test_receives_in_flight_never_ask_for_more_than_the_free_slots(make_pacer):
    # GIVEN one slot (prefetch 1: the worker holds no message it has not started) and a hot queue
    ahead = []
    pacer, hub, slots, _resumed = make_pacer(prefetch=1, ahead=ahead)
    hot_and_running(pacer, slots, 1)
    # WHEN the loop comes round while the task runs, and slot-freed events come in any number
    assert not pacer.may_receive("default")
    slots.busy = 0
    for _ in range(3):
        pacer.slot_freed()
    hub.advance(0)
    # THEN exactly one receive, for the one slot, is out: the resumed loop's or one ahead, never both
    assert sum(r.count for r in pacer.in_flight) == 1


def test_tasks_that_end_in_the_same_turn_share_one_receive_ahead(make_pacer):
    # GIVEN four busy slots of a hot queue whose loop's receive is out for none (all held)
    ahead = []
    pacer, hub, slots, _resumed = make_pacer(prefetch=4, ahead=ahead)
    hot_and_running(pacer, slots, 4)
    # WHEN three tasks end before the event loop turns
    for busy in (3, 2, 1):
        slots.busy = busy
        pacer.slot_freed()
    hub.advance(0)
    # THEN one receive asks for the three slots (the parked loop, resumed, asks for them; nothing ahead)
    assert sum(r.count for r in pacer.in_flight) == 3
    assert len(pacer.in_flight) == 1


def test_a_cold_queue_gets_no_receive_ahead(make_pacer):
    # GIVEN four slots and a queue whose last answer was empty (idle): its loop long-polls for all four
    ahead = []
    pacer, hub, slots, _resumed = make_pacer(prefetch=4, ahead=ahead)
    first = loop_receives(pacer, slots)
    pacer.answered(first, fetched=0)
    loop_receives(pacer, slots)
    # WHEN slots free and free (a task of another queue ends)
    pacer.slot_freed()
    hub.advance(POLLING_INTERVAL)
    # THEN nothing more goes out: one long poll per idle queue, as before
    assert ahead == []
    assert len(pacer.in_flight) == 1


def test_an_answer_short_of_what_it_asked_gives_the_slots_back(make_pacer):
    # GIVEN a hot queue: 3 tasks running, the loop's receive out for the fourth slot
    ahead = []
    pacer, hub, slots, _resumed = make_pacer(prefetch=4, ahead=ahead)
    hot_and_running(pacer, slots, 3)
    loop_receives(pacer, slots)
    # AND two tasks end together: a receive ahead for their 2 slots
    slots.busy = 1
    pacer.slot_freed()
    hub.advance(0)
    hub.advance(AHEAD_COALESCE_SECONDS)
    assert [r.count for r in ahead] == [2]
    # WHEN that receive brings one message
    slots.busy = 2
    pacer.answered(ahead[0], fetched=1)
    hub.advance(0)
    hub.advance(AHEAD_COALESCE_SECONDS)
    # THEN the slot it did not fill is asked for again, ahead (the loop's receive still holds its own)
    assert [r.count for r in ahead] == [2, 1]
    assert sorted(r.count for r in pacer.in_flight) == [1, 1]


def test_a_receive_never_answered_stops_holding_its_slots(make_pacer):
    # GIVEN a hot queue whose loop's receive is never answered (a lost callback)
    clock = [0.0]
    ahead = []
    pacer, hub, slots, _resumed = make_pacer(prefetch=1, ahead=ahead, clock=lambda: clock[0])
    loop_receives(pacer, slots)
    assert not pacer.may_receive("default")
    # WHEN the long poll's wait and the grace have passed
    clock[0] += 20 + 61
    # THEN its slot is free to receive for again
    assert pacer.may_receive("default")


def test_without_receive_ahead_there_is_one_receive_per_queue_at_a_time(make_pacer):
    # GIVEN receive-ahead off (WORKER_RECEIVE_AHEAD=0) and four slots, 3 busy after the last receive
    pacer, hub, slots, resumed = make_pacer(prefetch=4)
    assert pacer.reserve("default") is None  # kombu counts the slots itself
    slots.busy = 3
    assert not pacer.may_receive("default")  # one free slot: wait for company first
    # WHEN one more ends THEN nothing goes out before the short wait ends
    slots.busy = 2
    pacer.slot_freed()
    hub.advance(0)
    assert resumed == []
    hub.advance(FETCH_COALESCE_SECONDS)
    assert resumed == ["default"]


def test_a_queue_waiting_for_a_slot_is_not_starved_by_another_queues_receives_ahead(make_pacer):
    # GIVEN 4 slots: `default` hot, running 3 tasks with its loop's receive out for the 4th, and `high_priority`
    # idle, its loop waiting for a slot
    ahead = []
    pacer, hub, slots, resumed = make_pacer(prefetch=4, ahead=ahead)
    hot_and_running(pacer, slots, 3)
    loop_receives(pacer, slots)
    assert not pacer.may_receive("high_priority")
    # WHEN one of default's tasks ends
    slots.busy = 2
    pacer.slot_freed()
    hub.advance(FETCH_COALESCE_SECONDS)
    # THEN the waiting queue gets the slot; default receives nothing ahead of it
    assert resumed == ["high_priority"]
    assert ahead == []


# --- receive for the slots predicted free (issue L item 2) ---------------------------------------------------


class SimulatedWorker:
    """One queue always holding messages, a pool of `prefetch` children, receives answered after `round_trip(now)`
    (None: never) with all they asked for (or nothing, `throttled(now)`), each task ending `runtime(now)` after it
    starts; a message delivered while every child is busy waits, held unstarted. kombu's loop receives again at
    once after an answer with messages, a polling_interval after an empty one. Runs on the recording hub's clock."""

    TICK = 0.001

    def __init__(
        self,
        *,
        prefetch=4,
        predict=True,
        runtime=lambda now: 0.005,
        round_trip=lambda now: 0.02,
        throttled=lambda now: False,
        heartbeat=True,
    ):
        self.hub, self.slots = RecordingHub(), Slots(prefetch)
        self.runtime, self.round_trip, self.throttled = runtime, round_trip, throttled
        self.running: list[float] = []  # end times
        self.held = 0  # delivered, waiting for a child
        self.out: list[tuple] = []  # (reservation, answer due or None)
        self.sent: list[tuple[float, int]] = []  # (when, count) of every receive
        self.done = self.max_held = 0
        self.pacer = FetchPacer(
            hub=lambda: self.hub,
            free_slots=lambda: max(self.slots.prefetch - len(self.running) - self.held, 0),
            prefetch=lambda: self.slots.prefetch,
            polling_interval=lambda: POLLING_INTERVAL,
            resume=self.loop,
            receive_ahead=self.send,
            clock=lambda: self.hub.now,
            forecast=SlotForecast(lambda: self.hub.now) if predict else None,
            may_predict=lambda queue: heartbeat,
        )
        self.hub.call_soon(self.loop, "default")

    def send(self, reservation) -> bool:
        due = self.round_trip(self.hub.now)
        self.out.append((reservation, None if due is None else self.hub.now + due))
        self.sent.append((self.hub.now, reservation.count))
        return True

    def loop(self, queue="default"):
        if self.pacer.may_receive(queue):
            self.send(self.pacer.reserve(queue))

    def run(self, seconds: float) -> None:
        for _ in range(round(seconds / self.TICK)):
            self.hub.advance(self.TICK)
            now = self.hub.now + 1e-9
            for ended in [t for t in self.running if t <= now]:
                self.running.remove(ended)
                self.done += 1
                self._start_held()
                self.pacer.slot_freed("default")
                self.hub.advance(0)
            for entry in [e for e in self.out if e[1] is not None and e[1] <= now]:
                self.out.remove(entry)
                reservation = entry[0]
                fetched = 0 if self.throttled(self.hub.now) else reservation.count
                self.held += fetched
                self._start_held()
                self.max_held = max(self.max_held, self.held)
                self.pacer.answered(reservation, fetched)
                if not reservation.ahead:  # kombu's _loop1
                    if fetched:
                        self.hub.call_soon(self.loop, "default")
                    else:
                        self.hub.call_later(POLLING_INTERVAL, self.loop, "default")
                self.hub.advance(0)

    def _start_held(self) -> None:
        while self.held and len(self.running) < self.slots.prefetch:
            self.held -= 1
            self.running.append(self.hub.now + self.runtime(self.hub.now))

    def sent_between(self, start: float, end: float) -> int:
        return sum(count for at, count in self.sent if start <= at < end)


def test_tasks_shorter_than_the_round_trip_get_receives_for_the_slots_that_will_be_free(make_pacer):
    # GIVEN 4 slots, tasks of 5 ms and receives of 20 ms, with and without the forecast
    before, after = SimulatedWorker(predict=False), SimulatedWorker(predict=True)
    # WHEN each drains for 2 s
    before.run(2.0)
    after.run(2.0)
    # THEN with the forecast the next receive goes out while the tasks run: well over 1.5x the tasks
    assert after.done > 1.5 * before.done, (after.done, before.done)
    # AND no more messages waited unstarted than the prefetch (4; here none: every prediction came true), and
    # without the forecast none ever do
    assert after.max_held <= 4
    assert before.max_held == 0


def every_nth_slower(usual: float, slower: float, n: int):
    """Task times: `usual`, but every n-th task takes `slower` (the forecast's task time is its slowest recent one)."""
    started = itertools.count()
    return lambda now: slower if next(started) % n == 0 else usual


def receives_in_flight(worker: SimulatedWorker, round_trip: float, seconds: float) -> float:
    """Receives out at once, on average over the run (each is out one round trip)."""
    return len(worker.sent) * round_trip / seconds


def test_a_receive_out_for_a_task_time_gets_the_next_one_sent_without_waiting_for_an_ack(make_pacer):
    # GIVEN 4 slots and receives of 50 ms; tasks of 5 ms but every 10th of 15 ms, so the forecast counts a receive
    # in flight only once it has been out 15 ms, and by then the tasks of the last answer have often all ended: no
    # ack is left to look again (at 15 ms added on the emulator: 0.94 receives out on average, where 2 fit)
    worker = SimulatedWorker(runtime=every_nth_slower(0.005, 0.015, 10), round_trip=lambda now: 0.05)
    # WHEN it drains for 3 s
    worker.run(3.0)
    # THEN the next receive goes out once the one in flight has been out a task time (before: 1.40 out, 107/s)
    assert receives_in_flight(worker, 0.05, 3.0) > 1.5, receives_in_flight(worker, 0.05, 3.0)
    assert worker.done / 3.0 > 115, worker.done / 3.0  # 8 slots per round trip and task: at most 143/s
    # AND no more messages waited unstarted than the prefetch
    assert worker.max_held <= 4


def test_looks_set_for_receives_that_hang_stay_within_the_bound_and_stop(make_pacer):
    # GIVEN a warmed worker whose receives take 50 ms and whose tasks take 30 ms (the forecast counts a receive
    # in flight after 30 ms), all answered
    worker = SimulatedWorker(runtime=lambda now: 0.03, round_trip=lambda now: 0.05)
    worker.run(1.0)
    # WHEN the receives stop coming back (hung) for 2 s
    worker.round_trip = lambda now: None
    worker.run(2.0)
    # THEN the looks set for them asked for no more than the bound allows: at most 8 slots' worth out or held
    hung = sum(r.count for r, due in worker.out if due is None)
    assert 0 < hung <= 8
    assert worker.max_held <= 4
    # AND nothing is left scheduled beyond the loop's fallback timers (no look re-arming itself forever)
    assert len(worker.hub._due) <= 2, worker.hub._due


def test_tasks_longer_than_the_round_trip_behave_as_without_a_forecast(make_pacer):
    # GIVEN tasks of 50 ms, receives of 20 ms
    before = SimulatedWorker(predict=False, runtime=lambda now: 0.05)
    after = SimulatedWorker(predict=True, runtime=lambda now: 0.05)
    # WHEN each drains for 2 s
    before.run(2.0)
    after.run(2.0)
    # THEN no message ever waited unstarted, and the receives went out exactly as without the forecast
    assert after.max_held == 0
    assert after.sent == before.sent
    assert after.done == before.done


def test_a_task_that_suddenly_runs_long_stops_the_prediction_within_a_round_trip(make_pacer):
    # GIVEN a worker warmed on 5 ms tasks, whose tasks take 5 s from t = 1 s on
    worker = SimulatedWorker(runtime=lambda now: 0.005 if now < 1.0 else 5.0)
    worker.run(1.0)
    assert worker.sent_between(0.5, 1.0) > 0
    # WHEN the long tasks run
    worker.run(3.0)
    # THEN at most the prefetch's worth of messages waited unstarted behind them (the bound of a miss)
    assert worker.max_held <= 4
    # AND once the first long task had run one round trip (plus the receive in flight) nothing more went out:
    # every slot busy with a long task is busy, not predicted free
    assert worker.sent_between(1.0 + 0.05, 4.0) == 0
    # AND those held messages start as children free: none is left waiting when the long tasks end
    worker.run(6.0)
    assert worker.held == 0


def test_a_receive_that_hangs_holds_its_slots_and_the_bound_holds(make_pacer):
    # GIVEN a warmed worker of 5 ms tasks whose receives sent from t = 1 s to 1.2 s are never answered
    worker = SimulatedWorker(round_trip=lambda now: None if 1.0 <= now < 1.2 else 0.02)
    # WHEN it runs for 3 s
    worker.run(3.0)
    # THEN the hung receives' slots stayed held: what was asked while they hung never exceeded 2x the prefetch
    hung = sum(r.count for r, due in worker.out if due is None)
    assert 0 < hung <= 8
    # AND no more messages waited unstarted than the prefetch
    assert worker.max_held <= 4


def test_a_slow_receive_is_not_predicted_to_come_back_in_time(make_pacer):
    # GIVEN a warmed worker of 5 ms tasks whose receives take 20 ms, then 500 ms from t = 1 s
    worker = SimulatedWorker(round_trip=lambda now: 0.02 if now < 1.0 else 0.5)
    # WHEN it runs through the slow receives
    worker.run(3.0)
    # THEN however late the answers came, no more than the prefetch waited unstarted
    assert worker.max_held <= 4


def test_a_throttled_receive_turns_the_queue_cold_and_the_prediction_off(make_pacer):
    # GIVEN a warmed worker of 5 ms tasks whose receives are throttled (answered with nothing) from t = 1 s
    worker = SimulatedWorker(throttled=lambda now: now >= 1.0)
    worker.run(1.0)
    # WHEN the throttling lasts 3 s
    worker.run(3.0)
    # THEN the queue is polled by its loop alone, once per polling interval (plus what was in flight)
    receives = [at for at, _count in worker.sent if 1.1 <= at < 4.0]
    assert len(receives) <= 4
    assert worker.held == 0


def test_without_enough_samples_nothing_is_predicted(make_pacer):
    # GIVEN a worker just started (no task has ended, no receive has come back)
    before, after = SimulatedWorker(predict=False), SimulatedWorker(predict=True)
    # WHEN the first receives come back and their first tasks run
    before.run(0.03)
    after.run(0.03)
    # THEN it receives as without the forecast
    assert after.sent == before.sent
    assert after.max_held == 0


def test_a_queue_without_a_visibility_heartbeat_gets_no_prediction(make_pacer):
    # GIVEN short tasks on a queue without a visibility heartbeat (nothing would keep a held message invisible)
    before = SimulatedWorker(predict=False)
    after = SimulatedWorker(predict=True, heartbeat=False)
    # WHEN each drains for 2 s
    before.run(2.0)
    after.run(2.0)
    # THEN it receives only for free slots, exactly as without the forecast: nothing is ever held unstarted
    assert after.sent == before.sent
    assert after.max_held == 0


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def warmed_forecast(*, runtime: float, round_trip: float) -> tuple[SlotForecast, Clock]:
    """A forecast that has seen 5 tasks of `runtime` and 3 receives of `round_trip` on queue default."""
    clock = Clock()
    forecast = SlotForecast(clock)
    for _ in range(5):
        forecast.delivered("default", 1, sent=clock.now - round_trip)
        clock.now += runtime
        forecast.freed("default", busy=0)
    return forecast, clock


def test_the_forecast_says_when_a_young_receive_in_flight_will_count():
    # GIVEN tasks of 10 ms, receives of 50 ms, and a receive of 4 sent 4 ms ago
    forecast, clock = warmed_forecast(runtime=0.01, round_trip=0.05)
    young = Reservation("default", 4, expires=99, sent=clock.now - 0.004)
    # WHEN asked when it counts
    at = forecast.counts_from("default", [young])
    # THEN it is once it has been out a task time (less the slack), and not before
    assert at == pytest.approx(young.sent + 0.01 - 0.001)
    assert forecast.free_by_return("default", [young]) == 0
    clock.now = at
    assert forecast.free_by_return("default", [young]) == 4
    # AND a receive that counts already, another queue's, or tasks longer than the round trip set no time
    assert forecast.counts_from("default", [young]) is None
    assert forecast.counts_from("other", [young]) is None
    slow, _ = warmed_forecast(runtime=0.08, round_trip=0.05)
    assert slow.counts_from("default", [Reservation("default", 4, expires=99, sent=-0.004)]) is None
