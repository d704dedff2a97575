"""Refuse publishes SQS would mishandle: delays it cannot hold, bodies over the queue's size limit."""

from __future__ import annotations

import math

from workers.topology import SQS_MAX_DELAY_SECONDS


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


def check_encoded_size(*, queue: str, encoded_bytes: int, max_message_bytes: int) -> None:
    """Refuse a message whose final SQS body (after kombu's two base64 passes) is over the limit."""
    if encoded_bytes > max_message_bytes:
        raise PayloadTooLarge(
            f"refused to publish to queue {queue!r}: the encoded message is {encoded_bytes} bytes, over "
            f"the queue's maximum message size of {max_message_bytes} bytes (kombu base64-encodes the "
            f"body twice, about 1.78x the JSON payload); store large data elsewhere and pass a reference"
        )
