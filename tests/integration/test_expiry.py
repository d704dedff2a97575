"""A message whose `expires` has passed is an outcome, not a disappearance: not run, deleted, and recorded."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from api.jobs.models import Job, JobState
from tests.integration.conftest import wait_for_job
from workers.celery_app import app as celery_app
from workers.models import DiscardedMessage, DiscardReason

pytestmark = pytest.mark.integration


def test_an_expired_message_is_deleted_unrun_and_recorded(start_worker, queues):
    # GIVEN a worker and a queued Job whose message expired a minute ago
    worker = start_worker()
    job = Job.objects.create(kind="echo", payload={"message": "too late"}, queue="default", state=JobState.QUEUED)
    celery_app.send_task(
        "jobs.echo",
        kwargs={"job_id": job.pk, "message": "too late"},
        task_id=job.task_id,
        queue="default",
        expires=datetime.now(UTC) - timedelta(minutes=1),
    )

    # WHEN the worker receives it
    expired = wait_for_job(job.pk, {JobState.EXPIRED}, timeout=30)

    # THEN it never ran, its Job says when it expired, and the message is gone (not in the DLQ either)
    assert expired.attempts == 0 and expired.started_at is None
    assert expired.finished_at is not None
    assert queues.drained("default")
    assert sum(queues.dlq_depth("default").values()) == 0
    # AND the discard is a row an operator can count, and a WARNING that names the task
    row = DiscardedMessage.objects.get(task_id=job.task_id)
    assert (row.task_name, row.queue, row.reason) == ("jobs.echo", "default", DiscardReason.EXPIRED)
    warnings = [line for line in worker.log().splitlines() if "task expired: " in line]
    assert len(warnings) == 1 and " WARNING " in warnings[0], warnings
    assert str(job.task_id) in warnings[0] and "jobs.echo" in warnings[0]
