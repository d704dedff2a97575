"""The hand-back: a message the worker restores (a lost pool child, a requeue, shutdown) is visible again at once."""

from __future__ import annotations

from botocore.exceptions import BotoCoreError, ClientError
from kombu.log import get_logger

from workers.finished_messages import finished_messages

logger = get_logger(__name__)


def hand_back(sqs, *, queue: str, queue_url: str, message: dict) -> None:
    """Visibility 0 for `message` (kombu's message dict, as its _put gets it back); kombu would hide it for
    wait_time_seconds (20 s) first. Marked finished first, so no heartbeat tick re-hides it afterwards
    (workers/finished_messages.py)."""
    receipt_handle = message["properties"]["delivery_tag"]
    finished_messages.finish(receipt_handle, after_extensions=True)
    try:
        sqs.change_message_visibility(QueueUrl=queue_url, ReceiptHandle=receipt_handle, VisibilityTimeout=0)
    except (ClientError, BotoCoreError) as exc:
        # E.g. ReceiptHandleIsInvalid after a pause past the visibility timeout: the message is back in the
        # queue already (or done by whoever took it), so there is nothing to hand back. Raising here would end
        # the worker (or, at shutdown, Celery's restore with an emergency dump).
        logger.warning(
            "could not hand back a message on %s (%s); it is visible again after its visibility timeout", queue, exc
        )
