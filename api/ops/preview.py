"""The replay preview's groups: the DLQ's messages by task and by the last exception their Job recorded, with how
long ago the oldest of each was first sent and how much longer the DLQ keeps it (retention counts from then)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django.db import DatabaseError

from api.jobs.models import Job

NO_JOB = "no job record"  # no Job has the message's task id: a foreign producer, or the Job was deleted
NO_ERROR = "no error recorded"  # the Job recorded no exception (say, its worker was killed mid-run)
SAMPLE = 5  # Job ids and task ids listed per group
_CHUNK = 500  # task ids per query


def _jobs_by_task_id(task_ids: list[str]) -> dict[str, dict[str, Any]]:
    jobs: dict[str, dict[str, Any]] = {}
    for start in range(0, len(task_ids), _CHUNK):
        rows = Job.objects.filter(task_id__in=task_ids[start : start + _CHUNK]).values("id", "task_id", "error")
        jobs.update((str(row["task_id"]), row) for row in rows)
    return jobs


def _last_exception(job: dict[str, Any] | None) -> str:
    if job is None:
        return NO_JOB
    lines = (job["error"] or "").strip().splitlines()
    return lines[0][:200] if lines else NO_ERROR


def preview_groups(
    matched: Iterable[tuple[str | None, str, int]], *, now_ms: float, retention_seconds: int
) -> list[dict[str, Any]]:
    """[(task id, task name, SentTimestamp ms)] of the messages a replay matched, grouped by (task, last exception
    of the Job with that task id), the largest group first. A database that cannot be read leaves the groups by
    task only. SQS keeps a message in a standard queue's DLQ until retention_seconds after its first send (the
    redrive keeps SentTimestamp): `dlq_keeps_seconds` is what is left of that for the group's oldest."""
    matched = list(matched)
    try:
        jobs = _jobs_by_task_id(sorted({task_id for task_id, _, _ in matched if task_id}))
        unread = None
    except DatabaseError as exc:
        jobs, unread = {}, f"job records not read: {type(exc).__name__}: {exc}"
    groups: dict[tuple[str, str], dict[str, Any]] = {}
    for task_id, task, sent_ms in matched:
        job = jobs.get(task_id) if task_id else None
        error = unread or _last_exception(job)
        group = groups.setdefault(
            (task, error),
            {"task": task, "error": error, "count": 0, "jobs": [], "task_ids": [], "first_sent_ms": sent_ms},
        )
        group["count"] += 1
        group["first_sent_ms"] = min(group["first_sent_ms"], sent_ms)
        if job is not None and len(group["jobs"]) < SAMPLE:
            group["jobs"].append(job["id"])
        if task_id and len(group["task_ids"]) < SAMPLE:
            group["task_ids"].append(task_id)
    for group in groups.values():
        age = max(0.0, (now_ms - group.pop("first_sent_ms")) / 1000)
        group["first_sent_age_seconds"] = round(age, 1)
        group["dlq_keeps_seconds"] = round(max(0.0, retention_seconds - age), 1)
    return sorted(groups.values(), key=lambda g: (-g["count"], g["task"], g["error"]))
