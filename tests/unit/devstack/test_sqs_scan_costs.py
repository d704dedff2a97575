"""devstack/sqs_scan_costs.py: the emulator scans a queue once per call, and answers exactly as moto does."""

from __future__ import annotations

import time

import boto3
import pytest
from moto import mock_aws
from moto.sqs.exceptions import InvalidAttributeName
from moto.sqs.models import Message, Queue, SQSBackend, sqs_backends

from devstack import sqs_scan_costs

ACCOUNT, REGION = "123456789012", "us-east-1"
DEPTH = 300
COUNTS = ["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible", "ApproximateNumberOfMessagesDelayed"]


@pytest.fixture
def backend(monkeypatch):
    """moto in-process, a queue 300 deep, every build of a queue's attributes counted; moto restored after."""
    for name in ("is_message_valid_based_on_retention_period", "get_queue_attributes"):
        monkeypatch.setattr(SQSBackend, name, getattr(SQSBackend, name))
    for name in ("messages", "approximate_number_of_messages_not_visible", "approximate_number_of_messages_delayed"):
        monkeypatch.setattr(Queue, name, Queue.__dict__[name])
    builds = {"n": 0}
    attributes = Queue.attributes

    def counted(queue):
        builds["n"] += 1
        return attributes.fget(queue)

    monkeypatch.setattr(Queue, "attributes", property(counted))
    with mock_aws():
        sqs = boto3.client("sqs", region_name=REGION)
        url = sqs.create_queue(QueueName="q", Attributes={"VisibilityTimeout": "300"})["QueueUrl"]
        for _ in range(0, DEPTH, 10):
            sqs.send_message_batch(QueueUrl=url, Entries=[{"Id": str(i), "MessageBody": "x"} for i in range(10)])
        builds["n"] = 0
        yield sqs_backends[ACCOUNT][REGION], sqs, url, builds


def test_a_receive_of_ten_builds_no_queue_attributes(backend):
    # GIVEN the patch, and a queue 300 deep (moto 5.2.5 alone: 30 builds, 3 for each message received)
    moto_backend, _sqs, _url, builds = backend
    sqs_scan_costs.install()
    # WHEN ten messages are received
    received = moto_backend.receive_message("q", 10, 0, 300)
    # THEN ten came back, and the queue's attributes (three passes over its 300 messages each) were never built
    assert len(received) == 10
    assert builds["n"] == 0


def test_get_queue_attributes_builds_them_once_and_answers_as_moto_does(backend):
    # GIVEN the queue with 10 messages in flight, and moto's own answers taken before the patch
    moto_backend, _sqs, _url, builds = backend
    moto_backend.receive_message("q", 10, 0, 300)
    asked = [COUNTS, ["All"], ["VisibilityTimeout", "RedrivePolicy"], ["ApproximateNumberOfMessages"] * 2]
    before = [moto_backend.get_queue_attributes("q", names) for names in asked]
    builds["n"] = 0
    # WHEN the same questions are asked with the patch
    sqs_scan_costs.install()
    after = []
    for names in asked:
        builds["n"] = 0
        after.append(moto_backend.get_queue_attributes("q", names))
        # THEN each call built the attributes once (moto alone: three times per name, nine for the three counts)
        assert builds["n"] == 1, names
    # AND every answer is moto's own, to the key and value
    assert after == before
    assert after[0] == {COUNTS[0]: DEPTH - 10, COUNTS[1]: 10, COUNTS[2]: 0}


def test_a_pass_over_the_messages_reads_no_message_s_clock_and_finds_what_moto_finds(backend, monkeypatch):
    # GIVEN 300 messages of which 10 are in flight, and 5 more sent with a delay; moto's own view of them
    moto_backend, sqs, url, _builds = backend
    moto_backend.receive_message("q", 10, 0, 300)
    sqs.send_message_batch(
        QueueUrl=url, Entries=[{"Id": str(i), "MessageBody": "later", "DelaySeconds": 60} for i in range(5)]
    )
    queue = moto_backend.get_queue("q")

    def view():
        return (
            [m.id for m in queue.messages],
            queue.approximate_number_of_messages,
            queue.approximate_number_of_messages_not_visible,
            queue.approximate_number_of_messages_delayed,
        )

    before = view()
    # WHEN the patch is installed and every call to a message's own clock is counted
    sqs_scan_costs.install()
    reads = {"n": 0}
    for name in ("visible", "delayed"):
        original = getattr(Message, name)

        def counted(message, _original=original):
            reads["n"] += 1
            return _original.fget(message)

        monkeypatch.setattr(Message, name, property(counted))
    after = view()
    # THEN the same messages, in the same order, and the same counts: 290 visible, 10 in flight, 5 delayed
    assert after == before
    assert before[1:] == (DEPTH - 10, 10, 5)
    # AND no message read the clock (moto alone: two reads per message per pass, 305 messages, four passes)
    assert reads["n"] == 0


def test_bad_attribute_names_are_refused_as_moto_refuses_them(backend):
    # GIVEN the patch
    moto_backend, _sqs, _url, _builds = backend
    sqs_scan_costs.install()
    # WHEN an unknown or empty attribute name is asked for; THEN moto's own error; no names asks nothing
    for names in (["NoSuchAttribute"], [""]):
        with pytest.raises(InvalidAttributeName):
            moto_backend.get_queue_attributes("q", names)
    assert moto_backend.get_queue_attributes("q", []) == {}


def test_a_message_past_the_retention_period_is_still_not_received(backend):
    # GIVEN the patch, a queue keeping messages 60 s, one message sent just now and one (queued after it) 61 s ago
    moto_backend, sqs, _url, _builds = backend
    sqs_scan_costs.install()
    url = sqs.create_queue(QueueName="short", Attributes={"MessageRetentionPeriod": "60"})["QueueUrl"]
    sqs.send_message(QueueUrl=url, MessageBody="new")
    sqs.send_message(QueueUrl=url, MessageBody="old")
    old = next(m for m in moto_backend.get_queue("short")._messages if m.body == "old")
    old.sent_timestamp = int((time.time() - 61) * 1000)
    # WHEN both are asked for
    received = moto_backend.receive_message("short", 10, 0, 300)
    # THEN only the one still within its retention period comes back (moto's rule, kept)
    assert [m.body for m in received] == ["new"]


def test_the_patched_names_are_still_moto_s_own_entry_points():
    # GIVEN moto as locked; THEN the two methods the patch replaces exist and receive still calls the check:
    # an upgrade that renames them would leave the patch patching nothing
    import inspect

    import moto.sqs.models

    assert "self.is_message_valid_based_on_retention_period(" in inspect.getsource(moto.sqs.models)
    assert callable(getattr(SQSBackend, "get_queue_attributes", None))
