"""ECS scale-in protection: a worker protects its task through the ECS agent's endpoint while it runs a task,
renews it while the task lasts, clears it when idle; outside ECS it sends nothing. A small local HTTP server
stands in for the agent endpoint; the worker is real."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from itertools import pairwise

import pytest

from devstack import processes
from tests.integration.conftest import post_job, wait_for_job

pytestmark = pytest.mark.integration

QUEUE = "high_priority"  # the test topology's queue with a 30 s time limit
TASK_ARN = "arn:aws:ecs:us-east-1:123456789012:task/celery-sqs-test-cluster/0123456789abcdef"


class FakeAgent:
    """Answers PUT/GET $ECS_AGENT_URI/task-protection/v1/state as the ECS agent does, and records each PUT."""

    def __init__(self):
        self.puts: list[tuple[float, dict]] = []
        self.requests = 0
        agent = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def do_PUT(self) -> None:  # noqa: N802 (http.server's name)
                agent.requests += 1
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"{}")
                if self.path.endswith("/task-protection/v1/state") and "ProtectionEnabled" in body:
                    agent.puts.append((time.monotonic(), body))
                    minutes = body.get("ExpiresInMinutes", 120) if body["ProtectionEnabled"] else 0
                    expires = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 60 * minutes))
                    answer = {
                        "protection": {
                            "ExpirationDate": expires if body["ProtectionEnabled"] else None,
                            "ProtectionEnabled": body["ProtectionEnabled"],
                            "TaskArn": TASK_ARN,
                        }
                    }
                    status = 200
                else:
                    answer = {"error": {"Arn": "", "Code": "InvalidParameterException", "Message": "bad request"}}
                    status = 400
                data = json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_PUT  # noqa: N815

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        # Shaped like the real variable: http://169.254.170.2/api/<task id>-<number>
        self.uri = f"http://127.0.0.1:{self._server.server_address[1]}/api/0123456789abcdef-1234567"

    def states(self) -> list[bool]:
        return [body["ProtectionEnabled"] for _, body in self.puts]

    def __enter__(self) -> FakeAgent:
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()


@pytest.fixture
def fake_agent():
    with FakeAgent() as agent:
        yield agent


def test_protection_is_on_while_a_task_runs_renewed_and_cleared_when_idle(client, start_worker, queues, fake_agent):
    # GIVEN a worker on ECS (ECS_AGENT_URI set) that renews every 2 s and clears after 1 s idle
    start_worker(
        env={
            "ECS_AGENT_URI": fake_agent.uri,
            "WORKER_PROTECTION_MINUTES": "1",
            "WORKER_PROTECTION_RENEW_SECONDS": "2",
            "WORKER_PROTECTION_IDLE_SECONDS": "1",
        }
    )
    assert fake_agent.puts == [], "an idle worker has nothing to protect"

    # WHEN it runs a task of 6 s (three renewal intervals)
    job = post_job(client, kind="sleep", payload={"seconds": 6}, queue=QUEUE)
    job_id = job.json()["job_id"]
    wait_for_job(job_id, {"running"}, timeout=30)

    # THEN protection is set while it runs, with an expiry
    processes.wait_for(lambda: fake_agent.states()[:1] == [True], timeout=10, interval=0.1, what="protection on")
    assert fake_agent.puts[0][1] == {"ProtectionEnabled": True, "ExpiresInMinutes": 1}
    # AND renewed before the task ends (the task outlasts the renewal interval)
    processes.wait_for(lambda: fake_agent.states()[:2] == [True, True], timeout=10, interval=0.1, what="renewal")
    wait_for_job(job_id, {"succeeded"}, timeout=30)
    # AND cleared once the worker is idle, exactly once
    processes.wait_for(lambda: fake_agent.states()[-1:] == [False], timeout=10, interval=0.1, what="cleared")
    assert fake_agent.puts[-1][1] == {"ProtectionEnabled": False}
    assert fake_agent.states().count(False) == 1
    on = [t for t, body in fake_agent.puts if body["ProtectionEnabled"]]
    assert all(later - earlier >= 1.5 for earlier, later in pairwise(on)), "renewals are paced, not a flood"
    start = fake_agent.puts[0][0]
    timeline = [(round(t - start, 1), body["ProtectionEnabled"]) for t, body in fake_agent.puts]
    print("agent PUTs (s after the first):", timeline)


def test_outside_ecs_the_worker_sends_nothing(client, start_worker, queues, fake_agent):
    # GIVEN a worker without ECS_AGENT_URI (the agent stand-in listens, but nobody told the worker)
    start_worker(env={"ECS_AGENT_URI": "", "WORKER_PROTECTION_RENEW_SECONDS": "1"})

    # WHEN it runs a task
    job = post_job(client, kind="sleep", payload={"seconds": 2}, queue=QUEUE)
    wait_for_job(job.json()["job_id"], {"succeeded"}, timeout=30)

    # THEN no request reached the agent endpoint
    assert fake_agent.requests == 0


def test_a_worker_refuses_protection_settings_that_would_lapse_between_renewals(
    start_process, queues, transactional_db
):
    # GIVEN a renewal interval longer than the protection it renews (even outside ECS: caught before deploying)
    import sys

    # WHEN a real worker is started with it
    worker = start_process(
        "worker",
        [sys.executable, "-m", "celery", "-A", "workers.celery_app", "worker", "-Q", "default", "-l", "info"],
        env={"WORKER_PROTECTION_MINUTES": "1", "WORKER_PROTECTION_RENEW_SECONDS": "120", "ECS_AGENT_URI": ""},
    )
    code = worker.proc.wait(timeout=90)

    # THEN it exits non-zero before consuming, naming the setting
    assert code != 0
    log = worker.log()
    assert "WORKER_PROTECTION_RENEW_SECONDS=120.0 must be above 0 and below the protection's 60 s" in log
    assert " ready." not in log
