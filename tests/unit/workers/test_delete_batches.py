"""Unit tests of batched deletes (workers/delete_batches.py) as the channel uses them, on moto."""

from __future__ import annotations

import logging
from collections import Counter

from botocore.exceptions import ClientError
from kombu import Producer

from workers.delete_batches import DeleteBatches, PendingDelete


def hold(channel, n: int, queue: str = "default") -> list[int]:
    """Publish n messages and take them into the channel's QoS, as running tasks hold them."""
    producer = Producer(channel)
    for i in range(n):
        producer.publish({"n": i}, routing_key=queue, exchange="", serializer="json")
    tags = []
    for _ in range(n):
        message = channel.basic_get(queue, no_ack=False)
        assert message is not None
        tags.append(message.delivery_tag)
    return tags


def stored(make_channel, queue_name: str = "default") -> int:
    """Messages SQS still holds on the queue (visible or not)."""
    url = make_channel.client.get_queue_url(QueueName=queue_name)["QueueUrl"]
    attrs = make_channel.client.get_queue_attributes(
        QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
    )["Attributes"]
    return int(attrs["ApproximateNumberOfMessages"]) + int(attrs["ApproximateNumberOfMessagesNotVisible"])


def count_calls(channel, queue: str = "default") -> Counter:
    calls: Counter = Counter()
    channel.sqs(queue=queue).meta.events.register("before-call.sqs.*", lambda model, **_: calls.update([model.name]))
    return calls


def test_an_ack_frees_the_slot_at_once_and_deletes_within_the_window(make_channel):
    # GIVEN a channel that batches deletes, holding one message of a running task
    channel, _ = make_channel(prefetch=4)
    (tag,) = hold(channel, 1)
    calls = count_calls(channel)

    # WHEN the task ends and its message is acked
    channel.basic_ack(tag)

    # THEN its slot is free at once, the message is still in SQS, and a flush is due after the window
    assert channel.qos.can_consume_max_estimate() == 4
    assert stored(make_channel) == 1
    assert [delay for delay, _cb, _args in channel.hub.later] == [0.1]
    # WHEN the window ends
    channel.hub.run_later()
    # THEN one DeleteMessageBatch deleted it
    assert stored(make_channel) == 0
    assert calls == {"DeleteMessageBatch": 1}


def test_ten_acks_are_one_request_sent_at_once(make_channel):
    # GIVEN ten running tasks' messages
    channel, _ = make_channel(prefetch=10)
    tags = hold(channel, 10)
    calls = count_calls(channel)

    # WHEN all ten are acked
    for tag in tags:
        channel.basic_ack(tag)

    # THEN a full batch goes out without waiting for the window: one request for ten deletes
    assert stored(make_channel) == 0
    assert calls == {"DeleteMessageBatch": 1}


def test_closing_the_channel_deletes_what_was_acked(make_channel):
    # GIVEN two acked messages waiting for their batch
    channel, _ = make_channel(prefetch=2)
    for tag in hold(channel, 2):
        channel.basic_ack(tag)
    assert stored(make_channel) == 2

    # WHEN the worker shuts down and closes its channel before the window ends
    channel.close()

    # THEN acked means deleted
    assert stored(make_channel) == 0


def test_without_a_window_each_ack_is_kombus_own_delete(make_channel):
    # GIVEN batching off (WORKER_DELETE_BATCH_SECONDS=0)
    channel, _ = make_channel(delete_batch_seconds=0)
    (tag,) = hold(channel, 1)
    calls = count_calls(channel)

    # WHEN the message is acked
    channel.basic_ack(tag)

    # THEN kombu deletes it there and then, one DeleteMessage, no timer
    assert stored(make_channel) == 0
    assert calls == {"DeleteMessage": 1}
    assert channel.hub.later == []


class RefusingClient:
    def delete_message_batch(self, **kwargs):
        raise ClientError({"Error": {"Code": "AccessDenied", "Message": "no sqs:DeleteMessage"}}, "DeleteMessageBatch")


class PartlyFailingClient:
    def delete_message_batch(self, *, QueueUrl, Entries):  # noqa: N803 (boto3's names)
        return {
            "Successful": [{"Id": Entries[0]["Id"]}],
            "Failed": [{"Id": e["Id"], "Code": "ReceiptHandleIsInvalid", "Message": "stale"} for e in Entries[1:]],
        }


def test_a_failed_delete_is_logged_not_raised(caplog):
    # GIVEN a batch whose DeleteMessageBatch is refused
    batches = DeleteBatches(client_for=lambda queue: RefusingClient(), call_later=lambda *a: None, window=0.1)
    batches.add(PendingDelete(queue="default", url="https://sqs/q", receipt_handle="h1"))

    # WHEN it is flushed
    with caplog.at_level(logging.WARNING, logger="workers.delete_batches"):
        batches.flush_all()

    # THEN the worker goes on; the log says the message will run again, and nothing is left pending
    assert batches.failed == 1 and batches.deleted == 0
    assert "run again after their visibility timeout" in caplog.text and "AccessDenied" in caplog.text
    assert batches.pending == {}


def test_entries_sqs_refused_are_counted_and_logged(caplog):
    # GIVEN a batch of three where SQS refuses two entries
    batches = DeleteBatches(client_for=lambda queue: PartlyFailingClient(), call_later=lambda *a: None, window=0.1)
    for handle in ("h1", "h2", "h3"):
        batches.add(PendingDelete(queue="default", url="https://sqs/q", receipt_handle=handle))

    # WHEN it is flushed
    with caplog.at_level(logging.WARNING, logger="workers.delete_batches"):
        batches.flush_all()

    # THEN one is deleted, two are reported with SQS's reason
    assert (batches.deleted, batches.failed) == (1, 2)
    assert caplog.text.count("ReceiptHandleIsInvalid") == 2


def test_one_timer_per_window_however_many_acks():
    # GIVEN a batcher on a recording timer
    timers = []
    batches = DeleteBatches(client_for=lambda queue: None, call_later=lambda *a: timers.append(a), window=0.1)

    # WHEN three acks arrive within one window
    for handle in ("h1", "h2", "h3"):
        batches.add(PendingDelete(queue="default", url="https://sqs/q", receipt_handle=handle))

    # THEN one flush is scheduled, not three
    assert len(timers) == 1
