"""SQS helpers shared by the Lambdas, the api's queues page and the local stack: chunks of 10, send batches cut by
size, making held messages visible again, and a queue's message counts."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Iterator
from typing import TypeVar

from botocore.exceptions import BotoCoreError, ClientError

SQS_BATCH = 10  # the most SQS takes in one batch call
SQS_BATCH_MAX_BYTES = 1_048_576  # SendMessageBatch: all entries together (else BatchRequestTooLong)
T = TypeVar("T")
# A queue's messages by state, and the GetQueueAttributes attribute that counts each.
COUNT_ATTRIBUTES = {
    "visible": "ApproximateNumberOfMessages",
    "in_flight": "ApproximateNumberOfMessagesNotVisible",
    "delayed": "ApproximateNumberOfMessagesDelayed",
}


def message_counts(sqs, url: str) -> dict[str, int]:
    """Visible, in-flight and delayed messages of one queue: one GetQueueAttributes, nothing received."""
    attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=list(COUNT_ATTRIBUTES.values()))["Attributes"]
    return {name: int(attributes[attribute]) for name, attribute in COUNT_ATTRIBUTES.items()}


def chunks(items: list, size: int = SQS_BATCH) -> Iterator[list]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def batches_within(
    items: Iterable[T], *, size_of: Callable[[T], int], max_bytes: int = SQS_BATCH_MAX_BYTES, max_count: int = SQS_BATCH
) -> Iterator[list[T]]:
    """Consecutive batches of at most `max_count` items and `max_bytes` in all, in order; a batch closes only when
    the next item would not fit. An item larger than `max_bytes` goes alone (SQS then refuses that entry)."""
    batch: list[T] = []
    total = 0
    for item in items:
        size = size_of(item)
        if batch and (len(batch) == max_count or total + size > max_bytes):
            yield batch
            batch, total = [], 0
        batch.append(item)
        total += size
    if batch:
        yield batch


def receive_fresh(sqs, url: str, *, count: int, hold_seconds: int, seen: set[str]) -> list[dict]:
    """One ReceiveMessage (1 s long poll, so every server is asked) holding what it gets for `hold_seconds`,
    less the messages already in `seen`, which it adds them to."""
    response = sqs.receive_message(
        QueueUrl=url,
        MaxNumberOfMessages=count,
        VisibilityTimeout=hold_seconds,
        WaitTimeSeconds=1,
        MessageSystemAttributeNames=["SentTimestamp"],
    )
    fresh = [m for m in response.get("Messages", []) if m["MessageId"] not in seen]
    seen.update(m["MessageId"] for m in fresh)
    return fresh


def make_visible(sqs, url: str, messages: list[dict]) -> None:
    """Put received messages back at once (visibility 0). A failure only delays them: they come back
    when the visibility timeout they were received with runs out."""
    for chunk in chunks(messages):
        entries = [
            {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"], "VisibilityTimeout": 0} for i, m in enumerate(chunk)
        ]
        with contextlib.suppress(ClientError, BotoCoreError):
            sqs.change_message_visibility_batch(QueueUrl=url, Entries=entries)
