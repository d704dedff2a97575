"""Failures and messages the worker cannot read end in the DLQ; the worker keeps working."""

from __future__ import annotations

import pytest
from django.conf import settings

from core.envelope import decode_sqs_body
from devstack import processes
from tests.integration.conftest import post_job, wait_for_job

pytestmark = pytest.mark.integration


def test_failing_task_reaches_its_dlq_after_retries_and_receives(client, start_worker, queues):
    # GIVEN a worker, and the default queue's retry and redrive settings
    topology = settings.QUEUE_TOPOLOGY
    max_retries = topology.retry.max_retries
    max_receives = topology.queue("default").max_receive_count
    worker = start_worker()

    # WHEN a job that always fails is posted
    response = post_job(client, kind="fail", payload={"message": "boom"})
    job_id, task_id = response.json()["job_id"], response.json()["task_id"]

    # THEN after its retries and maxReceiveCount receives, SQS moves it to the default DLQ
    processes.wait_for(
        lambda: queues.dlq_depth("default")["visible"] == 1, timeout=90, what="the failed task in the DLQ"
    )
    messages = queues.receive_dlq("default")
    assert len(messages) == 1
    envelope = decode_sqs_body(messages[0]["Body"])
    assert envelope.task_name == "jobs.fail"
    assert envelope.task_id == task_id
    assert envelope.headers["retries"] == max_retries
    # AND it ran once, then once per retry, then once per further receive of its last message
    job = wait_for_job(job_id, {"dead_lettered"})
    assert job.attempts == 1 + max_retries + (max_receives - 1)
    # AND the Job says so: it failed on its last allowed receive, which the worker read from SQS
    assert job.dlq_receive_count == max_receives and job.dead_lettered_at is not None
    assert "boom" in job.error
    assert queues.drained("default")

    # AND the worker is alive and still runs work
    assert worker.alive()
    ok = post_job(client, kind="echo", payload={"message": "still here"})
    assert wait_for_job(ok.json()["job_id"], {"succeeded"}).result == {"message": "still here"}


def test_message_that_is_not_a_celery_envelope_reaches_the_dlq(client, start_worker, queues):
    # GIVEN a worker
    worker = start_worker()

    # WHEN something that is not a Celery message is put on the queue with boto3
    queues.send_raw("default", "this is not a celery message {")

    # THEN it is not deleted and not lost: after maxReceiveCount receives it is in the DLQ, unchanged
    processes.wait_for(
        lambda: queues.dlq_depth("default")["visible"] == 1, timeout=60, what="the foreign message in the DLQ"
    )
    [message] = queues.receive_dlq("default")
    assert message["Body"] == "this is not a celery message {"
    # AND the worker logged why, survived, and still runs jobs
    assert worker.alive()
    ok = post_job(client, kind="echo", payload={"message": "after garbage"})
    assert wait_for_job(ok.json()["job_id"], {"succeeded"}).attempts == 1
