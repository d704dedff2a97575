"""An idempotent task computes outside any transaction: it blocks neither the api nor other tasks' claims."""

from __future__ import annotations

import uuid

import pytest

from api.jobs.models import Effect
from devstack import processes
from tests.integration.conftest import post_job
from tests.integration.topology_files import write_topology
from workers.celery_app import app
from workers.models import ExecutionState, TaskExecution

pytestmark = pytest.mark.integration

# record_effect may run 30 s here; the heartbeat keeps its message invisible meanwhile.
LONG_TASKS = {"visibility_timeout": 5, "visibility_heartbeat_seconds": 2, "soft_time_limit": 30, "time_limit": 32}
LONG_WORK_SECONDS = 24  # longer than SQLite's busy timeout (20 s, api/settings/base.py)


def _state(task_id: str) -> str | None:
    return TaskExecution.objects.filter(task_id=task_id).values_list("state", flat=True).first()


def test_a_long_idempotent_task_blocks_neither_the_api_nor_other_claims(client, start_worker, queues, tmp_path):
    # GIVEN a worker with two pool processes (on SQLite, the `make run` default, one write lock for all)
    env = {"QUEUE_TOPOLOGY": str(write_topology(tmp_path, default=LONG_TASKS)), "WORKER_QUEUES": "default"}
    start_worker(concurrency=2, env=env)
    # AND a record_effect that computes for longer than the busy timeout before it writes its Effect
    long_id = str(uuid.uuid4())
    app.send_task("jobs.record_effect", kwargs={"key": "long", "seconds": LONG_WORK_SECONDS}, task_id=long_id)
    processes.wait_for(lambda: _state(long_id) == ExecutionState.RUNNING, timeout=30, interval=0.1, what="the claim")

    # WHEN a client posts a job while it computes
    response = post_job(client, kind="echo", payload={"message": "meanwhile"})
    # THEN it is accepted (not a 500 "database is locked")
    assert response.status_code == 202, response.content

    # WHEN another idempotent task arrives meanwhile
    short_id = str(uuid.uuid4())
    app.send_task("jobs.record_effect", kwargs={"key": "short"}, task_id=short_id)
    # THEN it claims, runs and commits while the long one still computes
    processes.wait_for(lambda: _state(short_id) == ExecutionState.DONE, timeout=30, interval=0.1, what="short done")
    assert _state(long_id) == ExecutionState.RUNNING
    # AND the long task commits its own Effect when its work ends
    processes.wait_for(
        lambda: _state(long_id) == ExecutionState.DONE, timeout=LONG_WORK_SECONDS + 30, interval=0.2, what="long done"
    )
    assert Effect.objects.filter(task_id__in=[long_id, short_id]).count() == 2
