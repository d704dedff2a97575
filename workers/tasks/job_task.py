"""A base task that records its Job's state (running, retrying, succeeded, failed) in the database."""

from __future__ import annotations

from workers.base_task import BaseTask


class JobTask(BaseTask):
    """For tasks published for a Job (`job_id` keyword): the Job row carries the state, not a backend."""

    abstract = True

    def before_start(self, task_id, args, kwargs):
        from api.jobs.services import job_mark_started

        if job_id := kwargs.get("job_id"):
            job_mark_started(job_id=job_id, task_id=task_id)

    def on_success(self, retval, task_id, args, kwargs):
        from api.jobs.services import job_mark_succeeded

        if job_id := kwargs.get("job_id"):
            job_mark_succeeded(job_id=job_id, result=retval)

    def on_retry(self, exc, task_id, args, kwargs, einfo):
        from api.jobs.services import job_mark_retrying

        if job_id := kwargs.get("job_id"):
            job_mark_retrying(job_id=job_id, error=f"{type(exc).__name__}: {exc}")

    def on_failure(self, exc, task_id, args, kwargs, einfo):
        from api.jobs.services import job_mark_failed

        if job_id := kwargs.get("job_id"):
            job_mark_failed(job_id=job_id, error=f"{type(exc).__name__}: {exc}")
