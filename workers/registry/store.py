"""The registry's writes: one UPSERT per renewal, and the pruning of rows long lost or stopped."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from workers.models import WorkerRegistration
from workers.registry.snapshot import WorkerSnapshot

UPDATED = [
    "nodename", "host", "pid", "queues", "concurrency", "prefetch", "version", "started_at",
    "last_poll_at", "renewed_at", "lost_after_seconds", "running", "counts", "renewals", "stopped_at",
]  # fmt: skip


def store_snapshot(snapshot: WorkerSnapshot, *, renewals: int, lost_after_seconds: int) -> None:
    """INSERT ... ON CONFLICT (worker_id) DO UPDATE: one statement, one write (PostgreSQL and SQLite)."""
    row = WorkerRegistration(
        **snapshot.as_row(),
        renewed_at=datetime.now(UTC),
        lost_after_seconds=lost_after_seconds,
        renewals=renewals,
    )
    WorkerRegistration.objects.bulk_create(
        [row], update_conflicts=True, unique_fields=["worker_id"], update_fields=UPDATED
    )


def prune_rows(*, keep: timedelta, now: datetime | None = None) -> int:
    """Rows not renewed for `keep` (lost or stopped long ago): one DELETE."""
    cutoff = (now or datetime.now(UTC)) - keep
    deleted, _ = WorkerRegistration.objects.filter(renewed_at__lt=cutoff).delete()
    return deleted
