"""The transactional outbox with real processes: a black-holed SQS endpoint, an api killed after its commit."""

from __future__ import annotations

import contextlib
import json
import signal
import sys
import threading
import time
import urllib.error
import urllib.request
from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from api.jobs.models import Job
from devstack import processes
from devstack.fault_proxy import FaultProxy
from devstack.processes import REPO_ROOT
from devstack.tcp_proxy import TcpProxy
from tests.integration.conftest import database_env

pytestmark = pytest.mark.integration

RELAY_ENV = {"OUTBOX_SWEEP_SECONDS": "0.5", "OUTBOX_SWEEP_MAX_SECONDS": "2", "OUTBOX_RETRY_SECONDS": "1"}


@pytest.fixture
def black_hole(queues):
    """An endpoint in front of moto, black-holed until the test restores it."""
    proxy = FaultProxy(int(queues.endpoint.rsplit(":", 1)[1])).start()
    proxy.set_mode("blackhole")
    yield proxy
    proxy.stop()


def start_api(start_process, endpoint: str, budget: str):
    port = processes.free_port()
    proc = start_process(
        "api",
        [str(REPO_ROOT / "bin" / "start-api")],
        env={
            "PATH": processes.venv_path(),
            "API_BIND": f"127.0.0.1:{port}",
            "API_WORKERS": "2",
            "SQS_ENDPOINT_URL": endpoint,
            "PUBLISH_BUDGET_SECONDS": budget,
        },
        ready="Booting worker",
    )
    return port, proc


def start_relay(start_process, endpoint: str, budget: str, env: dict[str, str] | None = None):
    env = {"SQS_ENDPOINT_URL": endpoint, "PUBLISH_BUDGET_SECONDS": budget, **RELAY_ENV, **(env or {})}
    return start_process("relay", [sys.executable, "manage.py", "outbox_relay"], env=env, ready="outbox relay started")


def request(port: int, method: str, path: str, body: dict | None = None) -> tuple[int, str, bytes]:
    """(status, content type, body) of one request; an HTTP error status is an answer too."""
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(
        f"http://127.0.0.1:{port}{path}", data=data, headers={"Content-Type": "application/json"}, method=method
    )
    try:
        with urllib.request.urlopen(req, timeout=60) as response:
            return response.status, response.headers.get("Content-Type", ""), response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers.get("Content-Type", ""), exc.read()


def test_black_holed_sqs_answers_202_pending_and_the_relay_publishes_each_job_once(
    black_hole, queues, start_process, start_worker
):
    # GIVEN the api (bin/start-api, gunicorn) publishing through an endpoint that accepts and never answers
    port, _ = start_api(start_process, f"http://127.0.0.1:{black_hole.port}", budget="3")

    # WHEN three jobs are posted
    answers = [request(port, "POST", "/api/jobs", {"kind": "echo", "payload": {"message": f"m{i}"}}) for i in range(3)]

    # THEN each is answered (not killed by gunicorn's timeout): JSON 202, pending, with the attempt and its error
    for status, content_type, body in answers:
        assert (status, content_type) == (202, "application/json"), body[:300]
        accepted = json.loads(body)
        assert accepted["state"] == "pending"
        assert accepted["publish_attempts"] == 1
        assert accepted["publish_error"]
    job_ids = [json.loads(body)["job_id"] for _, _, body in answers]
    # AND the api stays responsive, and GET shows the pending Job with its attempt count and last error
    assert request(port, "GET", "/healthz")[0] == 200
    detail = json.loads(request(port, "GET", f"/api/jobs/{job_ids[0]}")[2])
    assert detail["state"] == "pending"
    assert detail["publish_attempts"] >= 1
    assert detail["publish_error"]

    # WHEN the relay sweeps while SQS is still black-holed
    relay = start_relay(start_process, f"http://127.0.0.1:{black_hole.port}", budget="3")
    processes.wait_for(lambda: "is failing" in relay.log(), timeout=30, what="the relay to notice SQS failing")
    # AND the endpoint answers again, and a worker runs
    black_hole.set_mode("pass")
    start_worker()

    # THEN every Job runs, once, and the queue is empty
    processes.wait_for(
        lambda: set(Job.objects.filter(pk__in=job_ids).values_list("state", flat=True)) == {"succeeded"},
        timeout=60,
        interval=0.3,
        what="every job to succeed",
    )
    assert queues.drained("default", timeout=10)
    for job in Job.objects.filter(pk__in=job_ids):
        assert job.attempts == 1, job.as_dict()
        assert job.published_at is not None
        assert job.publish_error == ""
    # AND the relay said once that SQS was failing and once that it answered again, not once per job or sweep
    processes.wait_for(lambda: "answers again" in relay.log(), timeout=10, what="the relay's recovery line")
    assert relay.log().count("is failing") == 1
    assert relay.log().count("answers again") == 1


def test_api_killed_between_commit_and_publish_is_published_by_the_sweep(
    black_hole, queues, start_process, start_worker
):
    # GIVEN the api publishing through a black-holed endpoint, with a long budget so the publish hangs a while
    api_port, api = start_api(start_process, f"http://127.0.0.1:{black_hole.port}", budget="10")

    # WHEN a job is posted and the api is SIGKILLed once the Job is committed, while its publish hangs
    body = {"kind": "echo", "payload": {"message": "x"}}
    threading.Thread(target=_ignore_errors, args=(request, api_port, "POST", "/api/jobs", body), daemon=True).start()
    job = processes.wait_for(lambda: Job.objects.first(), timeout=30, interval=0.05, what="the job to be committed")
    processes.signal_group(api.proc, signal.SIGKILL)
    api.proc.wait(timeout=10)
    job.refresh_from_db()
    assert job.state == "pending"
    assert job.published_at is None
    assert job.publish_error == ""  # the request never came back from its publish to record it

    # AND the endpoint answers again, a relay sweeps and a worker runs
    black_hole.set_mode("pass")
    start_relay(start_process, f"http://127.0.0.1:{black_hole.port}", budget="10")
    start_worker()

    # THEN the Job is published by the sweep and runs once
    processes.wait_for(
        lambda: Job.objects.get(pk=job.pk).state == "succeeded", timeout=60, interval=0.3, what="the job to succeed"
    )
    assert queues.drained("default", timeout=10)
    job.refresh_from_db()
    assert job.attempts == 1
    assert job.publish_attempts >= 2  # the killed request's attempt, then the sweep's


def _ignore_errors(fn, *args):
    with contextlib.suppress(OSError):  # the api was killed under the request
        fn(*args)


@pytest.mark.skipif(connection.vendor != "postgresql", reason="cuts a TCP path to PostgreSQL (DATABASE_URL)")
def test_relay_waits_out_a_database_outage_quietly_then_publishes(queues, start_process, transactional_db):
    # GIVEN a relay reaching PostgreSQL through a cuttable proxy, logging every failed sweep at DEBUG
    db_port = int(connection.settings_dict["PORT"] or 5432)
    proxy = TcpProxy(db_port).start()
    url = database_env()["DATABASE_URL"].replace(f":{db_port}/", f":{proxy.port}/")
    relay = start_relay(start_process, queues.endpoint, budget="3", env={"DATABASE_URL": url, "LOG_LEVEL": "DEBUG"})
    try:
        # WHEN the database is cut for 8 s, while a Job waits to be published
        proxy.cut()
        past = timezone.now() - timedelta(seconds=1)
        job = Job.objects.create(
            kind="echo", payload={"message": "x"}, queue="default", publish_attempts=1, next_publish_at=past
        )
        processes.wait_for(lambda: "the database is failing" in relay.log(), timeout=30, what="the relay to notice")
        cut_at = time.monotonic()
        processes.wait_for(lambda: time.monotonic() - cut_at > 8, timeout=20, what="an 8 s outage")
        proxy.restore()

        # THEN once it answers again the relay says so, once, and publishes the Job
        processes.wait_for(lambda: "answers again" in relay.log(), timeout=30, what="the relay's recovery line")
        processes.wait_for(
            lambda: Job.objects.get(pk=job.pk).state == "queued", timeout=30, what="the job to be published"
        )
        assert queues.total("default") == 1
        log = relay.log()
        assert log.count("the database is failing") == 1
        assert log.count("answers again") == 1
        # AND it swept less and less often while the database was down: the interval doubled to its 2 s cap
        retries = log.count("still failing")
        print(f"failed sweeps during the 8 s outage: {retries + 1} (a fixed 0.5 s interval: 16)")
        assert retries <= 7
    finally:
        proxy.stop()
