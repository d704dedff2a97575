"""Publishes SQS would mishandle are refused through Django before SQS sees them; delays go to SQS."""

from __future__ import annotations

import pytest

from api.jobs.models import Job
from tests.integration.conftest import post_job, wait_for_job

pytestmark = pytest.mark.integration


def _all_queues_empty(queues) -> bool:
    return all(queues.total(key) == 0 for key in queues.urls)


def test_too_long_countdown_is_refused_and_nothing_is_stored(client, transactional_db, queues):
    # WHEN a job asks for a delay longer than the queue accepts (its retention, 3600 s, less 900 s)
    response = post_job(client, kind="echo", payload={"message": "later"}, countdown=2701)

    # THEN it is refused with the numbers, and nothing is stored or queued
    assert response.status_code == 400
    error = response.json()["error"]
    assert "2701 s" in error and "(2700 s: its message retention of 3600 s less 900 s)" in error
    assert Job.objects.count() == 0
    assert _all_queues_empty(queues)


def test_oversized_payload_is_refused_before_sqs_sees_it(client, transactional_db, queues):
    # WHEN a job's payload, base64-encoded twice by kombu, is over the queue's 256 KiB limit
    response = post_job(client, kind="echo", payload={"message": "x" * 160_000})

    # THEN the answer is 413 naming both sizes, the job records the refusal, and no queue has it
    assert response.status_code == 413
    error = response.json()["error"]
    assert "262144 bytes" in error
    assert "the encoded message is" in error
    job = Job.objects.get()
    assert job.state == "refused" and "262144" in job.error
    assert _all_queues_empty(queues)


def test_short_countdown_travels_as_sqs_delay_seconds(client, start_worker, queues):
    # GIVEN no worker yet
    # WHEN a job asks for a 3 s delay (shorter than SQS's 900 s limit)
    response = post_job(client, kind="echo", payload={"message": "soon"}, countdown=3)

    # THEN SQS holds it as a delayed message
    assert response.status_code == 202
    assert queues.depth("default")["delayed"] == 1
    # AND a worker runs it once it is due, exactly once
    start_worker()
    job = wait_for_job(response.json()["job_id"], {"succeeded"})
    assert job.attempts == 1
