"""Unit tests of workers/transport/pacer.py: when a queue's receive loop may receive, on a virtual-clock loop."""

from __future__ import annotations

import pytest

from tests.unit.workers.conftest import RecordingHub
from workers.transport.pacer import FETCH_COALESCE_SECONDS, FetchPacer

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
    def make(prefetch: int = 1):
        hub, slots, resumed = RecordingHub(), Slots(prefetch), []
        pacer = FetchPacer(
            hub=lambda: hub,
            free_slots=lambda: slots.free,
            prefetch=lambda: slots.prefetch,
            polling_interval=lambda: POLLING_INTERVAL,
            resume=resumed.append,
        )
        return pacer, hub, slots, resumed

    return make


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
    # THEN kombu's own pace: the loop is resumed once, to look again
    assert resumed == ["default"]
    assert len(hub.later) == 0


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
    # THEN the loop is resumed, and may receive for the lone slot
    assert resumed == ["default"]
    assert pacer.may_receive("default")


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
    # AND a resumed queue may receive for whatever is free
    assert pacer.may_receive("default")
