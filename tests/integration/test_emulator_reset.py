"""What SIGKILL at teardown relies on: a long poll a killed worker leaves open in the emulator cannot take a
message of the next test, because the `queues` fixture resets the emulator and a poll holds the queue it began on."""

from __future__ import annotations

import threading
import time

import pytest

from devstack.moto_server import reset
from devstack.queues import sqs_client

pytestmark = pytest.mark.integration

POLL_SECONDS = 4


def test_a_long_poll_open_across_a_reset_never_takes_a_message_sent_after_it(sqs_endpoint):
    # GIVEN a queue with a long poll waiting on it (what a SIGKILLed worker leaves in the emulator)
    reset(sqs_endpoint)
    url = sqs_client(sqs_endpoint).create_queue(QueueName="t-reset")["QueueUrl"]
    stale: dict = {}

    def long_poll() -> None:
        started = time.monotonic()
        stale.update(sqs_client(sqs_endpoint).receive_message(QueueUrl=url, WaitTimeSeconds=POLL_SECONDS))
        stale["waited"] = time.monotonic() - started

    poll = threading.Thread(target=long_poll)
    poll.start()
    time.sleep(1)  # nothing to wait on: the poll gives no sign that it reached the emulator

    # WHEN the next test resets the emulator, creates the same queue again and sends to it
    reset(sqs_endpoint)
    client = sqs_client(sqs_endpoint)
    new_url = client.create_queue(QueueName="t-reset")["QueueUrl"]
    client.send_message(QueueUrl=new_url, MessageBody="next test")

    # THEN the old poll ends empty, and the message is there for the next test's consumer
    poll.join(timeout=POLL_SECONDS + 10)
    assert not poll.is_alive()
    assert stale["waited"] >= POLL_SECONDS - 0.5, "the poll never waited: it cannot have been open across the reset"
    assert stale.get("Messages", []) == []
    received = client.receive_message(QueueUrl=new_url, WaitTimeSeconds=1).get("Messages", [])
    assert [m["Body"] for m in received] == ["next test"]
