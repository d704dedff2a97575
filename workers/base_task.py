"""The base Task of every project task: retry with backoff on any exception, delays carried by SQS."""

from __future__ import annotations

from celery import Task

from core.topology import get_topology
from workers.db_interrupts import discard_if_cut_short
from workers.dependency_errors import (
    DependencyDown,
    dependency_down,
    handed_back_on_dependency_error,
    is_dependency_error,
    quiet_hand_back_logs,
)

_retry = get_topology().retry
quiet_hand_back_logs()


class BaseTask(Task):
    """Retries any exception with exponential backoff, `max_retries` times.

    A retry is a new message whose countdown workers/sqs_transport.py turns into SQS DelaySeconds (past
    900 s the worker hops it on: workers/eta_hop.py), so no worker holds it as an ETA past the visibility
    timeout; the backoff is capped at the queue's retention less 900 s. Once retries are spent the task
    fails unacked and SQS redrives it to the DLQ.
    The policy comes from the topology file (`retry:`).

    A dependency error (workers/dependency_errors.py: the database is unreachable) is not the task's failure:
    it neither retries nor fails, the message is handed back and the worker pauses (workers/dependency_gate.py).
    """

    abstract = True
    #: Run this task's effects at most once per task id (workers/idempotency.py).
    idempotent = False
    autoretry_for = (Exception,)
    max_retries = _retry.max_retries
    retry_backoff = _retry.backoff_seconds
    retry_backoff_max = _retry.backoff_max_seconds
    retry_jitter = _retry.jitter
    #: Tells the worker's main process about a hand-back (workers/gate_request.py) and counts outcomes (registry).
    Request = "workers.registry.request:RegistryRequest"

    def before_start(self, task_id, args, kwargs):
        """A message received while this worker pauses (held, not started) goes back without touching the
        database."""
        from workers.dependency_gate import paused_in_parent

        if not self.request.is_eager and paused_in_parent():
            raise DependencyDown("this worker is paused until the database answers")

    def on_retry(self, exc, task_id, args, kwargs, einfo):
        """Subclasses that write in their handlers call this first: a soft time limit may have cut a query short
        (in before_start, where no retry() runs), and the write would take its broken connection for an outage."""
        discard_if_cut_short(exc)

    def on_failure(self, exc, task_id, args, kwargs, einfo):
        discard_if_cut_short(exc)

    def __call__(self, *args, **kwargs):
        with handed_back_on_dependency_error():  # the claim, the task, the release: wherever the database fails
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

    def retry(
        self, args=None, kwargs=None, exc=None, throw=True, eta=None, countdown=None, max_retries=None, **options
    ):
        """autoretry_for catches every exception: a dependency error must not spend max_retries. A soft time limit
        may have cut a query short: its connection is discarded before the retry is recorded and published."""
        discard_if_cut_short(exc)
        if exc is not None and is_dependency_error(exc):
            raise dependency_down(exc) from exc
        return super().retry(args, kwargs, exc, throw, eta, countdown, max_retries, **options)
