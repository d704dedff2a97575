"""SQS helpers shared by the Lambdas, the api's queues page and the local stack: chunks of 10, making held
messages visible again, and a queue's message counts."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from botocore.exceptions import BotoCoreError, ClientError

SQS_BATCH = 10  # the most SQS takes in one batch call
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
