"""A worker group with prefetch_multiplier above 1 holds messages it has not started: none runs twice, none is lost."""

from __future__ import annotations

import signal
import time

import pytest
import yaml
from django.conf import settings

from api.jobs.models import Job
from devstack import processes
from tests.integration.conftest import post_job, wait_for_job

pytestmark = pytest.mark.integration

QUEUE = "high_priority"  # the test topology's heartbeat queue: visibility 6 s, heartbeat every 2 s
SOFT = 3  # worker_soft_shutdown_timeout


@pytest.fixture
def held_topology(tmp_path):
    """The test topology with QUEUE in a worker group of one slot holding a second message (multiplier 2)."""
    raw = yaml.safe_load(settings.QUEUE_TOPOLOGY.source.read_text())
    others = [key for key in raw["queues"] if key != QUEUE]
    sizes = {"concurrency": 1, "min_tasks": 1, "max_tasks": 1, "backlog_per_task": 10}
    raw["worker_groups"] = {
        "hot": {"queues": [QUEUE], "prefetch_multiplier": 2, **sizes},
        "rest": {"queues": others, **sizes},
    }
    path = tmp_path / "queues.held.yml"
    path.write_text(yaml.safe_dump(raw))
    return path


def _post_sleep(client, seconds: float) -> int:
    response = post_job(client, kind="sleep", payload={"seconds": seconds}, queue=QUEUE)
    assert response.status_code == 202, response.content
    return response.json()["job_id"]


def test_a_held_message_stays_invisible_while_it_waits_and_is_handed_back_at_sigterm(
    client, start_worker, queues, held_topology
):
    spec = settings.QUEUE_TOPOLOGY.queue(QUEUE)
    env = {"QUEUE_TOPOLOGY": str(held_topology), "WORKER_QUEUES": QUEUE, "WORKER_SOFT_SHUTDOWN_SECONDS": str(SOFT)}
    # GIVEN a worker with one slot and a prefetch multiplier of 2, running a long task and holding a short one
    first = start_worker(concurrency=1, env=env)
    assert "prefetch multiplier 2 for queues high_priority" in first.log()
    long_id = _post_sleep(client, 20)  # beyond two visibility timeouts, inside the 30 s limit
    processes.wait_for(
        lambda: Job.objects.get(pk=long_id).state == "running", timeout=30, interval=0.2, what="the long task to start"
    )
    short_id = _post_sleep(client, 0)
    processes.wait_for(
        lambda: queues.depth(QUEUE)["in_flight"] == 2, timeout=15, interval=0.2, what="the worker to hold both messages"
    )

    # WHEN the held message waits two visibility timeouts behind the long task
    time.sleep(2 * spec.visibility_timeout)

    # THEN the heartbeat kept it invisible: still held, never started, not back in the queue
    assert queues.depth(QUEUE) == {"visible": 0, "in_flight": 2, "delayed": 0}
    assert Job.objects.get(pk=short_id).attempts == 0

    # WHEN the worker gets SIGTERM (as ECS sends it) and another worker is there to take the work
    first.proc.send_signal(signal.SIGTERM)
    first.proc.wait(timeout=SOFT + 30)
    second = start_worker(concurrency=1, env={"QUEUE_TOPOLOGY": str(held_topology), "WORKER_QUEUES": QUEUE})

    # THEN the held message was handed back and runs once on the other worker; the cut-off long task runs again
    short = wait_for_job(short_id, {"succeeded"}, timeout=60)
    assert short.attempts == 1
    assert "Restoring 2 unacknowledged message(s)" in first.log()
    long = wait_for_job(long_id, {"succeeded"}, timeout=90)
    assert long.attempts == 2
    assert second.alive()
    assert queues.drained(QUEUE)
