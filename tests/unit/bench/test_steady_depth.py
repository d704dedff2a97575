"""Unit tests of bench/steady_depth.py: the producer keeps a queue at a low depth while a consumer drains it."""

from __future__ import annotations

import time

import boto3
import pytest
from moto import mock_aws

from bench.steady_depth import SteadyProducer, top_up
from core.sqs_batches import message_counts


@pytest.mark.parametrize(
    ("visible", "depth", "remaining", "expected"),
    [(0, 20, 100, 10), (15, 20, 100, 5), (20, 20, 100, 0), (25, 20, 100, 0), (0, 20, 3, 3)],
)
def test_top_up_refills_to_the_depth_one_batch_at_a_time_never_past_the_total(visible, depth, remaining, expected):
    assert top_up(visible, depth, remaining) == expected


def test_a_depth_below_one_is_refused():
    with pytest.raises(ValueError, match="at least 1"):
        SteadyProducer(None, "url", [], depth=0, timeout=1, visible=lambda: 0)


def test_the_producer_holds_the_depth_while_a_consumer_drains_every_message():
    with mock_aws():
        # GIVEN a queue and a producer holding it at 5 visible messages, 40 to send
        sqs = boto3.client("sqs", region_name="us-east-1")
        url = sqs.create_queue(QueueName="steady")["QueueUrl"]
        bodies = [f"body-{i}" for i in range(40)]
        producer = SteadyProducer(
            sqs, url, bodies, depth=5, timeout=60, visible=lambda: message_counts(sqs, url)["visible"]
        ).start()
        producer.wait_filled()
        # WHEN a consumer receives and deletes until it has every message (bounded)
        seen: list[str] = []
        deadline = time.monotonic() + 60
        for _ in range(20_000):
            if len(seen) == len(bodies) or time.monotonic() > deadline:
                break
            messages = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", [])
            if not messages:
                time.sleep(0.005)  # the producer's turn
            for m in messages:
                seen.append(m["Body"])
                sqs.delete_message(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"])
        producer.stop()
        producer.check()
        # THEN every body arrived once, and the producer never saw more than the depth visible
        assert sorted(seen) == sorted(bodies)
        assert producer.sent == len(bodies)
        assert producer.max_visible_seen <= 5
