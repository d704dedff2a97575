"""The Job: one client request for background work, and what became of it."""

from __future__ import annotations

import uuid

from django.db import models


class JobState(models.TextChoices):
    PENDING = "pending"  # stored (the outbox): published after the commit, or later by the relay's sweep
    QUEUED = "queued"  # SQS accepted the message
    DELAYED = "delayed"  # SQS accepted the message, published with a countdown: not due before due_at
    RUNNING = "running"  # a worker started it (worker_hostname, worker_pid; receive_count: this delivery's)
    RETRYING = "retrying"  # failed; a retry is queued with a delay (next_attempt_at)
    SUCCEEDED = "succeeded"
    FAILED = "failed"  # retries spent; SQS redelivers it until the redrive policy moves it to the DLQ
    # Failed on the last receive its queue's redrive policy allows (ApproximateReceiveCount >= maxReceiveCount):
    # SQS moves the message to the DLQ instead of delivering it again. A replay takes it back to running.
    DEAD_LETTERED = "dead_lettered"
    EXPIRED = "expired"  # its `expires` passed before a worker ran it: deleted, not run (finished_at says when)
    CANCELLED = "cancelled"  # cancelled before it ran
    PUBLISH_FAILED = "publish_failed"  # legacy rows only: a failed publish now stays pending for the relay
    REFUSED = "refused"  # a publish guard refused the message (too large, delay too long)


class Job(models.Model):
    kind = models.CharField(max_length=64)
    payload = models.JSONField(default=dict)
    queue = models.CharField(max_length=64)
    countdown = models.PositiveIntegerField(default=0)
    state = models.CharField(max_length=20, choices=JobState.choices, default=JobState.PENDING, db_index=True)
    task_id = models.CharField(max_length=36, unique=True, default=uuid.uuid4)
    attempts = models.PositiveIntegerField(default=0)  # times a worker started it
    # The outbox: publishing is retried by the relay until SQS accepts the message.
    publish_attempts = models.PositiveIntegerField(default=0)
    publish_error = models.TextField(blank=True, default="")  # the last failed publish, if any
    next_publish_at = models.DateTimeField(null=True, blank=True, db_index=True)  # pending: when the relay tries
    published_at = models.DateTimeField(null=True, blank=True)
    due_at = models.DateTimeField(null=True, blank=True)  # a countdown/ETA: when it may run
    result = models.JSONField(null=True, blank=True)
    error = models.TextField(blank=True, default="")
    # What the workers saw (api/jobs/services.py). `error` stays the last exception's one line.
    traceback = models.TextField(blank=True, default="")  # the last exception's traceback, its last TRACEBACK_CHARS
    next_attempt_at = models.DateTimeField(null=True, blank=True)  # retrying: when the retry is due
    worker_hostname = models.CharField(max_length=255, blank=True, default="")  # the last worker that started it
    worker_pid = models.PositiveIntegerField(null=True, blank=True)  # its pool process
    receive_count = models.PositiveIntegerField(default=0)  # SQS ApproximateReceiveCount of the last start
    dead_lettered_at = models.DateTimeField(null=True, blank=True)  # the failure after which SQS moves it to the DLQ
    dlq_receive_count = models.PositiveIntegerField(null=True, blank=True)  # the receive that failed last
    replays = models.PositiveIntegerField(default=0)  # times it came back from the DLQ (a replay) and was received
    replayed_at = models.DateTimeField(null=True, blank=True)  # when a worker last received a replayed copy
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-id"]

    def __str__(self) -> str:
        return f"Job {self.pk} {self.kind} {self.state}"

    def as_dict(self) -> dict:
        return {
            "id": self.pk,
            "kind": self.kind,
            "payload": self.payload,
            "queue": self.queue,
            "countdown": self.countdown,
            "state": self.state,
            "task_id": str(self.task_id),
            "attempts": self.attempts,
            "publish_attempts": self.publish_attempts,
            "publish_error": self.publish_error,
            "published_at": self.published_at.isoformat() if self.published_at else None,
            "next_publish_at": self.next_publish_at.isoformat() if self.next_publish_at else None,
            "due_at": self.due_at.isoformat() if self.due_at else None,
            "result": self.result,
            "error": self.error,
            "created_at": self.created_at.isoformat() if self.created_at else None,
            "started_at": self.started_at.isoformat() if self.started_at else None,
            "finished_at": self.finished_at.isoformat() if self.finished_at else None,
            "traceback": self.traceback,
            "next_attempt_at": _iso(self.next_attempt_at),
            "worker": {"hostname": self.worker_hostname, "pid": self.worker_pid} if self.worker_hostname else None,
            "receive_count": self.receive_count,
            "dead_lettered_at": _iso(self.dead_lettered_at),
            "dlq_receive_count": self.dlq_receive_count,
            "replays": self.replays,
            "replayed_at": _iso(self.replayed_at),
        }


def _iso(value) -> str | None:
    return value.isoformat() if value else None


class JobEvent(models.Model):
    """One step of a Job's history, as its api, relay or workers recorded it (append-only)."""

    job = models.ForeignKey(Job, on_delete=models.CASCADE, related_name="events")
    at = models.DateTimeField(auto_now_add=True)
    state = models.CharField(max_length=20)  # the Job's state after this step (unchanged when the step was refused)
    detail = models.CharField(max_length=500, blank=True, default="")
    worker = models.CharField(max_length=255, blank=True, default="")  # hostname:pid when a worker wrote it

    class Meta:
        ordering = ["at", "id"]

    def __str__(self) -> str:
        return f"{self.at:%H:%M:%S} {self.state} {self.detail}"


class Effect(models.Model):
    """A side effect of the idempotent demo task: deliberately not unique, so a duplicate would show."""

    task_id = models.CharField(max_length=64, db_index=True)
    key = models.CharField(max_length=100)
    created_at = models.DateTimeField(auto_now_add=True)
