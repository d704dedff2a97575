"""Nothing twice, nothing lost: the visibility heartbeat, and what a SIGKILL of a worker or child does."""

from __future__ import annotations

import os
import signal
import time

import pytest
from django.conf import settings

from api.jobs.models import Job
from devstack import processes
from tests.integration.conftest import post_job, wait_for_job

pytestmark = pytest.mark.integration

QUEUE = "high_priority"  # the test topology's heartbeat queue: visibility 6 s, heartbeat every 2 s


def _spec():
    spec = settings.QUEUE_TOPOLOGY.queue(QUEUE)
    assert spec.visibility_heartbeat_seconds, "the test needs a heartbeat queue"
    return spec


def _post_sleep(client, seconds: float) -> int:
    response = post_job(client, kind="sleep", payload={"seconds": seconds}, queue=QUEUE)
    assert response.status_code == 202, response.content
    return response.json()["job_id"]


def test_task_running_three_visibility_timeouts_runs_exactly_once(client, start_worker, queues):
    # GIVEN a worker and a task that runs three times the queue's visibility timeout
    spec = _spec()
    start_worker()
    job_id = _post_sleep(client, 3 * spec.visibility_timeout)

    # WHEN it runs to the end
    job = wait_for_job(job_id, {"succeeded"}, timeout=3 * spec.visibility_timeout + 30)

    # THEN it ran once: the heartbeat kept its message from being delivered again
    assert job.attempts == 1
    assert queues.drained(QUEUE)


def test_sigkill_of_the_whole_worker_reruns_the_task_within_visibility_timeout(client, start_worker, queues):
    # GIVEN two workers, one of them running a long task
    spec = _spec()
    first = start_worker()
    job_id = _post_sleep(client, 2 * spec.visibility_timeout)
    wait_for_job(job_id, {"running"})
    second = start_worker()

    # WHEN the worker running it is SIGKILLed with all its processes (an ECS task killed outright)
    running_on_first = "Task jobs.sleep" in first.log() and "received" in first.log()
    assert running_on_first
    processes.signal_group(first.proc, signal.SIGKILL)
    killed_at = time.monotonic()

    # THEN the other worker starts it again within two visibility timeouts + 5 s. One would do, but the
    # killed worker's long poll outlives it: the endpoint (moto here; SQS documents the same for an
    # abandoned long poll) may hand the message to that dead connection once, which costs one more
    # visibility timeout and one more receive: maxReceiveCount must leave room for it.
    processes.wait_for(
        lambda: Job.objects.get(pk=job_id).attempts == 2, timeout=2 * spec.visibility_timeout + 5, interval=0.2,
        what="the task to run again",
    )
    print(f"re-executed {time.monotonic() - killed_at:.1f} s after SIGKILL (visibility {spec.visibility_timeout} s)")
    # AND it completes, having run once per loss
    job = wait_for_job(job_id, {"succeeded"}, timeout=4 * spec.visibility_timeout + 30)
    assert job.attempts == 2
    assert second.alive()
    assert queues.drained(QUEUE)


def test_sigkill_of_a_pool_child_reruns_the_task_once(client, start_worker, queues):
    # GIVEN a worker with one pool child, running a long task
    spec = _spec()
    worker = start_worker(concurrency=1)
    job_id = _post_sleep(client, spec.visibility_timeout)
    wait_for_job(job_id, {"running"})
    [child] = processes.children(worker.proc.pid)

    # WHEN the child is SIGKILLed mid-task
    os.kill(child, signal.SIGKILL)

    # THEN the worker survives, hands the message back at once, and a new child runs it again to the end
    job = wait_for_job(job_id, {"succeeded"}, timeout=3 * spec.visibility_timeout + 30)
    assert job.attempts == 2
    assert worker.alive()
    assert "WorkerLostError" in worker.log() or "exited prematurely" in worker.log()
    assert queues.drained(QUEUE)
