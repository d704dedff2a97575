"""TaskExecution: one row per idempotent task id, a lease while it runs, `done` once its effects commit;
DiscardedMessage: a message the worker deleted without running its task, and why."""

from django.db import models


class ExecutionState(models.TextChoices):
    RUNNING = "running"  # claimed; lease_until bounds how long the claim holds if its worker dies
    RELEASED = "released"  # the run failed; the next delivery may claim it at once
    DONE = "done"  # committed together with the task's database effects


class TaskExecution(models.Model):
    task_id = models.CharField(max_length=64, primary_key=True)
    task_name = models.CharField(max_length=200)
    state = models.CharField(max_length=10, choices=ExecutionState.choices)
    owner = models.CharField(max_length=200)  # hostname:pid of the claiming process
    lease_until = models.DateTimeField()
    runs = models.PositiveIntegerField(default=1)  # claims granted: the fencing token's generation
    started_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"{self.task_name}[{self.task_id}] {self.state}"


class BeatLease(models.Model):
    """Who may schedule: the one beat holding an unexpired lease (workers/beat.py)."""

    name = models.CharField(max_length=50, primary_key=True)
    owner = models.CharField(max_length=200)
    expires_at = models.DateTimeField()


class DiscardReason(models.TextChoices):
    EXPIRED = "expired"  # its `expires` had passed when a worker received it
    REVOKED = "revoked"  # revoked (Celery's revoke path) before it ran
    CANCELLED = "cancelled"  # its Job was cancelled before it ran


class DiscardedMessage(models.Model):
    """One row per message a worker deleted without running it: a recorded outcome, never a silent drop."""

    task_id = models.CharField(max_length=64, db_index=True)
    task_name = models.CharField(max_length=200)
    queue = models.CharField(max_length=64)
    reason = models.CharField(max_length=20, choices=DiscardReason.choices)
    detail = models.TextField(blank=True, default="")
    at = models.DateTimeField(auto_now_add=True, db_index=True)

    def __str__(self) -> str:
        return f"{self.task_name}[{self.task_id}] {self.reason}"


class WorkerRegistration(models.Model):
    """One row per worker process, renewed by its liveness tick (workers/registry/): who it is, what it runs
    now, what it finished lately. A row not renewed within `lost_after_seconds` is a lost worker."""

    worker_id = models.CharField(max_length=32, primary_key=True)  # drawn at start: pids repeat in containers
    nodename = models.CharField(max_length=255)  # Celery's worker@host
    host = models.CharField(max_length=255)
    pid = models.PositiveIntegerField()
    queues = models.JSONField(default=list)
    concurrency = models.PositiveIntegerField()
    prefetch = models.PositiveIntegerField()  # messages it may hold: concurrency x prefetch multiplier
    version = models.CharField(max_length=100)
    started_at = models.DateTimeField()
    last_poll_at = models.DateTimeField()  # the last liveness tick the snapshot was taken at
    renewed_at = models.DateTimeField(db_index=True)  # when this row was written (the worker's clock)
    lost_after_seconds = models.PositiveIntegerField()
    running = models.JSONField(default=list)  # [{"task_id", "name", "since"}]
    counts = models.JSONField(default=dict)  # {"done", "failed", "retried", "window_minutes"}
    renewals = models.PositiveIntegerField(default=0)  # rows written by this worker so far (the write cost)
    stopped_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"{self.nodename} pid {self.pid}"
