"""Every Job state change the api, the relay and the workers report (api/jobs/services.py), including reports
that arrive late or twice: each is a compare-and-set that never overwrites a later truth, and each leaves a
JobEvent in the Job's history. The test topology's default queue has maxReceiveCount 2."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from billiard.exceptions import WorkerLostError
from django.utils import timezone

from api.jobs.models import Job, JobState
from api.jobs.outbox import record
from api.jobs.publisher import Attempt
from api.jobs.services import (
    TRACEBACK_CHARS,
    job_cancel,
    job_mark_expired,
    job_mark_failed,
    job_mark_retrying,
    job_mark_run_lost,
    job_mark_started,
    job_mark_succeeded,
)
from workers.delivery import Delivery
from workers.models import DiscardedMessage

pytestmark = pytest.mark.django_db


def _job(state: str = JobState.QUEUED, **fields) -> Job:
    return Job.objects.create(kind="echo", payload={"message": "hi"}, queue="default", state=state, **fields)


def _delivery(receive_count: int | None = 1, replays: int = 0) -> Delivery:
    return Delivery(
        hostname="celery@w1",
        pid=4242,
        task_name="jobs.echo",
        queue="t-default",
        receive_count=receive_count,
        replays=replays,
    )


def _raised(message: str = "boom") -> Exception:
    try:
        raise RuntimeError(message)
    except RuntimeError as exc:
        return exc


def _history(job: Job) -> list[str]:
    return list(job.events.values_list("state", flat=True))


# --- published: queued or delayed ----------------------------------------------------------------------


def test_a_published_job_is_queued():
    # GIVEN a pending Job WHEN SQS accepts its message
    job = _job(JobState.PENDING)
    record(job.pk, Attempt(published=True))
    # THEN it is queued, and the history says so
    job.refresh_from_db()
    assert job.state == JobState.QUEUED and job.published_at is not None
    assert _history(job) == [JobState.QUEUED]


def test_a_job_published_with_a_countdown_is_delayed_until_due():
    # GIVEN a pending Job due in a minute WHEN SQS accepts its message
    due = timezone.now() + timedelta(seconds=60)
    job = _job(JobState.PENDING, countdown=60, due_at=due)
    record(job.pk, Attempt(published=True))
    # THEN it is delayed, its due time kept
    job.refresh_from_db()
    assert job.state == JobState.DELAYED and job.due_at == due


def test_a_late_publish_record_does_not_undo_a_start():
    # GIVEN a Job a fast worker started before the relay recorded its publish
    job = _job(JobState.PENDING)
    job_mark_started(job_id=job.pk, delivery=_delivery())
    # WHEN the publish is recorded THEN it stays running
    record(job.pk, Attempt(published=True))
    assert Job.objects.get(pk=job.pk).state == JobState.RUNNING


# --- running ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("state", [JobState.QUEUED, JobState.DELAYED, JobState.RETRYING, JobState.PENDING])
def test_a_started_job_is_running_on_its_worker(state):
    # GIVEN a Job not started WHEN a worker starts it (its second receive)
    job = _job(state, next_attempt_at=timezone.now())
    assert job_mark_started(job_id=job.pk, delivery=_delivery(receive_count=2)) is True
    # THEN running, on that worker and pool process, with the receive count and one attempt more
    job.refresh_from_db()
    assert job.state == JobState.RUNNING
    assert (job.worker_hostname, job.worker_pid, job.receive_count, job.attempts) == ("celery@w1", 4242, 2, 1)
    assert job.next_attempt_at is None and job.started_at is not None
    [event] = job.events.all()
    assert (event.state, event.worker) == (JobState.RUNNING, "celery@w1:4242")
    assert "receive 2" in event.detail


def test_a_duplicate_delivery_after_success_keeps_succeeded():
    # GIVEN a Job that succeeded
    job = _job(JobState.SUCCEEDED, attempts=1)
    # WHEN a duplicate copy of its message starts
    assert job_mark_started(job_id=job.pk, delivery=_delivery(receive_count=1)) is True
    # THEN it stays succeeded; the start is counted and recorded as a duplicate
    job.refresh_from_db()
    assert job.state == JobState.SUCCEEDED and job.attempts == 2
    assert "duplicate delivery" in job.events.get().detail


# --- retrying --------------------------------------------------------------------------------------------


def test_a_retry_records_when_the_next_attempt_is_due_and_the_error():
    # GIVEN a running Job
    job = _job(JobState.RUNNING)
    before = timezone.now()
    # WHEN its run fails and Celery retries it in 6 s
    job_mark_retrying(job_id=job.pk, exc=_raised("flaky"), retry_in=6, worker="celery@w1:4242")
    # THEN retrying, next attempt about 6 s from now, the error's one line and its traceback
    job.refresh_from_db()
    assert job.state == JobState.RETRYING
    assert before + timedelta(seconds=6) <= job.next_attempt_at <= timezone.now() + timedelta(seconds=6)
    assert job.error == "RuntimeError: flaky"
    assert job.traceback.startswith("Traceback") and "RuntimeError: flaky" in job.traceback
    assert _history(job) == [JobState.RETRYING]


def test_a_retry_at_an_eta_records_that_eta():
    job = _job(JobState.RUNNING)
    eta = datetime(2030, 1, 1, tzinfo=UTC)
    job_mark_retrying(job_id=job.pk, exc=_raised(), retry_in=eta)
    assert Job.objects.get(pk=job.pk).next_attempt_at == eta


@pytest.mark.parametrize("state", [JobState.SUCCEEDED, JobState.CANCELLED, JobState.DEAD_LETTERED, JobState.EXPIRED])
def test_a_late_retry_does_not_regress_a_finished_job(state):
    # GIVEN a Job already finished (a duplicate run's retry arrives after the first copy's outcome)
    job = _job(state, error="")
    # WHEN the late retry is reported
    job_mark_retrying(job_id=job.pk, exc=_raised("late"), retry_in=3)
    # THEN it keeps its state and error; the history says the report was ignored
    job.refresh_from_db()
    assert job.state == state and job.error == "" and job.next_attempt_at is None
    assert "late retry report ignored" in job.events.get().detail


# --- failed, in the DLQ --------------------------------------------------------------------------------


def test_a_failure_before_the_last_receive_is_failed_and_delivered_again():
    # GIVEN a running Job on its first receive (maxReceiveCount 2)
    job = _job(JobState.RUNNING)
    # WHEN it fails with its retries spent
    job_mark_failed(job_id=job.pk, exc=_raised("bug"), delivery=_delivery(receive_count=1))
    # THEN failed, not yet in the DLQ
    job.refresh_from_db()
    assert job.state == JobState.FAILED and job.dead_lettered_at is None
    assert job.error == "RuntimeError: bug" and "RuntimeError: bug" in job.traceback
    assert "receive 1 of 2" in job.events.get().detail


def test_a_failure_on_the_last_allowed_receive_is_dead_lettered():
    # GIVEN a Job failed once, started again on its second receive (maxReceiveCount 2)
    job = _job(JobState.FAILED)
    job_mark_started(job_id=job.pk, delivery=_delivery(receive_count=2))
    # WHEN it fails again
    job_mark_failed(job_id=job.pk, exc=_raised("bug"), delivery=_delivery(receive_count=2))
    # THEN it is in the DLQ: since now, after receive 2
    job.refresh_from_db()
    assert job.state == JobState.DEAD_LETTERED
    assert job.dead_lettered_at is not None and job.dlq_receive_count == 2
    assert job.finished_at is not None
    assert _history(job) == [JobState.RUNNING, JobState.DEAD_LETTERED]


def test_a_failure_with_no_receive_count_known_stays_failed():
    job = _job(JobState.RUNNING)
    job_mark_failed(job_id=job.pk, exc=_raised(), delivery=_delivery(receive_count=None))
    assert Job.objects.get(pk=job.pk).state == JobState.FAILED


def test_a_late_failure_does_not_regress_a_success():
    # GIVEN a Job that succeeded WHEN a duplicate run's failure arrives
    job = _job(JobState.SUCCEEDED)
    job_mark_failed(job_id=job.pk, exc=_raised("dup"), delivery=_delivery(receive_count=2))
    # THEN it stays succeeded, without an error
    job.refresh_from_db()
    assert job.state == JobState.SUCCEEDED and job.error == "" and job.dead_lettered_at is None


def test_a_traceback_is_kept_short():
    # GIVEN an exception with a huge message WHEN it fails a Job
    job = _job(JobState.RUNNING)
    job_mark_failed(job_id=job.pk, exc=_raised("x" * 50_000), delivery=_delivery())
    # THEN the traceback and the error line are bounded, the traceback keeps its end
    job.refresh_from_db()
    assert len(job.traceback) == TRACEBACK_CHARS and job.traceback.startswith("…")
    assert job.traceback.rstrip().endswith("x")
    assert len(job.error) <= 1000


# --- replayed --------------------------------------------------------------------------------------------


def test_a_replayed_job_runs_again_and_counts_the_replay_once_however_often_delivered():
    # GIVEN a Job in the DLQ
    job = _job(JobState.DEAD_LETTERED, dead_lettered_at=timezone.now(), dlq_receive_count=2)
    # WHEN the replayed message (counter 1) is received, then a duplicate of it
    job_mark_started(job_id=job.pk, delivery=_delivery(receive_count=1, replays=1))
    job_mark_started(job_id=job.pk, delivery=_delivery(receive_count=1, replays=1))
    # THEN it runs again, replayed once, its last trip to the DLQ still on record
    job.refresh_from_db()
    assert job.state == JobState.RUNNING
    assert job.replays == 1 and job.replayed_at is not None
    assert job.attempts == 2 and job.dlq_receive_count == 2
    assert "replayed ×1" in job.events.first().detail


def test_a_replayed_job_that_succeeds_is_succeeded():
    job = _job(JobState.DEAD_LETTERED, error="RuntimeError: bug", traceback="Traceback …")
    job_mark_started(job_id=job.pk, delivery=_delivery(replays=1))
    job_mark_succeeded(job_id=job.pk, result={"ok": True})
    job.refresh_from_db()
    assert job.state == JobState.SUCCEEDED and job.replays == 1
    assert job.error == "" and job.traceback == "" and job.result == {"ok": True}


# --- succeeded, expired ----------------------------------------------------------------------------------


def test_a_duplicate_success_keeps_the_first_result():
    job = _job(JobState.RUNNING)
    job_mark_succeeded(job_id=job.pk, result={"n": 1})
    job_mark_succeeded(job_id=job.pk, result={"n": 2})
    job.refresh_from_db()
    assert job.state == JobState.SUCCEEDED and job.result == {"n": 1}
    assert [e.detail for e in job.events.all()] == ["succeeded", "duplicate success"]


def test_an_expired_job_is_recorded_in_its_history():
    job = _job(JobState.QUEUED)
    job_mark_expired(job_id=job.pk, detail="its expires had passed")
    job.refresh_from_db()
    assert job.state == JobState.EXPIRED and _history(job) == [JobState.EXPIRED]


# --- cancelled -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("state", [JobState.PENDING, JobState.QUEUED, JobState.DELAYED, JobState.RETRYING])
def test_a_job_not_started_can_be_cancelled(state):
    # GIVEN a Job not started WHEN it is cancelled
    job = _job(state, next_attempt_at=timezone.now(), next_publish_at=timezone.now())
    cancelled = job_cancel(job_id=job.pk)
    # THEN cancelled and finished, nothing left to publish or retry
    assert cancelled.state == JobState.CANCELLED and cancelled.finished_at is not None
    assert cancelled.next_publish_at is None and cancelled.next_attempt_at is None
    assert cancelled.events.get().detail == f"cancelled while {state}"


@pytest.mark.parametrize(
    "state",
    [JobState.RUNNING, JobState.SUCCEEDED, JobState.FAILED, JobState.DEAD_LETTERED, JobState.EXPIRED, JobState.REFUSED],
)
def test_a_job_started_or_finished_cannot_be_cancelled(state):
    job = _job(state)
    assert job_cancel(job_id=job.pk).state == state
    assert not job.events.exists()


def test_a_cancel_of_no_job_is_none():
    assert job_cancel(job_id=424242) is None


def test_a_worker_does_not_start_a_cancelled_job_and_records_the_discard():
    # GIVEN a queued Job, cancelled
    job = _job(JobState.QUEUED)
    job_cancel(job_id=job.pk)
    # WHEN a worker receives its message
    run = job_mark_started(job_id=job.pk, delivery=_delivery())
    # THEN it must not run it: the Job stays cancelled, unstarted, and the discard is recorded
    assert run is False
    job.refresh_from_db()
    assert job.state == JobState.CANCELLED and job.attempts == 0 and job.started_at is None
    discard = DiscardedMessage.objects.get(task_id=job.task_id)
    assert (discard.reason, discard.task_name, discard.queue) == ("cancelled", "jobs.echo", "t-default")
    assert _history(job) == [JobState.CANCELLED, JobState.CANCELLED]


def test_a_start_that_wins_the_race_makes_the_cancel_refuse():
    # GIVEN a queued Job a worker started WHEN it is cancelled THEN it stays running
    job = _job(JobState.QUEUED)
    job_mark_started(job_id=job.pk, delivery=_delivery())
    assert job_cancel(job_id=job.pk).state == JobState.RUNNING


# --- a run lost with its pool process (recorded by the worker's main process) ---------------------------


def test_a_run_lost_before_the_last_receive_is_only_history():
    # GIVEN a Job running on receive 1 of 2 WHEN its pool process dies
    job = _job(JobState.RUNNING)
    job_mark_run_lost(job_id=job.pk, exc=WorkerLostError("exited prematurely"), delivery=_delivery(receive_count=1))
    # THEN it stays running (SQS delivers it again, and that start says so); the history has the loss
    job.refresh_from_db()
    assert job.state == JobState.RUNNING
    assert "run lost: WorkerLostError: exited prematurely; receive 1 of 2" in job.events.get().detail


def test_a_run_lost_on_the_last_receive_is_dead_lettered():
    job = _job(JobState.RUNNING)
    job_mark_run_lost(job_id=job.pk, exc=WorkerLostError("signal 9"), delivery=_delivery(receive_count=2))
    job.refresh_from_db()
    assert job.state == JobState.DEAD_LETTERED and job.dlq_receive_count == 2
    assert job.error == "WorkerLostError: signal 9"


def test_a_late_lost_run_does_not_regress_a_success():
    # GIVEN a Job a duplicate copy finished WHEN the other copy's pool process is reported lost on receive 2
    job = _job(JobState.SUCCEEDED)
    job_mark_run_lost(job_id=job.pk, exc=WorkerLostError("signal 9"), delivery=_delivery(receive_count=2))
    # THEN it stays succeeded
    assert Job.objects.get(pk=job.pk).state == JobState.SUCCEEDED


# --- cancel racing a publish ------------------------------------------------------------------------------


def test_a_cancel_that_loses_its_race_to_a_late_publish_cancels_the_queued_job(monkeypatch):
    # GIVEN a pending Job whose publish, late past the budget, lands between the cancel's read and its
    # compare-and-set (pending -> queued)
    from api.jobs import services

    job = _job(JobState.PENDING)
    real = services._set_and_record
    calls = []

    def publish_lands_first(*args, **kwargs):
        calls.append(kwargs["detail"])
        if len(calls) == 1:
            record(job.pk, Attempt(published=True))
        return real(*args, **kwargs)

    monkeypatch.setattr(services, "_set_and_record", publish_lands_first)
    # WHEN it is cancelled
    cancelled = job_cancel(job_id=job.pk)
    # THEN it is cancelled all the same (queued has not started either): the cancel looked again
    assert cancelled.state == JobState.CANCELLED
    assert calls == ["cancelled while pending", "cancelled while queued"]
    assert _history(cancelled)[-2:] == [JobState.QUEUED, JobState.CANCELLED]
