"""Receivers of the workers' signals that change a Job (connected in api/jobs/apps.py)."""

from __future__ import annotations

from typing import Any

from api.jobs.services import job_mark_expired, job_mark_run_lost
from workers.models import DiscardReason


def job_expire_on_discard(sender=None, *, reason: str, detail: str, kwargs: dict[str, Any], **_extra) -> None:
    """workers.discards.message_discarded: a task with a `job_id` keyword deleted unrun because its `expires`
    passed marks its Job expired (an error propagates to record_discard, which logs it)."""
    job_id = kwargs.get("job_id")
    if job_id is not None and reason == DiscardReason.EXPIRED:
        job_mark_expired(job_id=job_id, detail=detail)


def job_run_lost(sender=None, *, kwargs: dict[str, Any], exc: BaseException, delivery, **_extra) -> None:
    """workers.gate_request.run_lost: the pool process running a task with a `job_id` keyword died; its Job
    records the loss, or `dead_lettered` on the last receive (an error propagates to record_lost_run, which
    logs it)."""
    job_id = kwargs.get("job_id")
    if job_id is not None:
        job_mark_run_lost(job_id=job_id, exc=exc, delivery=delivery)
