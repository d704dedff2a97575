"""The audit record of every DLQ replay posted from the queues page: who, when, the filters, what moved."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils import timezone


class ReplayAudit(models.Model):
    """Written before the replay runs (no row, no replay), completed with the answer once it ran."""

    at = models.DateTimeField(default=timezone.now, db_index=True)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    username = models.CharField(max_length=150)  # kept when the user is deleted
    queue = models.CharField(max_length=100)
    dry_run = models.BooleanField()
    filters = models.JSONField()  # the request body as posted (text when it was not JSON)
    status = models.PositiveSmallIntegerField(null=True)  # the HTTP status answered; null: never answered
    moved = models.PositiveIntegerField(default=0)
    report = models.JSONField(null=True)  # the replay's report (200) or the error answered
    finished_at = models.DateTimeField(null=True)

    class Meta:
        ordering = ["-at"]

    def __str__(self) -> str:
        kind = "preview" if self.dry_run else "replay"
        return f"{kind} of {self.queue} by {self.username} at {self.at:%Y-%m-%d %H:%M:%S}: moved {self.moved}"
