"""A failed ReceiveMessage answer (a 5xx, SQS throttling) does not stop a worker from consuming (the soak's
endpoint faults found the throttled case)."""

from __future__ import annotations

import pytest

from devstack import processes
from devstack.fault_proxy import FaultProxy
from tests.integration.conftest import post_job, wait_for_job

pytestmark = pytest.mark.integration


@pytest.mark.parametrize(
    "mode",
    # kombu 5.7 raises on a throttled ReceiveMessage, which ended the worker or its receive loop; the channel
    # now takes it as a failed poll (workers/receive_failures.py)
    ["http_5xx", "throttle"],
)
def test_a_worker_consumes_again_after_one_failed_receive(client, start_worker, queues, mode):
    # GIVEN a worker that reaches SQS through the fault proxy
    with FaultProxy(int(queues.endpoint.rsplit(":", 1)[1]), http=True) as proxy:
        worker = start_worker(env={"SQS_ENDPOINT_URL": proxy.url})

        # WHEN its next ReceiveMessage is answered with an error (a 500, or SQS's throttling 400), once
        proxy.set_mode(mode, actions="ReceiveMessage", count=1)
        processes.wait_for(
            lambda: proxy.snapshot()["faulted"]["ReceiveMessage"] == 1, timeout=40, what="the failed receive"
        )
        job = post_job(client, kind="echo", payload={"message": "after the fault"}).json()["job_id"]

        # THEN the worker is still there and runs the next job
        wait_for_job(job, {"succeeded"}, timeout=45)
        assert worker.alive()
        # AND it said once that a receive failed (for the throttled one, naming SQS's error), without a traceback
        failures = [line for line in worker.log().splitlines() if "SQS receive on" in line and "failed" in line]
        assert failures, worker.log()[-3000:]
        if mode == "throttle":
            assert any("RequestThrottled" in line for line in failures), failures
        assert "Unrecoverable error" not in worker.log()
