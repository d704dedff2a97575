"""The worker health check proves polling: it fails when SQS is cut off and recovers, with no restart."""

from __future__ import annotations

import pytest

from devstack import processes
from devstack.tcp_proxy import TcpProxy
from tests.integration.conftest import post_job, wait_for_job, worker_health

pytestmark = pytest.mark.integration

MAX_AGE = 25  # a successful long poll (20 s) must always fit in it


def test_health_check_fails_while_sqs_is_cut_and_recovers_without_restart(client, start_worker, queues, tmp_path):
    # GIVEN a worker that reaches SQS through a proxy we can cut, with its own liveness file
    proxy = TcpProxy(int(queues.endpoint.rsplit(":", 1)[1])).start()
    env = {
        "SQS_ENDPOINT_URL": f"http://127.0.0.1:{proxy.port}",
        "WORKER_LIVENESS_FILE": str(tmp_path / "liveness"),
        "WORKER_HEALTH_MAX_AGE": str(MAX_AGE),
    }
    try:
        worker = start_worker(env=env)
        first = post_job(client, kind="echo", payload={"message": "before"})
        wait_for_job(first.json()["job_id"], {"succeeded"})
        # THEN the health check passes
        healthy = worker_health(env)
        assert healthy.returncode == 0, healthy.stderr

        # WHEN the SQS endpoint is cut off
        proxy.cut()
        # THEN the check fails within the configured window (plus one long poll in flight)
        failed = processes.wait_for(
            lambda: (r := worker_health(env)).returncode == 1 and r, timeout=MAX_AGE + 25, interval=1, what="unhealthy"
        )
        assert "unhealthy" in failed.stderr
        assert worker.alive(), "the worker must survive the outage, not exit"

        # WHEN the endpoint comes back
        proxy.restore()
        # THEN the same worker consumes again and the check passes, without a restart
        after = post_job(client, kind="echo", payload={"message": "after"})
        assert wait_for_job(after.json()["job_id"], {"succeeded"}, timeout=60).result == {"message": "after"}
        processes.wait_for(lambda: worker_health(env).returncode == 0, timeout=10, interval=0.5, what="healthy again")
        assert worker.alive()
        assert "works again" in worker.log()
    finally:
        proxy.cut()


def test_health_check_fails_without_a_liveness_file(tmp_path):
    # GIVEN no worker ever touched a liveness file here
    env = {"WORKER_LIVENESS_FILE": str(tmp_path / "none")}
    # WHEN the check runs THEN it fails, saying why
    result = worker_health(env)
    assert result.returncode == 1
    assert "no liveness file" in result.stderr
