"""A message the worker cannot route is kept for the redrive policy, and the log says so (never "deleted")."""

from __future__ import annotations

import contextlib
import json
import uuid

import pytest

from core.envelope import encode_sqs_body
from devstack import processes

pytestmark = pytest.mark.integration

KEPT = "kept: the redrive policy moves it to the DLQ after maxReceiveCount receives"
CELERYS_FALSE_LINES = ("Received and deleted unknown message", "The message has been ignored and discarded")


def _envelope(headers: dict, body: object) -> str:
    """A kombu SQS envelope with a JSON body, as a foreign producer might send it."""
    import base64

    return encode_sqs_body(
        {
            "body": base64.b64encode(json.dumps(body).encode()).decode(),
            "content-encoding": "utf-8",
            "content-type": "application/json",
            "headers": headers,
            "properties": {
                "delivery_info": {"exchange": "default", "routing_key": "default"},
                "body_encoding": "base64",
                "delivery_tag": str(uuid.uuid4()),
                "priority": 0,
            },
        }
    )


def test_unroutable_messages_are_logged_as_kept_not_deleted(start_worker, queues):
    # GIVEN a worker, a message with no Celery headers and a task name no worker knows
    worker = start_worker()
    task_id = str(uuid.uuid4())
    bodies = [
        _envelope({}, {"hello": "world"}),
        _envelope({"task": "no.such.task", "id": task_id, "root_id": task_id, "retries": 0}, [[], {}, {}]),
    ]

    # WHEN both are received until the redrive policy moves them to the DLQ
    for body in bodies:
        queues.send_raw("default", body)
    seen: set[str] = set()

    def both_dead_lettered() -> bool:
        seen.update(m["Body"] for m in queues.receive_dlq("default"))
        return len(seen) == len(bodies)

    with contextlib.suppress(TimeoutError):
        processes.wait_for(both_dead_lettered, timeout=45, interval=0.5, what="both messages in the DLQ")

    # THEN they are in the DLQ, and every receive logged that the message is kept, once, with no false line
    assert seen == set(bodies)
    log = worker.log()
    for line in CELERYS_FALSE_LINES:
        assert line not in log
    kept = [line for line in log.splitlines() if KEPT in line]
    received = log.count("Received unregistered task") + log.count("Received a message that is not a Celery task")
    assert len([line for line in kept if "no.such.task" in line and task_id in line]) >= 1
    assert len(kept) == received >= 2, kept
