"""Unit tests of workers/publish_guards.py: delays SQS can hold, bodies the queue accepts."""

from __future__ import annotations

import pytest

from workers.publish_guards import (
    DelayTooLong,
    PayloadTooLarge,
    PublishRefused,
    check_encoded_size,
    sqs_delay_seconds,
)


@pytest.mark.parametrize(
    "delay,expected",
    [(0, None), (-3, None), (-0.5, None), (0.2, 1), (1, 1), (1.0001, 2), (899.1, 900), (900, 900)],
)
def test_sqs_delay_seconds(delay, expected):
    # GIVEN a requested delay
    # WHEN converted to DelaySeconds
    result = sqs_delay_seconds(queue="default", delay=delay, visibility_timeout=360)
    # THEN no delay, or the delay rounded up (never earlier than asked)
    assert result == expected


def test_delay_over_900_refused():
    # GIVEN a delay of 901 s on a queue with a 360 s visibility timeout
    # WHEN converted
    with pytest.raises(DelayTooLong) as excinfo:
        sqs_delay_seconds(queue="default", delay=901, visibility_timeout=360)
    # THEN the message names the queue, the delay, SQS's maximum and the visibility timeout
    message = str(excinfo.value)
    assert "'default'" in message
    assert "901 s" in message
    assert "900 s" in message
    assert "360 s" in message
    # AND it is a PublishRefused (the API answers 400 for it)
    assert isinstance(excinfo.value, PublishRefused)


def test_fractional_delay_just_over_900_refused():
    # GIVEN 900.01 s, which rounds up to 901
    # WHEN converted THEN it is refused
    with pytest.raises(DelayTooLong, match="901 s"):
        sqs_delay_seconds(queue="low_priority", delay=900.01, visibility_timeout=1020)


def test_encoded_size_at_limit_accepted():
    # GIVEN a body exactly at the limit
    # WHEN checked THEN nothing is raised
    assert check_encoded_size(queue="default", encoded_bytes=262_144, max_message_bytes=262_144) is None


def test_encoded_size_over_limit_refused():
    # GIVEN a body one byte over the limit
    # WHEN checked
    with pytest.raises(PayloadTooLarge) as excinfo:
        check_encoded_size(queue="high_priority", encoded_bytes=262_145, max_message_bytes=262_144)
    # THEN the message names the queue and both sizes
    message = str(excinfo.value)
    assert "'high_priority'" in message
    assert "262145 bytes" in message
    assert "262144 bytes" in message
    assert isinstance(excinfo.value, PublishRefused)
