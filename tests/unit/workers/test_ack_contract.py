"""kombu's contract for an ack refused with AccessDenied (its t/unit/transport/test_SQS.py
`test_basic_ack_access_denied`), checked against the project's channel: kept exactly without batching;
with batching (every worker) the ack cannot raise, and the health check carries the failure instead."""

from __future__ import annotations

import time
from unittest.mock import Mock

import pytest
from botocore.exceptions import ClientError
from kombu import Producer
from kombu.transport.SQS import AccessDeniedQueueException

from workers import delete_health


@pytest.fixture(autouse=True)
def own_health_files(tmp_path, monkeypatch):
    monkeypatch.setenv("WORKER_LIVENESS_FILE", str(tmp_path / "liveness"))


def _access_denied(operation: str) -> ClientError:
    return ClientError(
        {"Error": {"Code": "AccessDenied", "Message": f"An error occurred (AccessDenied) when calling {operation}"}},
        operation,
    )


def _hold_one(channel) -> tuple[str, dict]:
    Producer(channel).publish({"n": 1}, routing_key="default", exchange="", serializer="json")
    message = channel.basic_get("default", no_ack=False)
    return message.delivery_tag, message.delivery_info


def _stored(make_channel) -> int:
    url = make_channel.client.get_queue_url(QueueName="default")["QueueUrl"]
    attrs = make_channel.client.get_queue_attributes(
        QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
    )["Attributes"]
    return int(attrs["ApproximateNumberOfMessages"]) + int(attrs["ApproximateNumberOfMessagesNotVisible"])


def test_without_batching_an_ack_refused_with_access_denied_raises_as_kombu_does(make_channel):
    # GIVEN a channel that deletes on each ack (no event loop, or WORKER_DELETE_BATCH_SECONDS=0)
    channel, _ = make_channel(delete_batch_seconds=0)
    tag, info = _hold_one(channel)
    client = channel.sqs(queue="default")
    client.delete_message = Mock(side_effect=_access_denied("DeleteMessage"))

    # WHEN the ack is refused with AccessDenied
    # THEN kombu's contract holds: AccessDeniedQueueException, after one DeleteMessage of that handle
    with pytest.raises(AccessDeniedQueueException):
        channel.basic_ack(tag)
    client.delete_message.assert_called_once_with(
        QueueUrl=info["sqs_queue"], ReceiptHandle=info["sqs_message"]["ReceiptHandle"]
    )
    # AND (kombu 5.7) the delivery is released, so its prefetch slot is not held forever
    assert channel.qos.can_consume_max_estimate() == 1


def test_with_batching_an_ack_never_raises_and_access_denied_fails_the_health_check(make_channel):
    # GIVEN a worker's channel (an event loop, deletes batched from a thread) whose deletes are refused
    channel, _ = make_channel(delete_batch_seconds=0.01)
    tag, _info = _hold_one(channel)
    client = channel.sqs(queue="default")
    client.delete_message_batch = Mock(side_effect=_access_denied("DeleteMessageBatch"))

    # WHEN the task's message is acked
    channel.basic_ack(tag)  # THEN it does not raise: the delete happens later, in another thread

    # AND the slot is free, the message still in SQS, and the health check names the refused deletes
    assert channel.qos.can_consume_max_estimate() == 1
    deadline = time.monotonic() + 5
    while delete_health.failure_reason() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    assert delete_health.failure_reason().startswith("deletes failing: 1 acked messages not deleted since")
    assert _stored(make_channel) == 1
    assert client.delete_message_batch.call_args.kwargs["Entries"][0]["ReceiptHandle"] == tag
