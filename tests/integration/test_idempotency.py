"""Duplicate deliveries of one task id have one effect, even when they arrive at the same time."""

from __future__ import annotations

import uuid

import pytest

from api.jobs.models import Effect
from devstack import processes
from workers.celery_app import app
from workers.models import ExecutionState, TaskExecution

pytestmark = pytest.mark.integration


def test_duplicates_of_a_task_id_have_one_effect(start_worker, queues):
    # GIVEN a worker with two pool processes
    start_worker(concurrency=2)
    task_id = str(uuid.uuid4())

    # WHEN the same task id is published three times, two of them at once
    for _ in range(3):
        app.send_task("jobs.record_effect", kwargs={"key": "dup", "seconds": 1}, task_id=task_id)

    # THEN it is done, with exactly one effect, and every message is gone
    processes.wait_for(
        lambda: TaskExecution.objects.filter(task_id=task_id, state=ExecutionState.DONE).exists()
        and queues.total("default") == 0,
        timeout=60,
        interval=0.3,
        what="the task to be done and the queue empty",
    )
    assert Effect.objects.filter(task_id=task_id).count() == 1
