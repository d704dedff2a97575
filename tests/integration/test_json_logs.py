"""A real worker with LOG_FORMAT=json (production's default) logs one JSON object per line, and the lines
written while a job's task runs carry its task id, task name and job id."""

from __future__ import annotations

import json

import pytest

from tests.integration.conftest import post_job, wait_for_job

pytestmark = pytest.mark.integration


def test_worker_log_lines_are_json_with_the_task_and_job(client, start_worker, queues):
    # GIVEN a worker logging JSON
    worker = start_worker(env={"LOG_FORMAT": "json"})

    # WHEN a job runs to success
    job_id = post_job(client, kind="echo", payload={"message": "hello"}).json()["job_id"]
    job = wait_for_job(job_id, {"succeeded"})

    # THEN every line Django's logging wrote is a JSON object (gunicorn-free: all of the worker's log is ours
    # except Celery's start-up banner, which it prints itself)
    entries = [json.loads(line) for line in worker.log().splitlines() if line.startswith("{")]
    assert entries and all({"time", "level", "logger", "message"} <= e.keys() for e in entries)
    # AND the lines of the job's task carry its ids
    of_task = [e for e in entries if e.get("task_id") == str(job.task_id)]
    assert of_task, [e["message"] for e in entries][-20:]
    assert all(e["job_id"] == job_id and e["task_name"] for e in of_task)
