"""The result backend is off by default (the Job row has the state); configured, results go to the DB."""

from __future__ import annotations

import pytest
from django_celery_results.models import TaskResult

from tests.integration.conftest import post_job, wait_for_job

pytestmark = pytest.mark.integration


def test_no_result_is_stored_by_default(client, start_worker, queues):
    # GIVEN a worker with the default configuration
    start_worker()
    # WHEN a job runs
    response = post_job(client, kind="echo", payload={"message": "fire and forget"})
    job = wait_for_job(response.json()["job_id"], {"succeeded"})
    # THEN the Job row has the result and no task result is stored
    assert job.result == {"message": "fire and forget"}
    assert not TaskResult.objects.filter(task_id=job.task_id).exists()


def test_django_db_result_backend_stores_results(client, start_worker, queues):
    # GIVEN a worker with RESULT_BACKEND=django-db
    start_worker(env={"RESULT_BACKEND": "django-db"})
    # WHEN a job runs
    response = post_job(client, kind="echo", payload={"message": "kept"})
    job = wait_for_job(response.json()["job_id"], {"succeeded"})
    # THEN its result is stored in the database by task id
    result = TaskResult.objects.get(task_id=job.task_id)
    assert result.status == "SUCCESS"
    assert "kept" in result.result
    assert result.task_name == "jobs.echo"
