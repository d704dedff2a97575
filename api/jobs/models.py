"""The Job: one client request for background work, and what became of it."""

from __future__ import annotations

import uuid

from django.db import models


class JobState(models.TextChoices):
    PENDING = "pending"  # stored (the outbox): published after the commit, or later by the relay's sweep
    QUEUED = "queued"  # SQS accepted the message
    RUNNING = "running"
    RETRYING = "retrying"  # failed; a retry is queued with a delay
    SUCCEEDED = "succeeded"
    FAILED = "failed"  # retries spent; SQS redelivers it until the redrive policy moves it to the DLQ
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
        }


class Effect(models.Model):
    """A side effect of the idempotent demo task: deliberately not unique, so a duplicate would show."""

    task_id = models.CharField(max_length=64, db_index=True)
    key = models.CharField(max_length=100)
    created_at = models.DateTimeField(auto_now_add=True)
