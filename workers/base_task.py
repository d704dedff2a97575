"""The base Task of every project task: retry with backoff on any exception, delays carried by SQS."""

from __future__ import annotations

from celery import Task

from workers.topology import get_topology

_retry = get_topology().retry


class BaseTask(Task):
    """Retries any exception with exponential backoff, `max_retries` times.

    A retry is a new message whose countdown workers/sqs_transport.py turns into SQS DelaySeconds (past
    900 s the worker hops it on: workers/eta_hop.py), so no worker holds it as an ETA past the visibility
    timeout; the backoff is capped at the queue's retention less 900 s. Once retries are spent the task
    fails unacked and SQS redrives it to the DLQ.
    The policy comes from the topology file (`retry:`).
    """

    abstract = True
    #: Run this task's effects at most once per task id (workers/idempotency.py).
    idempotent = False
    autoretry_for = (Exception,)
    max_retries = _retry.max_retries
    retry_backoff = _retry.backoff_seconds
    retry_backoff_max = _retry.backoff_max_seconds
    retry_jitter = _retry.jitter

    def __call__(self, *args, **kwargs):
        if not self.idempotent or self.request.called_directly:
            return super().__call__(*args, **kwargs)
        from workers.idempotency import busy_retry, lease_for, run_once

        return run_once(
            self.request.id,
            self.name,
            lease_for(self),
            lambda: super(BaseTask, self).__call__(*args, **kwargs),
            on_busy=busy_retry(self),
        )
