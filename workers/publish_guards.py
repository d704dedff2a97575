"""Refuse publishes SQS would mishandle: delays it cannot hold, bodies over the queue's size limit."""

from __future__ import annotations

import math
from typing import Any

from kombu.utils.json import dumps

from workers.topology import SQS_MAX_DELAY_SECONDS

# SQS bills each 64 KiB chunk of a request's payload as one request (a 256 KiB message: 4 requests).
SQS_BILLING_CHUNK_BYTES = 65_536


class PublishRefused(ValueError):
    """A message was refused before SQS saw it; nothing was sent."""


class DelayTooLong(PublishRefused):
    """The requested countdown/ETA cannot travel as SQS DelaySeconds."""


class PayloadTooLarge(PublishRefused):
    """The encoded message is larger than the queue accepts."""


def sqs_delay_seconds(*, queue: str, delay: float, visibility_timeout: int) -> int | None:
    """The DelaySeconds that carries `delay`, or None for no delay; refuse delays SQS cannot hold.

    A delay held by a worker as an ETA outlives the visibility timeout and the message is delivered
    again (and run again) every visibility timeout, so delays go to SQS, which holds at most 900 s.
    """
    if delay <= 0:
        return None
    seconds = math.ceil(delay)  # never earlier than asked
    if seconds > SQS_MAX_DELAY_SECONDS:
        raise DelayTooLong(
            f"refused to publish to queue {queue!r}: a delay of {seconds} s is longer than SQS can hold "
            f"a message ({SQS_MAX_DELAY_SECONDS} s DelaySeconds), and a worker holding it as an ETA past "
            f"the queue's visibility timeout ({visibility_timeout} s) would run it several times; "
            f"schedule it with beat instead"
        )
    return seconds


def encoded_message_bytes(message: dict[str, Any], *, sqs_base64: bool = True) -> int:
    """The size of the SQS body kombu sends for a message dict: its JSON, base64-encoded once more by the SQS
    transport (the task body inside is base64 already): about 1.78x the task's JSON for a large body."""
    body = dumps(message).encode("utf-8")
    return 4 * math.ceil(len(body) / 3) if sqs_base64 else len(body)


def billed_requests(payload_bytes: int) -> int:
    """The requests SQS bills for one call carrying `payload_bytes`: one per started 64 KiB chunk, at least one."""
    return max(1, math.ceil(payload_bytes / SQS_BILLING_CHUNK_BYTES))


def check_encoded_size(*, queue: str, encoded_bytes: int, max_message_bytes: int) -> None:
    """Refuse a message whose final SQS body (after kombu's two base64 passes) is over the limit."""
    if encoded_bytes > max_message_bytes:
        raise PayloadTooLarge(
            f"refused to publish to queue {queue!r}: the encoded message is {encoded_bytes} bytes, over "
            f"the queue's maximum message size of {max_message_bytes} bytes (kombu base64-encodes the "
            f"body twice, about 1.78x the JSON payload); store large data elsewhere and pass a reference"
        )
