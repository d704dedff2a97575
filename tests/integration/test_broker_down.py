"""An unreachable broker answers 503 and the Job records it: nothing is silently lost."""

from __future__ import annotations

import json
import sys
import urllib.error
import urllib.request

import pytest

from api.jobs.models import Job
from devstack import processes

pytestmark = pytest.mark.integration


def test_unreachable_broker_gives_503_and_a_recorded_failure(transactional_db, start_process, unreachable_endpoint):
    # GIVEN the api (gunicorn) configured with an SQS endpoint where nothing listens
    port = processes.free_port()
    start_process(
        "api",
        [sys.executable, "-m", "gunicorn", "api.wsgi", "-b", f"127.0.0.1:{port}", "-w", "1"],
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
    with pytest.raises(urllib.error.HTTPError) as answer:
        processes.wait_for(lambda: _post(request), timeout=30, what="the api to answer")

    # THEN the answer is 503 with a clear message
    assert answer.value.code == 503
    body = json.loads(answer.value.read())
    assert "broker unreachable" in body["error"]
    # AND the job is stored with the failure, so nothing is silently lost
    job = Job.objects.get(pk=body["job"]["id"])
    assert job.state == "publish_failed"
    assert "broker unreachable" in job.error


def _post(request) -> bool:
    try:
        urllib.request.urlopen(request, timeout=30)
    except urllib.error.HTTPError:
        raise
    except urllib.error.URLError:
        return False  # not listening yet
    return True
