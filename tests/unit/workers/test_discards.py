"""Unit tests of workers/discards.py through Celery's own discard paths (the contract they rely on)."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from unittest.mock import Mock

import pytest
from celery.contrib.testing.mocks import TaskMessage
from celery.exceptions import TaskRevokedError
from celery.worker import state as worker_state
from django.db import DatabaseError

from api.jobs.models import Job, JobState
from api.jobs.services import job_mark_expired
from workers import discards
from workers.models import DiscardedMessage, DiscardReason

pytestmark = pytest.mark.django_db


@pytest.fixture
def app():
    import api.jobs.tasks  # noqa: F401  (registers the project's tasks)
    import api.newsletter.tasks  # noqa: F401
    from workers.celery_app import app  # connects workers.signals, discards.on_task_revoked among them

    return app


def _message(job: Job | None = None, **headers):
    kwargs = {"job_id": job.pk, "message": "m"} if job else {"message": "m"}
    message = TaskMessage("jobs.echo", id=str(job.task_id) if job else None, kwargs=kwargs, **headers)
    message.delivery_info, message.properties = {"routing_key": "default", "exchange": "default"}, {}
    return message


def _strategy(app):
    """Celery's default strategy for jobs.echo, on a stand-in consumer."""
    consumer = Mock(disable_rate_limits=True, event_dispatcher=None, task_buckets={})
    consumer.controller.state.revoked = worker_state.revoked
    return consumer, app.tasks["jobs.echo"].start_strategy(app, consumer)


def _queued_job() -> Job:
    return Job.objects.create(kind="echo", payload={"message": "m"}, queue="default", state=JobState.QUEUED)


def test_contract_an_expired_message_is_acked_unrun_and_task_revoked_says_expired(app, caplog):
    # GIVEN a queued Job whose message expired a minute ago, and a receiver of Celery's task_revoked signal
    from celery import signals

    job = _queued_job()
    seen = []

    def spy(sender=None, request=None, terminated=None, signum=None, expired=None, **_kwargs):
        seen.append(
            (sender.name, request.id, request.kwargs, request.delivery_info["routing_key"], terminated, expired)
        )

    signals.task_revoked.connect(spy, weak=False)
    consumer, handle = _strategy(app)
    ack = Mock()
    try:
        # WHEN Celery's strategy receives it
        with caplog.at_level(logging.INFO):
            handle(_message(job, expires=(datetime.now(UTC) - timedelta(minutes=1)).isoformat()), None, ack, Mock(), [])
    finally:
        signals.task_revoked.disconnect(spy)

    # THEN Celery acked it without running it, and the signal carries what the record needs
    ack.assert_called_once()
    consumer.on_task_request.assert_not_called()
    assert seen == [("jobs.echo", str(job.task_id), {"job_id": job.pk, "message": "m"}, "default", False, True)]
    # AND the project recorded it: a row, a WARNING naming id and name, the Job expired with the time
    row = DiscardedMessage.objects.get(task_id=job.task_id)
    assert (row.task_name, row.queue, row.reason) == ("jobs.echo", "default", DiscardReason.EXPIRED)
    [warning] = [r for r in caplog.records if r.getMessage().startswith("task expired: ")]
    assert warning.levelno == logging.WARNING and f"jobs.echo[{job.task_id}]" in warning.getMessage()
    job.refresh_from_db()
    assert job.state == JobState.EXPIRED and job.finished_at is not None


def test_contract_a_held_eta_that_expires_before_it_runs_is_discarded_by_execute_using_pool(app):
    # GIVEN a request Celery held for its ETA, whose `expires` has passed by the time the timer fires
    job = _queued_job()
    consumer, handle = _strategy(app)
    eta = datetime.now(UTC) + timedelta(seconds=30)
    handle(
        _message(job, eta=eta.isoformat(), expires=(eta + timedelta(seconds=1)).isoformat()), None, Mock(), Mock(), []
    )
    [(_when, _callback, (request,)), _] = consumer.timer.call_at.call_args
    request._expires = datetime.now(UTC) - timedelta(seconds=1)  # time passes

    # WHEN the timer hands it to the pool THEN Celery refuses to run it
    pool = Mock()
    with pytest.raises(TaskRevokedError):
        request.execute_using_pool(pool)
    pool.apply_async.assert_not_called()
    # AND the discard is recorded as an expiry
    assert DiscardedMessage.objects.get(task_id=job.task_id).reason == DiscardReason.EXPIRED
    job.refresh_from_db()
    assert job.state == JobState.EXPIRED


def test_a_revoked_id_is_recorded_as_revoked_and_leaves_the_job(app, caplog):
    # GIVEN an id in the worker's revoked set (on SQS only Celery's own expiry puts ids there)
    job = _queued_job()
    worker_state.revoked.add(str(job.task_id))
    consumer, handle = _strategy(app)
    try:
        # WHEN a message with that id arrives
        handle(_message(job), None, Mock(), Mock(), [])
    finally:
        worker_state.revoked.discard(str(job.task_id))
    # THEN it is recorded as revoked, logged, and the Job is left as it is (an earlier copy decided it)
    assert DiscardedMessage.objects.get(task_id=job.task_id).reason == DiscardReason.REVOKED
    assert any(r.getMessage().startswith("task revoked: ") for r in caplog.records)
    job.refresh_from_db()
    assert job.state == JobState.QUEUED


def test_a_terminated_task_is_no_discard():
    # GIVEN the signal for a running task killed by revoke(terminate=True)
    request = Mock(id="t1", task="jobs.echo", kwargs={}, delivery_info={"routing_key": "default"})
    # WHEN handled THEN nothing is recorded: it started
    discards.on_task_revoked(request=request, terminated=True, expired=False)
    assert not DiscardedMessage.objects.exists()


def test_a_database_error_is_logged_never_raised(monkeypatch, caplog):
    # GIVEN a database that refuses the write
    def refuse(**_kwargs):
        raise DatabaseError("the database is down")

    monkeypatch.setattr(DiscardedMessage.objects, "create", refuse)
    request = Mock(id="t2", task="jobs.echo", kwargs={"job_id": 1}, delivery_info={"routing_key": "default"})
    # WHEN an expiry is recorded THEN the consumer carries on, and both the WARNING and the failure are logged
    discards.on_task_revoked(request=request, terminated=False, expired=True)
    assert "task expired: jobs.echo[t2]" in caplog.text
    assert "could not record the discard of jobs.echo[t2]" in caplog.text


def test_a_receivers_database_error_is_logged_never_raised(monkeypatch, caplog):
    # GIVEN the jobs app's receiver (connected by api/jobs/apps.py) whose Job update the database refuses
    def refuse(**_kwargs):
        raise DatabaseError("the database is down")

    monkeypatch.setattr("api.jobs.receivers.job_mark_expired", refuse)
    request = Mock(id="t3", task="jobs.echo", kwargs={"job_id": 1}, delivery_info={"routing_key": "default"})
    # WHEN an expiry is recorded THEN the row is stored, and the receiver's failure is logged, not raised
    discards.on_task_revoked(request=request, terminated=False, expired=True)
    assert DiscardedMessage.objects.filter(task_id="t3").exists()
    assert "could not record the discard of jobs.echo[t3]" in caplog.text


def test_job_mark_expired_keeps_a_finished_jobs_outcome():
    # GIVEN a Job an earlier copy of the message already ran
    job = Job.objects.create(
        kind="echo", payload={}, queue="default", state=JobState.SUCCEEDED, finished_at=datetime.now(UTC)
    )
    # WHEN a late copy expires THEN the Job keeps its outcome
    job_mark_expired(job_id=job.pk, detail="late copy")
    job.refresh_from_db()
    assert job.state == JobState.SUCCEEDED
