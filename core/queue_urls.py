"""A queue's URL by its SQS name, with an error that names the queue when it does not exist."""

from __future__ import annotations

from botocore.exceptions import ClientError

# What SQS (and moto) answer for GetQueueUrl of a missing queue, in the JSON and the query protocol.
MISSING_QUEUE_CODES = {"AWS.SimpleQueueService.NonExistentQueue", "QueueDoesNotExist"}


class QueueNotFoundError(LookupError):
    """No queue of this name at this endpoint: a wrong SQS_QUEUE_PREFIX or stage, or a stack not deployed
    (or, locally, not running)."""


def queue_url(sqs, name: str, *, prefix: str) -> str:
    try:
        return sqs.get_queue_url(QueueName=name)["QueueUrl"]
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") not in MISSING_QUEUE_CODES:
            raise
        endpoint = getattr(getattr(sqs, "meta", None), "endpoint_url", None) or "SQS"
        raise QueueNotFoundError(
            f"queue {name!r} does not exist at {endpoint} (SQS_QUEUE_PREFIX={prefix!r}): is the stack deployed "
            "for this stage and region, or, locally, is `make run` running?"
        ) from None
