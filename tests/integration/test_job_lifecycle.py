"""A job posted through Django runs in a real worker; retries travel as SQS DelaySeconds."""

from __future__ import annotations

import time

import pytest
from django.conf import settings

from tests.integration.conftest import post_job, wait_for_job

pytestmark = pytest.mark.integration


def test_echo_job_completes_and_leaves_the_queue_empty(client, start_worker, queues):
    # GIVEN a worker consuming every queue
    start_worker()

    # WHEN a client posts an echo job
    response = post_job(client, kind="echo", payload={"message": "hello"})

    # THEN it is accepted with ids, runs once, and its message is deleted
    assert response.status_code == 202, response.content
    body = response.json()
    assert body["task_id"] and body["job_id"]
    job = wait_for_job(body["job_id"], {"succeeded"})
    assert job.result == {"message": "hello"}
    assert job.attempts == 1
    assert job.queue == "default"
    assert queues.drained("default")
    # AND GET /api/jobs/<id> shows the same
    detail = client.get(f"/api/jobs/{job.pk}").json()
    assert detail["state"] == "succeeded" and detail["task_id"] == body["task_id"]


def test_job_can_be_sent_to_another_topology_queue(client, start_worker, queues):
    # GIVEN a worker consuming every queue
    start_worker()
    # WHEN a job names the high_priority queue
    response = post_job(client, kind="echo", payload={"message": "fast"}, queue="high_priority")
    # THEN it runs from that queue
    assert response.status_code == 202, response.content
    job = wait_for_job(response.json()["job_id"], {"succeeded"})
    assert job.queue == "high_priority"


def test_retry_with_backoff_runs_exactly_once_per_retry(client, start_worker, queues):
    # GIVEN a test topology whose second retry delay (backoff 3 s * 2 = 6 s) is longer than the
    # queue's visibility timeout (5 s): held as an ETA in the worker, that retry would run twice
    retry = settings.QUEUE_TOPOLOGY.retry
    visibility = settings.QUEUE_TOPOLOGY.queue("default").visibility_timeout
    assert retry.backoff_seconds * 2 > visibility and not retry.jitter
    start_worker()

    # WHEN a job fails its first two attempts and then succeeds
    response = post_job(client, kind="flaky", payload={"failures": 2})
    job_id = response.json()["job_id"]

    # THEN while it waits for a retry, SQS holds the message (delayed), not the worker (in flight)
    seen_delayed_only = False
    deadline = time.monotonic() + 60
    from api.jobs.models import Job

    while time.monotonic() < deadline and not seen_delayed_only:
        if Job.objects.get(pk=job_id).state == "retrying":
            depth = queues.depth("default")
            seen_delayed_only = depth["delayed"] == 1 and depth["in_flight"] == 0
        time.sleep(0.2)
    assert seen_delayed_only, "a retry was never seen waiting in SQS as a delayed message"

    # AND it succeeds on the third attempt, having run exactly three times
    job = wait_for_job(job_id, {"succeeded"})
    assert job.attempts == 3
    # AND nothing runs it again once more than a visibility timeout has passed
    time.sleep(visibility + 2)
    job.refresh_from_db()
    assert job.attempts == 3
    assert queues.drained("default")
    assert queues.dlq_depth("default")["visible"] == 0
