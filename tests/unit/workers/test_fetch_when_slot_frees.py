"""Unit tests of the channel's fetch-when-a-slot-frees loop (workers/transport/), on a recording event loop."""

from __future__ import annotations

from kombu import Producer

from workers.transport import FETCH_COALESCE_SECONDS, FETCH_WHEN_SLOT_FREES_OPTION
from workers.transport.pacer import AHEAD_COALESCE_SECONDS


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


# --- receive ahead (issue L item 2): kombu's own receive path, through a recording async client -------------


class RecordingAsyncSQS:
    """Stands in for kombu's async SQS client: remembers each ReceiveMessage, answers when the test says."""

    def __init__(self):
        self.calls: list[dict] = []

    def receive_message(self, queue, queue_url, number_messages=1, wait_time_seconds=None, callback=None, **kwargs):
        self.calls.append({"count": number_messages, "wait": wait_time_seconds, "answer": callback})

    def answer(self, n: int, *, start: int = 0) -> None:
        """Answer the oldest unanswered receive with n messages."""
        call = next(c for c in self.calls if "answered" not in c)
        call["answered"] = n
        call["answer"]({"Messages": [sqs_message(i) for i in range(start, start + n)]})


def sqs_message(i: int) -> dict:
    from core.envelope import encode_sqs_body

    envelope = {
        "body": "e30=",
        "content-encoding": "utf-8",
        "content-type": "application/json",
        "headers": {"task": "jobs.noop", "id": f"task-{i}"},
        "properties": {"delivery_info": {"routing_key": "default"}, "body_encoding": "base64"},
    }
    return {"Body": encode_sqs_body(envelope), "ReceiptHandle": f"receipt-{i}", "MessageId": f"m{i}"}


def consuming_channel(make_channel, prefetch: int, **options):
    channel, _receives = make_channel(prefetch=prefetch, delete_batch_seconds=0, **options)
    del channel._get_bulk_async  # kombu's receive path, not the recorder
    sqs = RecordingAsyncSQS()
    channel.asynsqs = lambda queue=None: sqs
    delivered: list = []
    channel.basic_consume("default", no_ack=False, callback=delivered.append, consumer_tag="t")
    channel.hub.run_soon()
    return channel, sqs, delivered


def test_a_slot_freed_while_the_queues_receive_is_in_flight_gets_a_receive_of_its_own(make_channel):
    # GIVEN a worker of 4 slots consuming `default`: its loop's first receive asks for all 4, long-polling
    channel, sqs, delivered = consuming_channel(make_channel, prefetch=4)
    assert [(c["count"], c["wait"]) for c in sqs.calls] == [(4, 20)]
    # AND it brings 3 messages (3 tasks run); the loop receives again at once, for the 4th slot
    sqs.answer(3)
    channel.hub.run_soon()
    assert [c["count"] for c in sqs.calls] == [4, 1]

    # WHEN one task ends while that receive is out and the other two tasks still run
    channel.basic_ack(delivered[0].delivery_tag)
    channel.hub.run_soon()
    channel.hub.advance(AHEAD_COALESCE_SECONDS)  # no other slot frees to share it

    # THEN its slot gets a receive of its own within the coalesce window, with a short wait (not a second
    # long-polling loop)
    assert [(c["count"], c["wait"]) for c in sqs.calls[2:]] == [(1, 1)]
    # WHEN both are answered with a message each THEN both reach Celery: 4 running, none held unstarted
    sqs.answer(1, start=3)
    sqs.answer(1, start=4)
    channel.hub.run_soon()
    assert len(delivered) == 5
    assert channel.qos.can_consume_max_estimate() == 0
    # AND nothing more is asked for while every slot is busy
    assert len(sqs.calls) == 3


def test_with_receive_ahead_off_the_queue_waits_for_its_receive(make_channel):
    # GIVEN the same worker with WORKER_RECEIVE_AHEAD=0 (one receive per queue at a time)
    channel, sqs, delivered = consuming_channel(make_channel, prefetch=4, receive_ahead=False)
    sqs.answer(3)
    channel.hub.run_soon()
    channel.hub.advance(FETCH_COALESCE_SECONDS)
    assert [c["count"] for c in sqs.calls] == [4, 1]
    # WHEN a task ends while that receive is out
    channel.basic_ack(delivered[0].delivery_tag)
    channel.hub.run_soon()
    # THEN nothing more goes out until it is answered
    assert len(sqs.calls) == 2
