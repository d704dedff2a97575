"""Cancel with a real worker: a Job cancelled after SQS took its message is received, deleted unrun (not
redriven) and stays cancelled, with the discard recorded."""

from __future__ import annotations

import pytest

from api.jobs.models import Job
from devstack import processes
from tests.integration.conftest import post_job
from workers.models import DiscardedMessage

pytestmark = [pytest.mark.integration]


def test_a_cancelled_queued_job_is_not_run_and_ends_cancelled(client, start_worker, queues):
    # GIVEN a queued job and a delayed one (SQS holds both), no worker running yet
    queued = post_job(client, kind="echo", payload={"message": "never"}).json()
    delayed = post_job(client, kind="echo", payload={"message": "never either"}, countdown=2).json()
    assert (queued["state"], delayed["state"]) == ("queued", "delayed")
    # WHEN both are cancelled through the API
    for job in (queued, delayed):
        response = client.post(f"/api/jobs/{job['job_id']}/cancel")
        assert response.status_code == 200 and response.json()["state"] == "cancelled"
    # AND a worker starts and receives their messages
    worker = start_worker()
    processes.wait_for(
        lambda: DiscardedMessage.objects.filter(reason="cancelled").count() == 2,
        timeout=30,
        what="both cancelled messages to be discarded",
    )
    # THEN neither ran: both cancelled, never started, no result
    for job in Job.objects.filter(pk__in=[queued["job_id"], delayed["job_id"]]):
        assert (job.state, job.attempts, job.started_at, job.result) == ("cancelled", 0, None, None)
        assert list(job.events.values_list("detail", flat=True))[-1] == (
            "received after its cancel: deleted without running"
        )
    # AND their messages were deleted, not left for the redrive policy: the queue drains, the DLQ stays empty
    assert queues.drained("default", timeout=10)
    assert sum(queues.dlq_depth("default").values()) == 0
    assert worker.log().count("task cancelled: jobs.echo[") == 2
    # AND the worker still runs work
    ok = post_job(client, kind="echo", payload={"message": "still here"}).json()["job_id"]
    processes.wait_for(lambda: Job.objects.get(pk=ok).state == "succeeded", timeout=30, what="the next job")
