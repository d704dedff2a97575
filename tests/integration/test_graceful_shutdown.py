"""SIGTERM as ECS sends it (then SIGKILL after the grace): no task lost, none run twice for nothing."""

from __future__ import annotations

import signal
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from django.conf import settings

from api.jobs.models import Job
from devstack import processes
from tests.integration.conftest import post_job, wait_for_job, wait_until_ready

pytestmark = pytest.mark.integration

GRACE = 8  # the scaled stopTimeout: SIGTERM, then SIGKILL this long after
SOFT = 3  # worker_soft_shutdown_timeout, scaled (production: 90 of 120); the exit takes ~2 s more on a loaded machine
QUEUE = "high_priority"  # heartbeat queue: tasks may outlast the visibility timeout
# Still running when the soft window closes, and inside the queue's 25 s soft time limit. Nothing slow stands between
# the long task's start and SIGTERM: the second worker starts meanwhile, not before (its start-up took 15-20 s on a
# loaded CI machine, 2026-12-02, and the long task ended inside the window).
LONG = 22


def _post_sleep(client, seconds: float) -> int:
    response = post_job(client, kind="sleep", payload={"seconds": seconds}, queue=QUEUE)
    assert response.status_code == 202, response.content
    return response.json()["job_id"]


def test_sigterm_finishes_short_tasks_and_hands_back_the_rest(client, start_worker, queues):
    # GIVEN a worker (two pool processes) running a short and a long task, and a second worker
    leaving = start_worker(concurrency=2, env={"WORKER_SOFT_SHUTDOWN_SECONDS": str(SOFT)})
    short_id = _post_sleep(client, 2)
    long_id = _post_sleep(client, LONG)
    processes.wait_for(
        lambda: Job.objects.filter(pk__in=[short_id, long_id], state="running").count() == 2,
        timeout=30, interval=0.2, what="both tasks running on the first worker",
    )
    # (started now, not waited for: the tasks are taken already, and its start-up must not eat the long task's time)
    staying = start_worker(concurrency=2, wait=False)
    watch = ThreadPoolExecutor(max_workers=1)
    staying_ready_at = watch.submit(wait_until_ready, staying, 90)  # seen within 0.2 s, while the test goes on

    # WHEN the first worker gets SIGTERM, then SIGKILL after the grace period, as ECS does
    leaving.proc.send_signal(signal.SIGTERM)
    termed_at, termed_wall = time.monotonic(), time.time()
    ran = termed_wall - Job.objects.get(pk=long_id).started_at.timestamp()
    # (the claim needs a task still running when the window closes: a slower setup fails here, saying so)
    assert ran < LONG - SOFT - 1, f"the long task had run {ran:.0f} s of {LONG} at SIGTERM: it would end in the window"
    try:
        leaving.proc.wait(timeout=GRACE)
    except Exception:
        processes.signal_group(leaving.proc, signal.SIGKILL)
    print(f"first worker gone {time.monotonic() - termed_at:.1f} s after SIGTERM (exit {leaving.proc.poll()})")

    # THEN the short task finished once, on the first worker
    short = wait_for_job(short_id, {"succeeded"}, timeout=30)
    assert short.attempts == 1
    # AND the long one, cancelled when the soft window closed, is handed back at once (visibility 0, not
    # kombu's 20 s) and the other worker runs it to the end. At once, or one visibility timeout later: the
    # leaving worker's own long poll, still open, may take the handed-back message as the process exits.
    staying_ready = staying_ready_at.result()
    watch.shutdown()
    long = wait_for_job(long_id, {"succeeded"}, timeout=90)
    restarted_after = long.started_at.timestamp() - max(termed_wall + SOFT, staying_ready)
    print(
        f"second worker ready {staying_ready - termed_wall:.1f} s after SIGTERM; long task restarted "
        f"{long.started_at.timestamp() - termed_wall:.1f} s after SIGTERM (soft window {SOFT} s)"
    )
    assert long.attempts == 2
    assert restarted_after < 2 * settings.QUEUE_TOPOLOGY.queue(QUEUE).visibility_timeout + 2
    assert staying.alive()
    assert queues.drained(QUEUE)
