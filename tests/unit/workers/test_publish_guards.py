"""Unit tests of workers/publish_guards.py: delays the queue accepts, bodies it accepts."""

from __future__ import annotations

import base64
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st
from kombu.asynchronous.aws.sqs.message import AsyncMessage
from kombu.utils.json import dumps

from core.topology import LONG_DELAY_MARGIN_SECONDS
from workers.publish_guards import (
    DelayTooLong,
    PayloadTooLarge,
    PublishRefused,
    check_encoded_size,
    encoded_message_bytes,
    sqs_delay_seconds,
)

RETENTION = 4 * 86_400  # the default queue's 4 days: delays up to 4 days less 900 s


@pytest.mark.parametrize(
    "delay,expected",
    [(0, None), (-3, None), (-0.5, None), (0.2, 1), (1, 1), (1.0001, 2), (899.1, 900), (900, 900)],
)
def test_sqs_delay_seconds(delay, expected):
    # GIVEN a requested delay
    # WHEN converted to DelaySeconds
    result = sqs_delay_seconds(queue="default", delay=delay, retention_seconds=RETENTION)
    # THEN no delay, or the delay rounded up (never earlier than asked)
    assert result == expected


@pytest.mark.parametrize("delay", [900.01, 901, 86_400, RETENTION - LONG_DELAY_MARGIN_SECONDS])
def test_a_delay_over_900_travels_its_first_900_s_as_delay_seconds(delay):
    # GIVEN a delay longer than SQS holds a message, within the queue's retention less the margin
    # WHEN converted THEN the first leg is SQS's maximum (the worker hops the rest)
    assert sqs_delay_seconds(queue="default", delay=delay, retention_seconds=RETENTION) == 900


def test_delay_over_the_retention_bound_refused():
    # GIVEN a delay one second longer than the queue's retention less the margin
    too_long = RETENTION - LONG_DELAY_MARGIN_SECONDS + 1
    # WHEN converted
    with pytest.raises(DelayTooLong) as excinfo:
        sqs_delay_seconds(queue="default", delay=too_long, retention_seconds=RETENTION)
    # THEN the message names the queue, the delay, the bound and where it comes from
    message = str(excinfo.value)
    assert "'default'" in message
    assert f"{too_long} s" in message
    assert f"({RETENTION - LONG_DELAY_MARGIN_SECONDS} s: its message retention of {RETENTION} s less 900 s)" in message
    # AND it is a PublishRefused (the API answers 400 for it)
    assert isinstance(excinfo.value, PublishRefused)


def test_fractional_delay_just_over_the_bound_refused():
    # GIVEN 2700.01 s on a queue that keeps messages an hour (bound 2700 s), which rounds up to 2701
    # WHEN converted THEN it is refused
    with pytest.raises(DelayTooLong, match="2701 s"):
        sqs_delay_seconds(queue="low_priority", delay=2700.01, retention_seconds=3600)


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


# --- size arithmetic -----------------------------------------------------------------------------------


def _kombu_message(task_json: bytes) -> dict:
    """A kombu message dict as the virtual channel hands it to the SQS channel's _put (body base64 once)."""
    return {
        "body": base64.b64encode(task_json).decode("ascii"),
        "content-encoding": "utf-8",
        "content-type": "application/json",
        "headers": {"task": "jobs.echo", "id": "0" * 36, "retries": 0},
        "properties": {"body_encoding": "base64", "delivery_tag": "x", "priority": 0},
    }


@given(st.binary(max_size=5_000), st.booleans())
def test_encoded_size_is_what_kombus_sqs_channel_sends(task_json, sqs_base64):
    # GIVEN any task body, with or without the SQS transport's own base64 pass
    message = _kombu_message(task_json)
    # WHEN measured THEN it is the length of the body kombu 5.7's Channel._put would send
    sent = AsyncMessage().encode(dumps(message)) if sqs_base64 else dumps(message)
    assert encoded_message_bytes(message, sqs_base64=sqs_base64) == len(sent.encode("utf-8"))


@pytest.mark.parametrize("size", [100_000, 500_000, 2_000_000])
def test_a_large_body_grows_about_1_78_times(size):
    # GIVEN a task's JSON of `size` bytes
    message = _kombu_message(json.dumps({"blob": "x" * (size - 12)}).encode())
    # WHEN measured THEN base64 twice makes it (4/3)^2 = 1.78x, plus the envelope
    ratio = encoded_message_bytes(message) / size
    assert 1.777 < ratio < 1.79


def test_the_largest_task_json_that_fits_1_mib_is_about_589_kb():
    # GIVEN SQS's 1 MiB limit
    fits = [n for n in range(585_000, 592_000, 250) if encoded_message_bytes(_kombu_message(b"x" * n)) <= 1_048_576]
    # THEN the largest task JSON that fits is 1 MiB / 1.78 less the envelope
    assert 588_000 < max(fits) < 590_000
