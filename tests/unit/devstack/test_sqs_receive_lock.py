"""devstack/sqs_receive_lock.py: concurrent receives on the emulator deliver each message once, and never fail."""

from __future__ import annotations

import sys
import threading
import time
from collections import Counter

import boto3
import pytest
from moto import mock_aws
from moto.sqs.models import Queue, SQSBackend, sqs_backends

from devstack import sqs_receive_lock

ACCOUNT, REGION = "123456789012", "us-east-1"
MESSAGES, THREADS = 200, 8


@pytest.fixture
def backend(monkeypatch):
    """moto in-process with 200 messages queued, its SQS backend patched back after the test."""
    for name in ("receive_message", "delete_message", "change_message_visibility"):
        monkeypatch.setattr(SQSBackend, name, getattr(SQSBackend, name))
    monkeypatch.setattr(Queue, "wait_for_messages", Queue.wait_for_messages)
    with mock_aws():
        sqs = boto3.client("sqs", region_name=REGION)
        url = sqs.create_queue(QueueName="q", Attributes={"VisibilityTimeout": "300"})["QueueUrl"]
        for start in range(0, MESSAGES, 10):
            entries = [{"Id": str(i), "MessageBody": str(start + i)} for i in range(10)]
            sqs.send_message_batch(QueueUrl=url, Entries=entries)
        yield sqs_backends[ACCOUNT][REGION], sqs, url


def drain_concurrently(backend) -> tuple[Counter, list[BaseException]]:
    """THREADS threads receive 4 at a time until the queue is empty, switching as often as CPython allows:
    deliveries per body, and what was raised."""
    delivered: Counter = Counter()
    errors: list[BaseException] = []

    def receive() -> None:
        for _ in range(MESSAGES):  # bounded: each pass takes at least one message or ends
            try:
                got = backend.receive_message("q", 4, 0, 300)
            except Exception as exc:  # noqa: BLE001 (what the emulator would answer with a 500)
                errors.append(exc)
                continue
            if not got:
                return
            delivered.update(m.body for m in got)

    threads = [threading.Thread(target=receive) for _ in range(THREADS)]
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
    finally:
        sys.setswitchinterval(interval)
    return delivered, errors


def test_concurrent_receives_deliver_each_message_once_without_errors(backend):
    # GIVEN the emulator's receive lock and 200 messages
    moto_backend, _sqs, _url = backend
    sqs_receive_lock.install()
    # WHEN 8 threads receive at once (without the lock, 2026-12-02: 1-5 duplicates a run, and receives failing
    # with "Set changed size during iteration")
    delivered, errors = drain_concurrently(moto_backend)
    # THEN every message was delivered exactly once, and no receive failed
    assert errors == []
    assert len(delivered) == MESSAGES
    assert [body for body, n in delivered.items() if n > 1] == []


def test_a_long_poll_gives_the_lock_up_while_it_waits(backend):
    # GIVEN the lock, and an empty queue long-polled for 3 s
    moto_backend, sqs, _url = backend
    sqs_receive_lock.install()
    url = sqs.create_queue(QueueName="empty")["QueueUrl"]
    polled: list = []
    poll = threading.Thread(target=lambda: polled.extend(moto_backend.receive_message("empty", 1, 3, 300)))
    poll.start()
    time.sleep(0.2)
    # WHEN another receive (which takes the lock) runs while the poll waits
    other = moto_backend.receive_message("empty", 1, 0, 300)
    # THEN it was answered while the poll still waited: the waiting poll held no lock
    assert other == [] and poll.is_alive()
    # AND a message sent meanwhile reaches the poll, and its delete (the lock again) goes through
    sqs.send_message(QueueUrl=url, MessageBody="late")
    poll.join(timeout=10)
    assert [m.body for m in polled] == ["late"]
    sqs.delete_message(QueueUrl=url, ReceiptHandle=polled[0].receipt_handle)
    assert moto_backend.receive_message("empty", 1, 0, 300) == []
