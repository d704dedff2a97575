"""The replay preview's groups: DLQ messages by task and by the last exception of the Job with their task id."""

from __future__ import annotations

import pytest
from django.db import DatabaseError

from api.jobs.models import Job
from api.ops.preview import NO_ERROR, NO_JOB, preview_groups

pytestmark = pytest.mark.django_db

NOW_MS = 1_800_000_000_000
SENT_MS = NOW_MS - 60_000  # first sent a minute ago
RETENTION = 7200  # the DLQ's retention: 2 h


def _groups(matched):
    """Group (task id, task name) pairs, each first sent a minute ago."""
    return preview_groups([(*m, SENT_MS) for m in matched], now_ms=NOW_MS, retention_seconds=RETENTION)


def _job(task_id: str, error: str = "", state: str = "failed") -> Job:
    return Job.objects.create(kind="fail", queue="default", state=state, task_id=task_id, error=error)


def test_messages_are_grouped_by_task_and_last_exception_largest_group_first():
    # GIVEN three jobs.fail messages whose Jobs failed with two different exceptions, and a jobs.echo message
    # whose task id no Job has (a foreign producer, or a Job deleted since)
    a, b, c = _job("t-a", "RuntimeError: bug #7"), _job("t-b", "RuntimeError: bug #7"), _job("t-c", "ValueError: x")
    matched = [("t-a", "jobs.fail"), ("t-c", "jobs.fail"), ("t-b", "jobs.fail"), ("t-z", "jobs.echo")]

    # WHEN the preview groups them
    groups = _groups(matched)

    # THEN one group per (task, last exception), the largest first, with the Jobs and task ids in each
    assert [(g["task"], g["error"], g["count"]) for g in groups] == [
        ("jobs.fail", "RuntimeError: bug #7", 2),
        ("jobs.echo", NO_JOB, 1),
        ("jobs.fail", "ValueError: x", 1),
    ]
    assert groups[0]["jobs"] == [a.pk, b.pk] and groups[0]["task_ids"] == ["t-a", "t-b"]
    assert groups[2]["jobs"] == [c.pk]
    assert groups[1]["jobs"] == [] and groups[1]["task_ids"] == ["t-z"]
    assert NO_JOB == "no job record"


def test_the_same_exception_on_another_task_is_another_group_and_a_job_without_error_says_so():
    # GIVEN the same exception text on two tasks, and a Job that recorded no error (killed mid-run)
    _job("t-1", "TimeoutError: slow"), _job("t-2", "TimeoutError: slow"), _job("t-3", "", state="running")
    matched = [("t-1", "jobs.fail"), ("t-2", "newsletter.send_one"), ("t-3", "jobs.fail")]

    # WHEN the preview groups them THEN three groups of one
    groups = {(g["task"], g["error"]): g["count"] for g in _groups(matched)}
    assert groups == {
        ("jobs.fail", "TimeoutError: slow"): 1,
        ("newsletter.send_one", "TimeoutError: slow"): 1,
        ("jobs.fail", NO_ERROR): 1,
    }


def test_a_long_or_multiline_error_is_grouped_by_its_first_line_and_few_ids_are_listed():
    # GIVEN 8 messages whose Jobs failed with the same first line but different details after it
    for i in range(8):
        _job(f"t-{i}", f"KeyError: 'user'\n  detail {i}")

    # WHEN the preview groups them
    [group] = _groups([(f"t-{i}", "jobs.fail") for i in range(8)])

    # THEN one group of 8, named by the first line, listing the first 5 Jobs only
    assert (group["error"], group["count"], len(group["jobs"]), len(group["task_ids"])) == ("KeyError: 'user'", 8, 5, 5)


def test_messages_without_a_task_id_and_an_unreadable_database_still_group_by_task(monkeypatch):
    # GIVEN a message without a task id, and a database that fails the Job lookup
    def refuse(*args, **kwargs):
        raise DatabaseError("connection refused")

    monkeypatch.setattr("api.ops.preview._jobs_by_task_id", refuse)

    # WHEN the preview groups messages THEN it groups them by task, saying the Jobs could not be read
    groups = _groups([("t-1", "jobs.fail"), (None, "?")])
    assert [(g["task"], g["count"]) for g in groups] == [("?", 1), ("jobs.fail", 1)]
    assert all(g["error"].startswith("job records not read: DatabaseError: connection refused") for g in groups)


def test_each_group_says_when_its_oldest_was_first_sent_and_how_long_the_dlq_keeps_it():
    # GIVEN two jobs.fail messages first sent 30 min and 90 min ago, in a DLQ that keeps messages 2 h after their
    # first send (the redrive keeps SentTimestamp; SQS's retention counts from it)
    matched = [("t-1", "jobs.fail", NOW_MS - 1_800_000), ("t-2", "jobs.fail", NOW_MS - 5_400_000)]

    # WHEN the preview groups them
    [group] = preview_groups(matched, now_ms=NOW_MS, retention_seconds=RETENTION)

    # THEN the group's oldest was first sent 90 min ago, and the DLQ keeps it 30 min more
    assert (group["first_sent_age_seconds"], group["dlq_keeps_seconds"]) == (5400.0, 1800.0)
    # AND past retention it reads 0, never negative
    [late] = preview_groups(matched, now_ms=NOW_MS + 7_200_000, retention_seconds=RETENTION)
    assert late["dlq_keeps_seconds"] == 0.0
