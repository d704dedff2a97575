"""One hung ChangeMessageVisibilityBatch must not stall the visibility heartbeat past the visibility timeout:
the heartbeat's SQS client gives up within one heartbeat interval, and the next attempt extends in time."""

from __future__ import annotations

import pytest

from devstack import processes
from devstack.fault_proxy import FaultProxy
from tests.integration.conftest import post_job, wait_for_job

pytestmark = pytest.mark.integration

QUEUE = "high_priority"  # the test topology's heartbeat queue: visibility 6 s, heartbeat every 2 s
HUNG_SECONDS = 25  # under the project's 30 s read timeout, so only a client that gives up sooner gets past it


def test_a_hung_extension_does_not_let_a_running_task_run_twice(client, start_worker, queues, settings):
    # GIVEN a worker reaching SQS through the fault proxy, running a task three visibility timeouts long
    spec = settings.QUEUE_TOPOLOGY.queue(QUEUE)
    with FaultProxy(int(queues.endpoint.rsplit(":", 1)[1]), http=True) as proxy:
        start_worker(env={"SQS_ENDPOINT_URL": proxy.url})
        seconds = 3 * spec.visibility_timeout
        job_id = post_job(client, kind="sleep", payload={"seconds": seconds}, queue=QUEUE).json()["job_id"]
        wait_for_job(job_id, {"running"}, timeout=60)

        # WHEN one of the heartbeat's extensions hangs far longer than the visibility timeout (one slow
        # connection; the endpoint answers the next request at once)
        proxy.set_mode("latency", latency_ms=1000 * HUNG_SECONDS, actions="ChangeMessageVisibilityBatch", count=1)
        processes.wait_for(
            lambda: proxy.snapshot()["faulted"]["ChangeMessageVisibilityBatch"] == 1, timeout=30, what="the hung call"
        )

        # THEN the task still runs once: the message never became visible to be received again
        job = wait_for_job(job_id, {"succeeded"}, timeout=seconds + 60)
        assert job.attempts == 1
        assert queues.drained(QUEUE)
