"""The emulator's AWS/SQS metrics: what moto's SQS backend holds, written to moto's CloudWatch as AWS would."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta

import boto3
import pytest
from moto import mock_aws
from moto.sqs.models import Queue, SQSBackend, sqs_backends

from devstack import sqs_emulator

REGION = "us-east-1"
ACCOUNT = "123456789012"


@pytest.fixture
def aws(monkeypatch):
    """moto in-process with the emulator's counters installed (and taken out again after the test)."""
    monkeypatch.setattr(Queue, "delete_message", Queue.delete_message)
    monkeypatch.setattr(SQSBackend, "send_message", SQSBackend.send_message)
    monkeypatch.setattr(Queue, "add_message", Queue.add_message)
    with mock_aws():
        sqs_emulator.install_counters()
        yield boto3.client("sqs", region_name=REGION), boto3.client("cloudwatch", region_name=REGION)


def _metric(cloudwatch, queue: str, name: str, stat: str) -> list[float]:
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    dimensions = [{"Name": "QueueName", "Value": queue}]
    query = {
        "Id": "m",
        "MetricStat": {
            "Metric": {"Namespace": "AWS/SQS", "MetricName": name, "Dimensions": dimensions},
            "Period": 60,
            "Stat": stat,
        },
    }
    response = cloudwatch.get_metric_data(
        MetricDataQueries=[query], StartTime=now - timedelta(minutes=5), EndTime=now + timedelta(minutes=1)
    )
    return response["MetricDataResults"][0]["Values"]


def _moto_queue(name: str) -> Queue:
    return sqs_backends[ACCOUNT][REGION].queues[name]


def test_deleted_sent_and_depth_of_a_period_are_published_per_queue(aws):
    # GIVEN a queue where 3 messages were sent, 2 received and deleted (one of them deleted twice)
    sqs, cloudwatch = aws
    url = sqs.create_queue(QueueName="work")["QueueUrl"]
    sqs.create_queue(QueueName="other")
    for i in range(3):
        sqs.send_message(QueueUrl=url, MessageBody=str(i))
    messages = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=2)["Messages"]
    for message in messages:
        sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
    sqs.delete_message(QueueUrl=url, ReceiptHandle=messages[0]["ReceiptHandle"])

    # WHEN the emulator publishes one period
    assert sqs_emulator.publish_metrics() == 2

    # THEN CloudWatch answers with that period's numbers under AWS/SQS, dimension QueueName
    assert _metric(cloudwatch, "work", "NumberOfMessagesDeleted", "Sum") == [2.0]
    assert _metric(cloudwatch, "work", "NumberOfMessagesSent", "Sum") == [3.0]
    assert _metric(cloudwatch, "work", "ApproximateNumberOfMessagesVisible", "Maximum") == [1.0]
    assert _metric(cloudwatch, "work", "ApproximateAgeOfOldestMessage", "Maximum")[0] >= 0
    # AND the other queue is published too, with nothing sent or deleted
    assert _metric(cloudwatch, "other", "NumberOfMessagesDeleted", "Sum") == [0.0]


def test_each_period_counts_only_what_happened_since_the_last(aws):
    # GIVEN a period already published after one delete
    sqs, cloudwatch = aws
    url = sqs.create_queue(QueueName="work")["QueueUrl"]
    sqs.send_message(QueueUrl=url, MessageBody="a")
    [message] = sqs.receive_message(QueueUrl=url)["Messages"]
    sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
    sqs_emulator.publish_metrics()

    # WHEN nothing happens and the next period is published
    sqs_emulator.publish_metrics()

    # THEN the minute's sum is still 1 (the second period added 0)
    assert _metric(cloudwatch, "work", "NumberOfMessagesDeleted", "Sum") == [1.0]
    assert _metric(cloudwatch, "work", "NumberOfMessagesDeleted", "SampleCount") == [2.0]


def test_redrive_to_the_dlq_counts_as_neither_sent_nor_deleted(aws):
    # GIVEN a queue with a DLQ after 1 receive, and one message received once
    sqs, cloudwatch = aws
    dlq = sqs.create_queue(QueueName="work-dlq")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=dlq, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    redrive = json.dumps({"deadLetterTargetArn": arn, "maxReceiveCount": 1})
    url = sqs.create_queue(QueueName="work", Attributes={"RedrivePolicy": redrive, "VisibilityTimeout": "0"})[
        "QueueUrl"
    ]
    sqs.send_message(QueueUrl=url, MessageBody="poison")
    sqs.receive_message(QueueUrl=url)

    # WHEN the next receive makes SQS move it to the DLQ, and a period is published
    assert sqs.receive_message(QueueUrl=url).get("Messages", []) == []
    sqs_emulator.publish_metrics()

    # THEN the DLQ holds it, and neither queue counts it as deleted, nor the DLQ as sent (as on AWS)
    assert _metric(cloudwatch, "work-dlq", "ApproximateNumberOfMessagesVisible", "Maximum") == [1.0]
    assert _metric(cloudwatch, "work", "NumberOfMessagesDeleted", "Sum") == [0.0]
    assert _metric(cloudwatch, "work-dlq", "NumberOfMessagesSent", "Sum") == [0.0]
    assert _metric(cloudwatch, "work", "NumberOfMessagesSent", "Sum") == [1.0]


def test_age_of_the_oldest_message_skips_delayed_and_thrice_received_messages(aws):
    # GIVEN three messages: a delayed one, one received 3 times, and one sent 5 s before "now"
    sqs, _ = aws
    url = sqs.create_queue(QueueName="work")["QueueUrl"]
    sqs.send_message(QueueUrl=url, MessageBody="delayed", DelaySeconds=60)
    sqs.send_message(QueueUrl=url, MessageBody="received often")
    sqs.send_message(QueueUrl=url, MessageBody="plain")
    delayed, often, plain = _moto_queue("work")._messages
    often.approximate_receive_count = 3
    now_ms = plain.sent_timestamp + 5_000
    delayed.sent_timestamp = often.sent_timestamp = plain.sent_timestamp - 60_000

    # WHEN the age is computed THEN only the plain message counts
    assert sqs_emulator.oldest_age_seconds(_moto_queue("work"), now_ms) == 5.0
    # AND an empty queue's age is 0, as AWS reports it
    sqs.create_queue(QueueName="empty")
    assert sqs_emulator.oldest_age_seconds(_moto_queue("empty"), now_ms) == 0.0


def _redrive_pair(sqs, *, max_receive_count: int) -> tuple[str, str]:
    """work (visibility 0, so a message comes back at once) with work-dlq after max_receive_count receives."""
    dlq = sqs.create_queue(QueueName="work-dlq")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=dlq, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    redrive = json.dumps({"deadLetterTargetArn": arn, "maxReceiveCount": max_receive_count})
    attributes = {"RedrivePolicy": redrive, "VisibilityTimeout": "0"}
    return sqs.create_queue(QueueName="work", Attributes=attributes)["QueueUrl"], dlq


def test_a_dlqs_age_counts_from_the_move_and_includes_messages_received_often(aws):
    # GIVEN a message sent 10 minutes ago (its SentTimestamp), received 3 times, then moved to the DLQ by
    # the redrive policy: it keeps its SentTimestamp and its receive count, as moto moves the message itself
    sqs, _ = aws
    url, _ = _redrive_pair(sqs, max_receive_count=3)
    sqs.send_message(QueueUrl=url, MessageBody="poison")
    [message] = _moto_queue("work")._messages
    message.sent_timestamp -= 600_000
    for _ in range(3):
        assert len(sqs.receive_message(QueueUrl=url)["Messages"]) == 1
    assert sqs.receive_message(QueueUrl=url).get("Messages", []) == []  # the 4th receive moves it
    [moved] = _moto_queue("work-dlq")._messages
    assert moved.approximate_receive_count >= 3

    # WHEN the DLQ's age is computed 5 s after the move
    now_ms = time.time() * 1000 + 5_000
    age = sqs_emulator.oldest_age_seconds(_moto_queue("work-dlq"), now_ms, dead_letter=True)

    # THEN it counts from the move (AWS: "when the message moved to the dead-letter queue"), not from the first
    # send 10 minutes ago, and the message counts although it was received 3 times
    assert 5.0 <= age < 60.0


def test_a_dlqs_published_age_is_not_hidden_by_the_receive_rule(aws):
    # GIVEN a message moved to the DLQ 30 s ago after 3 receives (a redrive policy of maxReceiveCount 3)
    sqs, cloudwatch = aws
    url, _ = _redrive_pair(sqs, max_receive_count=3)
    sqs.send_message(QueueUrl=url, MessageBody="poison")
    for _ in range(4):
        sqs.receive_message(QueueUrl=url)
    [moved] = _moto_queue("work-dlq")._messages
    setattr(moved, sqs_emulator._ENQUEUED_MS, time.time() * 1000 - 30_000)

    # WHEN one period is published
    sqs_emulator.publish_metrics()

    # THEN the DLQ's age is about 30 s (the receive rule, right for the source queue, would have said 0)
    [age] = _metric(cloudwatch, "work-dlq", "ApproximateAgeOfOldestMessage", "Maximum")
    assert 30.0 <= age < 90.0
    assert _metric(cloudwatch, "work", "ApproximateAgeOfOldestMessage", "Maximum") == [0.0]
