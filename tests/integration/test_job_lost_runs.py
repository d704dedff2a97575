"""A Job whose pool process is killed on the last receive its queue allows is recorded `dead_lettered` by the
worker's main process (no handler runs in a killed process), and its message is in the DLQ."""

from __future__ import annotations

import os
import signal

import pytest
from django.conf import settings

from api.jobs.models import Job
from devstack import processes
from tests.integration.conftest import post_job

pytestmark = pytest.mark.integration

QUEUE = "high_priority"  # time limit 30 s, so a long sleep is killed only by the test


def test_a_job_killed_on_its_last_receive_is_dead_lettered(client, start_worker, queues):
    # GIVEN a worker with one pool child and a long job on a queue that allows 3 receives
    max_receives = settings.QUEUE_TOPOLOGY.queue(QUEUE).max_receive_count
    worker = start_worker(concurrency=1)
    job_id = post_job(client, kind="sleep", payload={"seconds": 60}, queue=QUEUE).json()["job_id"]

    # WHEN the pool process running it is SIGKILLed on every receive
    for receive in range(1, max_receives + 1):
        job = processes.wait_for(
            lambda r=receive: (j := Job.objects.get(pk=job_id)).state == "running" and j.receive_count == r and j,
            timeout=40,
            interval=0.2,
            what=f"the job running on receive {receive}",
        )
        os.kill(job.worker_pid, signal.SIGKILL)

    # THEN the worker's main process records it dead-lettered on the last receive, the earlier losses in history
    job = processes.wait_for(
        lambda: (j := Job.objects.get(pk=job_id)).state == "dead_lettered" and j, timeout=20, what="dead_lettered"
    )
    assert job.dlq_receive_count == max_receives and job.error.startswith("WorkerLostError")
    details = list(job.events.values_list("detail", flat=True))
    assert sum("run lost: WorkerLostError" in d for d in details) == max_receives
    assert details[-1].endswith(f"receive {max_receives} of {max_receives}; SQS moves it to the DLQ")
    # AND SQS did move it: the message is in the DLQ, and the worker lives on
    processes.wait_for(lambda: queues.dlq_depth(QUEUE)["visible"] == 1, timeout=30, what="the message in the DLQ")
    assert worker.alive()
