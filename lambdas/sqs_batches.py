"""SQS batch helpers shared by the Lambdas: chunks of 10, and making held messages visible again."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from botocore.exceptions import BotoCoreError, ClientError

SQS_BATCH = 10  # the most SQS takes in one batch call


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
