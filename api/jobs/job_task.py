"""A base task that records its Job's state (running, retrying, succeeded, failed) in the database."""

from __future__ import annotations

from workers.base_task import BaseTask
from workers.dependency_errors import handed_back_on_dependency_error


class JobTask(BaseTask):
    """For tasks published for a Job (`job_id` keyword): the Job row carries the state, not a backend.
    A state write that finds the database down hands the message back (workers/dependency_errors.py)."""

    abstract = True

    def before_start(self, task_id, args, kwargs):
        from api.jobs.services import job_mark_started

        super().before_start(task_id, args, kwargs)
        if job_id := kwargs.get("job_id"):
            with handed_back_on_dependency_error():
                job_mark_started(job_id=job_id, task_id=task_id)

    def on_success(self, retval, task_id, args, kwargs):
        from api.jobs.services import job_mark_succeeded

        if job_id := kwargs.get("job_id"):
            with handed_back_on_dependency_error():
                job_mark_succeeded(job_id=job_id, result=retval)

    def on_retry(self, exc, task_id, args, kwargs, einfo):
        from api.jobs.services import job_mark_retrying

        if job_id := kwargs.get("job_id"):
            with handed_back_on_dependency_error():
                job_mark_retrying(job_id=job_id, error=f"{type(exc).__name__}: {exc}")

    def on_failure(self, exc, task_id, args, kwargs, einfo):
        from api.jobs.services import job_mark_failed

        if job_id := kwargs.get("job_id"):
            with handed_back_on_dependency_error():
                job_mark_failed(job_id=job_id, error=f"{type(exc).__name__}: {exc}")
