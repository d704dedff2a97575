"""A base task that records its Job's state (running, retrying, succeeded, failed, in the DLQ) in the database,
and does not run a Job cancelled before it started."""

from __future__ import annotations

from celery.exceptions import Ignore

from api.jobs.services import job_mark_failed, job_mark_retrying, job_mark_started, job_mark_succeeded
from workers.base_task import BaseTask
from workers.delivery import delivery_of, retry_when
from workers.dependency_errors import handed_back_on_dependency_error


class JobTask(BaseTask):
    """For tasks published for a Job (`job_id` keyword): the Job row carries the state, not a backend.
    A state write that finds the database down hands the message back (workers/dependency_errors.py)."""

    abstract = True

    def before_start(self, task_id, args, kwargs):
        super().before_start(task_id, args, kwargs)
        if job_id := kwargs.get("job_id"):
            with handed_back_on_dependency_error():
                run = job_mark_started(job_id=job_id, delivery=delivery_of(self.request))
            if not run:  # cancelled: Celery acks (deletes) an ignored task's message; the discard is recorded
                raise Ignore(f"job {job_id} was cancelled before it started")

    def on_success(self, retval, task_id, args, kwargs):
        if job_id := kwargs.get("job_id"):
            with handed_back_on_dependency_error():
                job_mark_succeeded(job_id=job_id, result=retval)

    def on_retry(self, exc, task_id, args, kwargs, einfo):
        super().on_retry(exc, task_id, args, kwargs, einfo)
        if job_id := kwargs.get("job_id"):
            worker = delivery_of(self.request).worker
            with handed_back_on_dependency_error():
                job_mark_retrying(job_id=job_id, exc=exc, retry_in=retry_when(einfo), worker=worker)

    def on_failure(self, exc, task_id, args, kwargs, einfo):
        super().on_failure(exc, task_id, args, kwargs, einfo)
        if job_id := kwargs.get("job_id"):
            with handed_back_on_dependency_error():
                job_mark_failed(job_id=job_id, exc=exc, delivery=delivery_of(self.request))
