"""What the soak publishes besides its own producer's tasks (a stock Celery producer's ETA), and what its DLQ holds."""

from __future__ import annotations

import functools
from datetime import datetime

from core.envelope import EnvelopeError, decode_sqs_body
from devstack.queues import sqs_client

DLQ_READ_ROUNDS = 200  # receives of 10 at most: 2000 messages, the largest soak


@functools.cache
def _stock_app(endpoint: str, queue_url: str):
    """A plain Celery producer on kombu's own SQS transport: it sends an ETA as a header, with no DelaySeconds."""
    from celery import Celery

    broker = f"sqs://testing:testing@{endpoint.split('://', 1)[1]}"
    app = Celery("soak-stock-producer", broker=broker, set_as_current=False)
    app.conf.update(
        broker_transport_options={
            "region": "us-east-1",
            "is_secure": False,
            "predefined_queues": {"default": {"url": queue_url}},
        },
        task_default_queue="default",
        task_serializer="json",
    )
    return app


def publish_stock_eta(endpoint: str, queue_url: str, task_id: str, *, key: str, seconds: float, eta: datetime) -> None:
    app = _stock_app(endpoint, queue_url)
    with app.connection_for_write() as conn:
        app.send_task(
            "jobs.record_effect", kwargs={"key": key, "seconds": seconds}, task_id=task_id, eta=eta, connection=conn
        )


def dlq_task_ids(url: str, *, endpoint_url: str) -> list[str | None]:
    """The task id of every message in the DLQ at `url` (None for a body that is not a Celery envelope).
    Each message read is hidden for a minute, so each is read once; the soak is over, nothing else reads it."""
    sqs = sqs_client(endpoint_url)
    found: list[str | None] = []
    for _ in range(DLQ_READ_ROUNDS):
        got = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=0, VisibilityTimeout=60)
        messages = got.get("Messages", [])
        if not messages:
            break
        for message in messages:
            try:
                found.append(decode_sqs_body(message["Body"]).task_id)
            except EnvelopeError:
                found.append(None)
    return found
