"""A query cut short by a soft time limit must not leave its connection broken for the retry that follows: on
PostgreSQL the next query would fail as if the database were down, and the worker would pause and hand the task
back, spending one of its receives (seen in CI on a loaded machine: the Job then went to the DLQ)."""

from __future__ import annotations

import signal

import pytest
from celery.exceptions import SoftTimeLimitExceeded
from django.db import OperationalError, connection

from workers import base_task, db_interrupts
from workers.db_interrupts import discard_interrupted_connections


def _cut_short_by_a_soft_time_limit() -> None:
    """A query interrupted the way billiard's soft time limit does it: an exception raised from a signal handler."""

    def soft_limit(*_args):
        raise SoftTimeLimitExceeded()

    previous = signal.signal(signal.SIGALRM, soft_limit)
    signal.setitimer(signal.ITIMER_REAL, 0.3)
    try:
        with pytest.raises(SoftTimeLimitExceeded):
            connection.cursor().execute("SELECT pg_sleep(3)")
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


@pytest.mark.django_db(transaction=True)
def test_a_connection_a_soft_time_limit_cut_short_is_replaced():
    if connection.vendor != "postgresql":
        pytest.skip("the broken state is psycopg's: SQLite answers in-process")
    # GIVEN a query cut short by the soft time limit, which leaves the connection mid-command
    _cut_short_by_a_soft_time_limit()
    with pytest.raises(OperationalError, match="another command is already in progress"):
        connection.cursor().execute("SELECT 1")

    # WHEN the interrupted connections are discarded
    closed = discard_interrupted_connections()

    # THEN that one was closed, and the next query runs on a fresh one
    assert closed == ["default"]
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        assert cursor.fetchone() == (1,)


@pytest.mark.django_db(transaction=True)
def test_a_healthy_connection_is_kept():
    # GIVEN a connection that answers
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
    before = connection.connection

    # WHEN the interrupted connections are discarded THEN none is closed
    assert discard_interrupted_connections() == []
    assert connection.connection is before


def test_a_retry_for_a_soft_time_limit_discards_them_first(monkeypatch):
    # GIVEN a project task retried because its soft time limit fired
    calls = []
    monkeypatch.setattr(db_interrupts, "discard_interrupted_connections", lambda: calls.append("discarded") or [])

    class Task(base_task.BaseTask):
        name = "tests.soft_limited"

    # WHEN Celery's autoretry calls retry with that exception (stopped before anything is published)
    monkeypatch.setattr(base_task.Task, "retry", lambda *a, **k: calls.append("retried"))
    Task().retry(exc=SoftTimeLimitExceeded())

    # THEN the connections are looked at before the retry is recorded or published
    assert calls == ["discarded", "retried"]


@pytest.mark.parametrize("handler", ["on_failure", "on_retry"])
def test_a_jobs_handlers_discard_them_before_writing_the_job(monkeypatch, handler):
    # GIVEN a Job's task whose soft time limit fired in before_start (no retry() runs then: the failure handler is
    # the first to touch the database), and one that failed otherwise
    from api.jobs.job_task import JobTask

    calls = []
    monkeypatch.setattr(db_interrupts, "discard_interrupted_connections", lambda: calls.append("discarded") or [])

    # WHEN its handler runs (no job_id: nothing to write)
    getattr(JobTask(), handler)(SoftTimeLimitExceeded(), "t-1", (), {}, None)
    getattr(JobTask(), handler)(RuntimeError("boom"), "t-2", (), {}, None)

    # THEN the connections were looked at for the soft time limit only
    assert calls == ["discarded"]
