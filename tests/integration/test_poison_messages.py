"""Messages the worker cannot run: it survives, logs why, and each one reaches the DLQ intact."""

from __future__ import annotations

import base64
import contextlib
import json
import uuid

import pytest

from devstack import processes
from tests.integration.conftest import post_job, wait_for_job

pytestmark = pytest.mark.integration


def _b64(data: bytes | str) -> str:
    return base64.b64encode(data.encode() if isinstance(data, str) else data).decode()


def _envelope(*, headers: dict, body: bytes, content_type: str = "application/json") -> str:
    """A kombu SQS envelope built by hand, as a foreign or broken producer might."""
    envelope = {
        "body": _b64(body),
        "content-encoding": "utf-8" if content_type == "application/json" else "binary",
        "content-type": content_type,
        "headers": headers,
        "properties": {
            "delivery_info": {"exchange": "default", "routing_key": "default"},
            "body_encoding": "base64",
            "delivery_tag": str(uuid.uuid4()),
            "priority": 0,
        },
    }
    return _b64(json.dumps(envelope))


def _celery_headers(task: str) -> dict:
    task_id = str(uuid.uuid4())
    return {"lang": "py", "task": task, "id": task_id, "root_id": task_id, "retries": 0, "argsrepr": "()"}


POISON = {
    "unknown task name": _envelope(
        headers=_celery_headers("no.such.task"), body=json.dumps([[], {}, {}]).encode()
    ),
    "body not JSON": _envelope(headers=_celery_headers("jobs.echo"), body=b"{this is not json"),
    "pickle content type": _envelope(
        headers=_celery_headers("jobs.echo"),
        body=b"\x80\x04\x95\x05\x00\x00\x00\x00\x00\x00\x00]\x94.",
        content_type="application/x-python-serialize",
    ),
    "no Celery headers": _envelope(headers={}, body=json.dumps({"hello": "world"}).encode()),
    "invalid base64 envelope": "%%% definitely not base64 %%%",
}


def test_each_poison_kind_reaches_the_dlq_and_the_worker_keeps_working(client, start_worker, queues):
    # GIVEN a worker
    worker = start_worker()

    # WHEN one message of each poison kind is put on the default queue
    for body in POISON.values():
        queues.send_raw("default", body)

    # THEN every one of them reaches the DLQ within maxReceiveCount receives, unchanged
    bodies: set[str] = set()

    def all_dead_lettered() -> bool:
        bodies.update(m["Body"] for m in queues.receive_dlq("default"))
        return len(bodies) == len(POISON)

    with contextlib.suppress(TimeoutError):
        processes.wait_for(all_dead_lettered, timeout=60, interval=0.5, what="every poison message in the DLQ")
    missing = [kind for kind, body in POISON.items() if body not in bodies]
    assert not missing, f"not in the DLQ unchanged: {missing}; default queue now {queues.depth('default')}"
    assert queues.drained("default")

    # AND the worker survived, logged why, and still runs a normal task
    assert worker.alive()
    log = worker.log()
    assert "no.such.task" in log
    ok = post_job(client, kind="echo", payload={"message": "after poison"})
    assert wait_for_job(ok.json()["job_id"], {"succeeded"}).attempts == 1
