"""The queues' numbers: counts from SQS attributes, age and throughput from CloudWatch AWS/SQS, n/a when unread."""

from __future__ import annotations

from datetime import UTC, datetime

import boto3
from botocore.exceptions import ClientError

from api.ops.queue_stats import queue_stats
from tests.unit.api.ops.conftest import SpyClient
from tests.unit.lambdas.conftest import REGION


def _stats(world, **kwargs):
    return queue_stats(
        sqs=kwargs.pop("sqs", world.sqs.client),
        cloudwatch=kwargs.pop("cloudwatch", world.cloudwatch),
        topology=world.sqs.topology,
        **kwargs,
    )


def _by_key(snapshot):
    return {q.key: q for q in snapshot.queues}


def test_counts_come_from_the_queue_attributes_of_each_queue_and_its_dlq(ops_world):
    # GIVEN the default queue with 2 visible, 1 received (in flight) and 1 delayed message, and 2 in its DLQ
    sqs = ops_world.sqs
    sqs.dead_letter_many("jobs.fail", 2)
    for _ in range(3):
        sqs.client.send_message(QueueUrl=sqs.urls["default"], MessageBody="x")
    sqs.client.receive_message(QueueUrl=sqs.urls["default"], MaxNumberOfMessages=1, VisibilityTimeout=60)
    sqs.client.send_message(QueueUrl=sqs.urls["default"], MessageBody="later", DelaySeconds=60)

    # WHEN the numbers are read
    stats = _by_key(_stats(ops_world))

    # THEN each count is SQS's own
    assert stats["default"].counts == {"visible": 2, "in_flight": 1, "delayed": 1}
    assert stats["default"].dlq_depth == 2
    assert stats["default"].dlq_counts == {"visible": 2, "in_flight": 0, "delayed": 0}
    # AND the other queues are read too, empty
    assert stats["low_priority"].counts == {"visible": 0, "in_flight": 0, "delayed": 0}
    assert stats["low_priority"].dlq_depth == 0
    assert all(q.error is None for q in stats.values())


def test_numbers_are_read_without_receiving_anything_and_with_one_metrics_call(ops_world):
    # GIVEN a message in the default queue, and clients that record every call
    sqs = ops_world.sqs
    sqs.client.send_message(QueueUrl=sqs.urls["default"], MessageBody="x")
    sqs_spy, cloudwatch_spy = SpyClient(sqs.client), SpyClient(ops_world.cloudwatch)

    # WHEN the numbers are read
    _stats(ops_world, sqs=sqs_spy, cloudwatch=cloudwatch_spy)

    # THEN only queue URLs and attributes were asked for (a receive would count toward the DLQ)
    assert set(sqs_spy.calls) == {"get_queue_url", "get_queue_attributes"}
    # AND CloudWatch was asked once for every queue's metrics
    assert cloudwatch_spy.calls == {"get_metric_data": 1}
    # AND the message was never received
    [message] = sqs.client.receive_message(
        QueueUrl=sqs.urls["default"], MessageSystemAttributeNames=["ApproximateReceiveCount"]
    )["Messages"]
    assert message["Attributes"]["ApproximateReceiveCount"] == "1"


def test_age_and_throughput_come_from_cloudwatch_as_the_emulator_publishes_them(ops_world):
    # GIVEN 3 messages sent to the default queue, 2 of them received and deleted
    sqs = ops_world.sqs
    for i in range(3):
        sqs.client.send_message(QueueUrl=sqs.urls["default"], MessageBody=str(i))
    for message in sqs.client.receive_message(QueueUrl=sqs.urls["default"], MaxNumberOfMessages=2)["Messages"]:
        sqs.client.delete_message(QueueUrl=sqs.urls["default"], ReceiptHandle=message["ReceiptHandle"])
    # AND one period of AWS/SQS metrics published (what AWS, or the local emulator, does every minute)
    ops_world.publish_metrics()

    # WHEN the numbers are read
    snapshot = _stats(ops_world)
    stats = _by_key(snapshot)

    # THEN the throughput of this minute is the 2 deletions, and the age is CloudWatch's datapoint
    now_minute = snapshot.at.replace(second=0, microsecond=0)
    assert stats["default"].throughput == [(now_minute, 2.0)]
    assert stats["default"].deleted_last_minute == 2.0
    assert stats["default"].oldest_age_seconds is not None and stats["default"].oldest_age_seconds >= 0
    assert stats["default"].oldest_age_at == now_minute
    assert snapshot.metrics_error is None
    # AND the JSON says where each number came from
    data = snapshot.as_dict()
    assert "GetQueueAttributes" in data["sources"]["counts"]
    assert "ApproximateAgeOfOldestMessage" in data["sources"]["oldest_age"]
    assert "NumberOfMessagesDeleted" in data["sources"]["throughput"]
    assert data["queues"][0]["throughput"] == [{"minute": now_minute.isoformat(), "deleted": 2.0}]


def test_no_datapoint_is_none_not_zero_unless_the_queue_is_empty_now(ops_world):
    # GIVEN a message waiting in the default queue, none in low_priority, and no CloudWatch datapoint yet
    ops_world.sqs.client.send_message(QueueUrl=ops_world.sqs.urls["default"], MessageBody="x")

    # WHEN the numbers are read
    snapshot = _stats(ops_world)
    stats = _by_key(snapshot)

    # THEN the default queue's age and throughput are unknown (shown as n/a), never a made-up 0
    assert stats["default"].oldest_age_seconds is None
    assert stats["default"].oldest.basis == "no datapoint"
    assert stats["default"].throughput == []
    assert stats["default"].deleted_last_minute is None
    assert stats["default"].as_dict(snapshot.at)["oldest_age"]["text"] == "n/a"
    # AND the empty queue's age is 0 because SQS counts no message in it now (not because of CloudWatch)
    assert stats["low_priority"].oldest_age_seconds == 0.0
    assert stats["low_priority"].oldest.basis == "empty"


class _RefusingCloudWatch:
    def get_metric_data(self, **kwargs):
        raise ClientError({"Error": {"Code": "AccessDenied", "Message": "not allowed"}}, "GetMetricData")


def test_a_cloudwatch_failure_is_reported_and_the_counts_still_shown(ops_world):
    # GIVEN CloudWatch refusing the call, and a message in the default queue
    ops_world.sqs.client.send_message(QueueUrl=ops_world.sqs.urls["default"], MessageBody="x")

    # WHEN the numbers are read
    snapshot = _stats(ops_world, cloudwatch=_RefusingCloudWatch())

    # THEN the error is named, the CloudWatch numbers are unknown, the SQS counts are there
    assert "AccessDenied" in snapshot.metrics_error
    default = _by_key(snapshot)["default"]
    assert default.oldest_age_seconds is None and default.throughput == []
    assert default.counts["visible"] == 1


def test_a_missing_queue_is_an_error_on_its_row_only(ops_world):
    # GIVEN the low_priority DLQ deleted
    ops_world.sqs.client.delete_queue(QueueUrl=ops_world.sqs.dlq_urls["low_priority"])

    # WHEN the numbers are read
    stats = _by_key(_stats(ops_world))

    # THEN that row says why and has no DLQ depth; the other rows are read
    assert "NonExistentQueue" in stats["low_priority"].error
    assert stats["low_priority"].dlq_depth is None
    assert stats["default"].error is None and stats["default"].dlq_depth == 0


class _PagedCloudWatch:
    """Answers each query in two pages, as CloudWatch does with many datapoints."""

    def __init__(self):
        self.tokens = []

    def get_metric_data(self, *, MetricDataQueries, NextToken=None, **kwargs):  # noqa: N803 (boto3's names)
        self.tokens.append(NextToken)
        first = NextToken is None
        minute = datetime(2026, 1, 1, 12, 0 if first else 1, tzinfo=UTC)
        results = [
            {"Id": q["Id"], "Timestamps": [minute], "Values": [1.0 if first else 2.0]} for q in MetricDataQueries
        ]
        return {"MetricDataResults": results, **({"NextToken": "page2"} if first else {})}


def test_every_page_of_metric_data_is_read(ops_world):
    # GIVEN CloudWatch answering in two pages
    cloudwatch = _PagedCloudWatch()

    # WHEN the numbers are read
    default = _by_key(_stats(ops_world, cloudwatch=cloudwatch, now=datetime(2026, 1, 1, 12, 5, tzinfo=UTC)))["default"]

    # THEN both pages were asked for and joined in time order; the age is the latest datapoint
    assert cloudwatch.tokens == [None, "page2"]
    assert [value for _, value in default.throughput] == [1.0, 2.0]
    assert default.oldest.point_seconds == 2.0


def test_queue_names_carry_the_prefix(ops_world):
    # GIVEN queues named with a prefix, as on AWS ("celery-sqs-<stage>-")
    client = boto3.client("sqs", region_name=REGION)
    for spec in ops_world.sqs.topology.queues.values():
        client.create_queue(QueueName=spec.sqs_name("p-"))
        client.create_queue(QueueName=spec.dlq_sqs_name("p-"))

    # WHEN the numbers are read with that prefix
    snapshot = _stats(ops_world, prefix="p-")

    # THEN the prefixed queues were found
    assert [q.name for q in snapshot.queues] == [f"p-{s.name}" for s in ops_world.sqs.topology.queues.values()]
    assert all(q.error is None for q in snapshot.queues)


class _FixedCloudWatch:
    """Answers every age query with one datapoint of `age` seconds at `at` (the start of its minute)."""

    def __init__(self, at: datetime, age: float):
        self.at, self.age = at, age

    def get_metric_data(self, *, MetricDataQueries, **kwargs):  # noqa: N803 (boto3's names)
        results = [
            {"Id": q["Id"], "Timestamps": [self.at], "Values": [self.age]} if "age" in q["Id"] else {"Id": q["Id"]}
            for q in MetricDataQueries
        ]
        return {"MetricDataResults": results}


def test_an_empty_queue_shows_no_age_whatever_the_last_datapoint_said_and_how_old_that_point_is(ops_world):
    # GIVEN CloudWatch's latest datapoint saying 27 s, of the minute that began 3 minutes ago, and a default queue
    # that SQS shows empty now (the "27 s on an empty queue")
    now = datetime(2026, 1, 1, 12, 5, 30, tzinfo=UTC)
    point_at = datetime(2026, 1, 1, 12, 2, tzinfo=UTC)

    # WHEN the numbers are read
    snapshot = _stats(ops_world, cloudwatch=_FixedCloudWatch(point_at, 27.0), now=now)
    default = snapshot.as_dict()["queues"][0]

    # THEN the age shown is 0 ("—"), resting on GetQueueAttributes, and the stale point is named with its age
    assert default["key"] == "default"
    assert default["oldest_age_seconds"] == 0.0
    age = default["oldest_age"]
    assert (age["basis"], age["text"], age["point_seconds"], age["point_age_seconds"]) == ("empty", "—", 27.0, 210.0)
    assert age["note"] == (
        "empty now (GetQueueAttributes); last CloudWatch point of 12:02 UTC: 27 s, up to 3 min 30 s old"
    )


def test_a_waiting_message_shows_cloudwatchs_age_with_the_age_of_its_point_and_stale_when_old(ops_world):
    # GIVEN a message waiting in the default queue, and CloudWatch's latest datapoint (95 s) 10 minutes old
    ops_world.sqs.client.send_message(QueueUrl=ops_world.sqs.urls["default"], MessageBody="x")
    now = datetime(2026, 1, 1, 12, 10, 0, tzinfo=UTC)
    cloudwatch = _FixedCloudWatch(datetime(2026, 1, 1, 12, 0, tzinfo=UTC), 95.0)

    # WHEN the numbers are read
    age = _stats(ops_world, cloudwatch=cloudwatch, now=now).as_dict()["queues"][0]["oldest_age"]

    # THEN the age is CloudWatch's, with how old the point is, marked stale (SQS publishes every minute)
    assert (age["basis"], age["seconds"], age["text"], age["stale"]) == ("cloudwatch", 95.0, "1 min 35 s", True)
    assert age["note"] == "CloudWatch point of 12:00 UTC: 1 min 35 s, up to 10 min 0 s old (stale)"


def test_a_point_of_0_s_on_a_queue_with_messages_says_it_may_predate_them(ops_world):
    # GIVEN a message waiting in the default queue, and CloudWatch's latest point (0 s) taken 40 s ago
    ops_world.sqs.client.send_message(QueueUrl=ops_world.sqs.urls["default"], MessageBody="x")
    now = datetime(2026, 1, 1, 12, 0, 40, tzinfo=UTC)
    cloudwatch = _FixedCloudWatch(datetime(2026, 1, 1, 12, 0, tzinfo=UTC), 0.0)

    # WHEN the numbers are read
    age = _stats(ops_world, cloudwatch=cloudwatch, now=now).as_dict()["queues"][0]["oldest_age"]

    # THEN the 0 s is shown as CloudWatch's, saying it may be older than the message
    assert (age["text"], age["stale"]) == ("0 s", False)
    assert age["note"] == "CloudWatch point of 12:00 UTC: 0 s, up to 40 s old; it may predate the messages now there"


def test_the_dlqs_age_is_its_own_datapoint_counted_from_the_move(ops_world):
    # GIVEN a message moved into the default DLQ 90 s ago, and one period of the emulator's metrics
    from moto.sqs.models import sqs_backends

    from devstack import sqs_emulator

    ops_world.sqs.dead_letter("jobs.fail")
    [moved] = sqs_backends["123456789012"]["us-east-1"].queues[ops_world.sqs.topology.queue("default").dlq]._messages
    # (this fixture's DLQs are filled by sends, not by a redrive policy: the move is when it was sent)
    moved.sent_timestamp -= 90_000
    setattr(moved, sqs_emulator._ENQUEUED_MS, moved.sent_timestamp)
    ops_world.publish_metrics()

    # WHEN the numbers are read
    snapshot = _stats(ops_world)
    default = _by_key(snapshot)["default"]

    # THEN the DLQ's depth and age are shown, the age from the DLQ's datapoint; the source queue is empty now
    assert default.dlq_depth == 1
    assert default.dlq_oldest.basis == "cloudwatch" and 90.0 <= default.dlq_oldest.seconds < 150.0
    assert default.oldest.basis == "empty"
    data = snapshot.as_dict()["queues"][0]
    # (whose CloudWatch point, 0 s, agrees: not worth a mention)
    assert (data["oldest_age"]["point_seconds"], data["oldest_age"]["note"]) == (0.0, "empty now (GetQueueAttributes)")
    assert 90.0 <= data["dlq_oldest_age_seconds"] < 150.0
    assert data["dlq_oldest_age"]["text"].startswith("1 min ")
    # AND an empty DLQ reads 0, from its counts
    assert _by_key(snapshot)["low_priority"].dlq_oldest.basis == "empty"
