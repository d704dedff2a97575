"""Refuse publishes SQS would mishandle: delays longer than the queue accepts, bodies over its size limit."""

from __future__ import annotations

import math
from typing import Any

from kombu.utils.json import dumps

from core.topology import LONG_DELAY_MARGIN_SECONDS, SQS_MAX_DELAY_SECONDS, longest_delay_seconds


class PublishRefused(ValueError):
    """A message was refused before SQS saw it; nothing was sent."""


class DelayTooLong(PublishRefused):
    """The requested countdown/ETA is longer than the queue accepts."""


class PayloadTooLarge(PublishRefused):
    """The encoded message is larger than the queue accepts."""


def sqs_delay_seconds(*, queue: str, delay: float, retention_seconds: int) -> int | None:
    """The DelaySeconds of the first leg of `delay`, or None for no delay; refuse delays longer than the queue
    accepts (its retention less LONG_DELAY_MARGIN_SECONDS).

    SQS holds a message at most 900 s. A longer delay keeps its `eta` header and the worker that receives it
    hops it (workers/eta_hop.py): back into SQS with the time left, never held past its visibility timeout.
    """
    if delay <= 0:
        return None
    seconds = math.ceil(delay)  # never earlier than asked
    longest = longest_delay_seconds(retention_seconds)
    if seconds > longest:
        raise DelayTooLong(
            f"refused to publish to queue {queue!r}: a delay of {seconds} s is longer than the queue accepts "
            f"({longest} s: its message retention of {retention_seconds} s less {LONG_DELAY_MARGIN_SECONDS} s); "
            f"schedule it with beat instead"
        )
    return min(seconds, SQS_MAX_DELAY_SECONDS)


def encoded_message_bytes(message: dict[str, Any], *, sqs_base64: bool = True) -> int:
    """The size of the SQS body kombu sends for a message dict: its JSON, base64-encoded once more by the SQS
    transport (the task body inside is base64 already): about 1.78x the task's JSON for a large body."""
    body = dumps(message).encode("utf-8")
    return 4 * math.ceil(len(body) / 3) if sqs_base64 else len(body)


def check_encoded_size(*, queue: str, encoded_bytes: int, max_message_bytes: int) -> None:
    """Refuse a message whose final SQS body (after kombu's two base64 passes) is over the limit."""
    if encoded_bytes > max_message_bytes:
        raise PayloadTooLarge(
            f"refused to publish to queue {queue!r}: the encoded message is {encoded_bytes} bytes, over "
            f"the queue's maximum message size of {max_message_bytes} bytes (kombu base64-encodes the "
            f"body twice, about 1.78x the JSON payload); store large data elsewhere and pass a reference"
        )
