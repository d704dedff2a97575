"""Unit tests of the channel's fetch-when-a-slot-frees loop (workers/transport/), on a recording event loop."""

from __future__ import annotations

from kombu import Producer

from workers.transport import FETCH_COALESCE_SECONDS, FETCH_WHEN_SLOT_FREES_OPTION


def hold_one_message(channel, queue: str = "default") -> int:
    """Publish a message and take it into the channel's QoS, as a running task holds it: every slot busy."""
    Producer(channel).publish({"n": 1}, routing_key=queue, exchange="", serializer="json")
    message = channel.basic_get(queue, no_ack=False)
    assert message is not None
    return message.delivery_tag


def test_full_prefetch_parks_the_loop_with_one_fallback_timer(make_channel):
    # GIVEN a channel consuming `default` whose only prefetch slot is held
    channel, receives = make_channel()
    channel._active_queues.append("default")
    hold_one_message(channel)

    # WHEN its loop comes round twice while the slot stays busy
    channel._schedule_queue("default")
    channel._schedule_queue("default")

    # THEN it does not receive, waits for a slot, and has exactly one fallback timer at polling_interval
    assert receives == []
    assert list(channel.pacer.waiting) == ["default"]
    assert [(delay, args) for delay, _cb, args in channel.hub.later] == [(1, ("default",))]


def test_an_ack_resumes_the_loop_at_once_and_the_stale_timer_does_nothing(make_channel):
    # GIVEN a parked loop (the one slot held by a running task)
    channel, receives = make_channel()
    channel._active_queues.append("default")
    tag = hold_one_message(channel)
    channel._schedule_queue("default")

    # WHEN the task ends and its message is acked, and the event loop runs
    channel.basic_ack(tag)
    channel.hub.run_soon()

    # THEN the loop receives again at once, not a polling_interval later
    assert receives == ["default"]
    assert not channel.pacer.waiting
    # AND the fallback timer, when it fires, finds nothing waiting: still one receive, one loop
    channel.hub.run_later()
    assert receives == ["default"]


def test_a_reject_frees_the_slot_too(make_channel):
    # GIVEN a parked loop
    channel, receives = make_channel()
    channel._active_queues.append("default")
    tag = hold_one_message(channel)
    channel._schedule_queue("default")
    channel._has_redrive_policy = lambda queue, url: True  # rejected into the DLQ by SQS, never deleted

    # WHEN the message is rejected (a poison message, a task that failed for good)
    channel.basic_reject(tag, requeue=False)
    channel.hub.run_soon()

    # THEN the loop receives again at once
    assert receives == ["default"]


def test_one_free_slot_resumes_only_the_queue_that_waited_longest(make_channel):
    # GIVEN two queues parked behind one busy slot, `high_priority` first
    channel, receives = make_channel()
    channel._active_queues.extend(["high_priority", "default"])
    tag = hold_one_message(channel, "high_priority")
    channel._schedule_queue("high_priority")
    channel._schedule_queue("default")

    # WHEN one slot frees
    channel.basic_ack(tag)
    channel.hub.run_soon()

    # THEN only the longest-waiting queue receives (more would fetch messages no slot can take)
    assert receives == ["high_priority"]
    # AND the other keeps waiting, at the front for the next slot
    assert list(channel.pacer.waiting) == ["default"]


def test_switched_off_it_is_kombus_own_polling(make_channel):
    # GIVEN fetch-when-a-slot-frees switched off (WORKER_FETCH_WHEN_SLOT_FREES=0)
    channel, receives = make_channel(fetch_when_slot_frees=False)
    assert channel.transport_options[FETCH_WHEN_SLOT_FREES_OPTION] is False
    channel._active_queues.append("default")
    tag = hold_one_message(channel)

    # WHEN the loop finds the slot busy, then the task ends
    channel._schedule_queue("default")
    channel.basic_ack(tag)

    # THEN nothing is resumed early: kombu re-checks after polling_interval, as it always did
    assert channel.hub.soon == []
    loop_timers = [(delay, cb.__name__) for delay, cb, _args in channel.hub.later if cb.__name__ != "_on_timer"]
    assert loop_timers == [(1, "_schedule_queue")]
    channel.hub.run_later()
    assert receives == ["default"]


def hold_messages(channel, n: int, queue: str = "default") -> list[int]:
    return [hold_one_message(channel, queue) for _ in range(n)]


def test_one_free_slot_of_four_waits_briefly_for_company(make_channel):
    # GIVEN a prefetch of 4, every slot held, the loop parked
    channel, receives = make_channel(prefetch=4)
    channel._active_queues.append("default")
    tags = hold_messages(channel, 4)
    channel._schedule_queue("default")

    # WHEN one task ends
    channel.basic_ack(tags[0])
    channel.hub.run_soon()

    # THEN no receive for a single slot yet: a resume is due FETCH_COALESCE_SECONDS later
    assert receives == []
    channel.hub.advance(FETCH_COALESCE_SECONDS / 2)
    assert receives == []

    # WHEN the other three end before then: every slot is free
    for tag in tags[1:]:
        channel.basic_ack(tag)
    channel.hub.run_soon()

    # THEN the loop receives at once, for all four slots in one request
    assert receives == ["default"]


def test_a_lone_free_slot_is_filled_when_the_short_wait_ends(make_channel):
    # GIVEN a prefetch of 4, every slot held, the loop parked
    channel, receives = make_channel(prefetch=4)
    channel._active_queues.append("default")
    tags = hold_messages(channel, 4)
    channel._schedule_queue("default")

    # WHEN one task ends and no other follows
    channel.basic_ack(tags[0])
    channel.hub.advance(FETCH_COALESCE_SECONDS)

    # THEN the loop receives for the one free slot (20 ms later, not kombu's polling_interval)
    assert receives == ["default"]


def test_the_loop_does_not_receive_for_a_lone_slot_while_the_others_are_busy(make_channel):
    # GIVEN a prefetch of 4 with 3 slots held (the last receive brought 3 messages)
    channel, receives = make_channel(prefetch=4)
    channel._active_queues.append("default")
    hold_messages(channel, 3)

    # WHEN the loop comes round
    channel._schedule_queue("default")

    # THEN it waits FETCH_COALESCE_SECONDS for more slots instead of a receive for one message
    assert receives == []
    assert sorted(delay for delay, _cb, _a in channel.hub.later) == [FETCH_COALESCE_SECONDS, 1]
    # AND when that short wait ends with nothing else freed, it receives for the one slot
    channel.hub.advance(FETCH_COALESCE_SECONDS)
    assert receives == ["default"]


def test_a_worker_with_every_slot_free_receives_at_once(make_channel):
    # GIVEN a prefetch of 4 and nothing held (a worker just started, or idle)
    channel, receives = make_channel(prefetch=4)
    channel._active_queues.append("default")

    # WHEN the loop comes round
    channel._schedule_queue("default")

    # THEN it receives straight away, for all four slots
    assert receives == ["default"]
    assert channel.hub.later == []
