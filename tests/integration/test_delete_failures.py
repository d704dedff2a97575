"""Deletes that cannot silently stop: a delete that raises anything does not end the delete path, and deletes
SQS keeps refusing make the worker unhealthy, with one ERROR a minute at most."""

from __future__ import annotations

import base64
import json
import re
import uuid

import pytest

from devstack import processes
from devstack.fault_proxy import FaultProxy
from tests.integration.conftest import post_job, wait_for_job, worker_health
from tests.integration.sqs_refusing_proxy import SqsRefusingProxy

pytestmark = pytest.mark.integration


def _b64(data: str) -> str:
    return base64.b64encode(data.encode()).decode()


def _foreign_envelope(*, task: str, routing_key: str) -> str:
    """A Celery message from another producer whose delivery_info names a queue this worker does not define
    (kombu reads the routing key for the ack's client lookup from the message body)."""
    task_id = str(uuid.uuid4())
    envelope = {
        "body": _b64(json.dumps([[], {}, {"callbacks": None, "errbacks": None, "chain": None, "chord": None}])),
        "content-encoding": "utf-8",
        "content-type": "application/json",
        "headers": {"lang": "py", "task": task, "id": task_id, "root_id": task_id, "retries": 0, "argsrepr": "()"},
        "properties": {
            "delivery_info": {"exchange": "", "routing_key": routing_key},
            "body_encoding": "base64",
            "delivery_tag": str(uuid.uuid4()),
            "priority": 0,
        },
    }
    return _b64(json.dumps(envelope))


def test_a_delete_that_raises_a_non_botocore_error_does_not_stop_later_deletes(client, start_worker, queues):
    # GIVEN a worker, and first a message whose ack's client lookup raises kombu's UndefinedQueueException
    worker = start_worker()
    queues.send_raw("default", _foreign_envelope(task="jobs.noop", routing_key="elsewhere"))
    processes.wait_for(
        lambda: "UndefinedQueueException" in worker.log(), timeout=30, interval=0.2, what="the failed delete"
    )

    # WHEN a job runs after it
    job = post_job(client, kind="echo", payload={"message": "after"})
    task_id = wait_for_job(job.json()["job_id"], {"succeeded"}).task_id

    # THEN its message is deleted: by the time the foreign message (whose delete cannot work) has come back
    # and been redriven to the DLQ, the job ran once and the queue is empty
    processes.wait_for(lambda: sum(queues.dlq_depth("default").values()) == 1, timeout=45, interval=0.5, what="DLQ")
    assert worker.log().count(f"jobs.echo[{task_id}] received") == 1
    assert queues.total("default") == 0
    assert worker.alive()


def test_deletes_refused_with_access_denied_make_the_worker_unhealthy_and_log_one_error(
    client, start_worker, queues, tmp_path
):
    # GIVEN a worker whose endpoint refuses every delete with AccessDenied (a task role without
    # sqs:DeleteMessage), with its own health files
    proxy = SqsRefusingProxy(int(queues.endpoint.rsplit(":", 1)[1]), refuse={"DeleteMessage", "DeleteMessageBatch"})
    proxy.start()
    env = {"SQS_ENDPOINT_URL": proxy.endpoint, "WORKER_LIVENESS_FILE": str(tmp_path / "liveness")}
    try:
        worker = start_worker(env=env)

        # WHEN three jobs run and their acks cannot be deleted
        jobs = [post_job(client, kind="echo", payload={"message": str(i)}).json()["job_id"] for i in range(3)]
        for job_id in jobs:
            wait_for_job(job_id, {"succeeded"})

        # THEN the health check fails, naming the deletes and how many acked messages are not deleted
        failed = processes.wait_for(
            lambda: (r := worker_health(env)).returncode == 1 and r, timeout=20, interval=0.5, what="unhealthy"
        )
        assert "worker unhealthy: deletes failing:" in failed.stderr
        assert "acked messages not deleted since" in failed.stderr
        # AND the refused deletes were retried (not dropped after one try)
        processes.wait_for(lambda: proxy.refused.total() >= 6, timeout=30, interval=0.2, what="deletes retried")
        # AND the worker logged the failure at ERROR once (at most once a minute), with the count
        errors = [line for line in worker.log().splitlines() if "ERROR" in line and "deletes failing:" in line]
        assert len(errors) == 1, errors
        print(f"refused deletes: {dict(proxy.refused)}, ERROR lines: {len(errors)}")
        assert worker.alive()
    finally:
        proxy.stop()


def test_deletes_throttled_past_the_set_time_make_the_worker_unhealthy_until_they_work_again(
    client, start_worker, queues, tmp_path
):
    # GIVEN a worker behind the fault proxy that counts a delete failure lasting 2 s as unhealthy
    with FaultProxy(int(queues.endpoint.rsplit(":", 1)[1]), http=True) as proxy:
        env = {
            "SQS_ENDPOINT_URL": proxy.url,
            "WORKER_LIVENESS_FILE": str(tmp_path / "liveness"),
            "WORKER_DELETE_FAILURE_SECONDS": "2",
        }
        worker = start_worker(env=env)

        # WHEN SQS throttles every DeleteMessageBatch while a job's ack waits to be deleted
        proxy.set_mode("throttle", actions="DeleteMessageBatch")
        first = post_job(client, kind="echo", payload={"message": "throttled"}).json()["job_id"]
        wait_for_job(first, {"succeeded"})

        # THEN once the failure has lasted 2 s the health check fails, naming the deletes
        failed = processes.wait_for(
            lambda: (r := worker_health(env)).returncode == 1 and r, timeout=20, interval=0.5, what="unhealthy"
        )
        # (1, or 2 when the check first reads the failure after the test queue's short visibility timeout has
        # handed the job out again and its second ack is refused too)
        held = re.search(r"deletes failing: (\d+) acked messages not deleted since", failed.stderr)
        assert held and int(held.group(1)) >= 1, failed.stderr

        # WHEN SQS deletes again
        proxy.set_mode("pass")
        second = post_job(client, kind="echo", payload={"message": "works"}).json()["job_id"]
        wait_for_job(second, {"succeeded"})

        # THEN the worker is healthy again without a restart, and says so
        processes.wait_for(lambda: worker_health(env).returncode == 0, timeout=20, interval=0.5, what="healthy again")
        assert "SQS deletes work again" in worker.log()
        counts = proxy.snapshot()
        assert counts["faulted"]["DeleteMessageBatch"] >= 2  # the first delete was retried
        print(f"throttled deletes: {counts['faulted']['DeleteMessageBatch']}, seen: {dict(counts['seen'])}")
