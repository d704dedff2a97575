"""An unreachable broker loses nothing: the Job is stored, answered 202 pending, and the error recorded on it."""

from __future__ import annotations

import json
import sys
import urllib.error
import urllib.request

import pytest

from api.jobs.models import Job
from devstack import processes

pytestmark = pytest.mark.integration


def test_unreachable_broker_gives_202_pending_and_a_recorded_error(
    transactional_db, start_process, unreachable_endpoint
):
    # GIVEN the api (gunicorn) configured with an SQS endpoint where nothing listens
    port = processes.free_port()
    start_process(
        "api",
        [sys.executable, "-m", "gunicorn", "api.wsgi", "-b", f"127.0.0.1:{port}", "-w", "1", "--no-control-socket"],
        env={"SQS_ENDPOINT_URL": unreachable_endpoint},
        ready="Booting worker",
    )

    # WHEN a client posts a job
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/api/jobs",
        data=json.dumps({"kind": "echo", "payload": {"message": "lost?"}}).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    answer = processes.wait_for(lambda: _post(request), timeout=30, what="the api to answer")

    # THEN the answer is 202 pending with the reason it is not published yet
    assert answer.status == 202
    body = json.loads(answer.read())
    assert body["state"] == "pending"
    assert "Could not connect to the endpoint URL" in body["publish_error"]
    # AND the job is stored with the error, waiting for the relay: nothing is lost
    job = Job.objects.get(pk=body["job_id"])
    assert job.state == "pending"
    assert job.publish_attempts == 1
    assert "Could not connect to the endpoint URL" in job.publish_error
    assert job.next_publish_at is not None


def _post(request):
    try:
        return urllib.request.urlopen(request, timeout=30)
    except urllib.error.HTTPError:
        raise
    except urllib.error.URLError:
        return None  # not listening yet
