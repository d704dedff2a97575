"""The outbox relay: claims by compare-and-set, one publish per attempt, backoff, cancel, the time budget.

Run on PostgreSQL (DATABASE_URL) for the concurrency test to mean what it says; SQLite serialises writers.
"""

from __future__ import annotations

import threading
from collections import Counter
from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from api.jobs import outbox
from api.jobs.models import Job, JobState
from api.jobs.publisher import publish_within_budget
from api.jobs.services import job_cancel
from workers.publish_guards import PayloadTooLarge


def _due_jobs(n: int) -> list[Job]:
    past = timezone.now() - timedelta(seconds=1)
    return [
        Job.objects.create(
            kind="echo", payload={"message": f"m{i}"}, queue="default", publish_attempts=1, next_publish_at=past
        )
        for i in range(n)
    ]


class CountingPublisher:
    """A fake publish that counts calls per task id (and may fail or hang)."""

    def __init__(self, *, error: Exception | None = None, hold: threading.Event | None = None):
        self.calls: Counter[str] = Counter()
        self.error = error
        self.hold = hold
        self._lock = threading.Lock()

    def __call__(self, job: Job) -> None:
        with self._lock:
            self.calls[str(job.task_id)] += 1
        if self.hold is not None:
            self.hold.wait(30)
        if self.error is not None:
            raise self.error


def test_two_sweeps_at_once_publish_each_job_once(transactional_db):
    # GIVEN 30 due Jobs and two relays sweeping at the same moment, each on its own database connection
    jobs = _due_jobs(30)
    publish = CountingPublisher()
    start = threading.Barrier(2)
    results = []

    def relay() -> None:
        try:
            start.wait()
            results.append(outbox.sweep_once(publish=publish))
        finally:
            connection.close()

    threads = [threading.Thread(target=relay) for _ in range(2)]
    # WHEN both sweep
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)

    # THEN every Job was published exactly once, and the two claimed 30 between them
    assert publish.calls == Counter({str(job.task_id): 1 for job in jobs})
    assert sum(r.claimed for r in results) == 30
    assert sum(r.published for r in results) == 30
    assert set(Job.objects.values_list("state", flat=True)) == {JobState.QUEUED}
    assert Job.objects.filter(published_at__isnull=True).count() == 0


def test_a_claim_on_a_row_someone_else_moved_fails(db):
    # GIVEN a due Job, seen by a relay
    [job] = _due_jobs(1)
    seen = job.next_publish_at
    now = timezone.now()
    # WHEN one relay claims it, and another claims it with the same stale view
    first = outbox.claim(job.pk, seen_next_publish_at=seen, attempts=1, now=now)
    second = outbox.claim(job.pk, seen_next_publish_at=seen, attempts=1, now=now)
    # THEN only the first claim holds, and the attempt is counted once
    assert (first, second) == (True, False)
    job.refresh_from_db()
    assert job.publish_attempts == 2
    assert job.next_publish_at > now


def test_a_broker_failure_stops_the_sweep_and_backs_the_job_off(db, settings):
    # GIVEN five due Jobs and SQS refusing connections
    settings.OUTBOX_RELAY = type(settings.OUTBOX_RELAY)(retry_seconds=20, retry_max_seconds=300)
    _due_jobs(5)
    publish = CountingPublisher(error=ConnectionRefusedError("connection refused"))
    # WHEN the relay sweeps
    before = timezone.now()
    result = outbox.sweep_once(publish=publish)
    # THEN one attempt was made, not five: it stopped at the first failure
    assert sum(publish.calls.values()) == 1
    assert result.broker_error and "connection refused" in result.broker_error
    # AND that Job shows the attempt and the error, and waits its backoff (attempt 2: 2 x 20 s)
    job = Job.objects.get(pk=result.failed_ids[0])
    assert job.state == JobState.PENDING
    assert job.publish_attempts == 2
    assert "ConnectionRefusedError: connection refused" in job.publish_error
    assert job.next_publish_at >= before + timedelta(seconds=40)
    # AND a sweep right after finds only the four others due
    assert len(outbox.due_jobs(timezone.now(), 100)) == 4


def test_a_failure_about_one_job_does_not_stop_the_sweep(db):
    # GIVEN three due Jobs whose publish fails for a reason of its own (not the broker)
    _due_jobs(3)
    publish = CountingPublisher(error=KeyError("kind 'retired' is no longer known"))
    # WHEN the relay sweeps
    result = outbox.sweep_once(publish=publish)
    # THEN each was tried, each shows its error and waits its backoff, and the sweep reports no broker failure
    assert sum(publish.calls.values()) == 3
    assert result.broker_error is None
    assert len(result.failed_ids) == 3
    assert all("KeyError" in e for e in Job.objects.values_list("publish_error", flat=True))
    assert outbox.due_jobs(timezone.now(), 100) == []


def test_a_refused_publish_is_terminal(db):
    # GIVEN a due Job whose message a publish guard refuses
    [job] = _due_jobs(1)
    publish = CountingPublisher(error=PayloadTooLarge("too large for queue 'default'"))
    # WHEN the relay sweeps, twice
    outbox.sweep_once(publish=publish)
    outbox.sweep_once(publish=publish)
    # THEN it is refused once, and never tried again
    job.refresh_from_db()
    assert job.state == JobState.REFUSED
    assert "too large" in job.error
    assert sum(publish.calls.values()) == 1


def test_a_cancelled_job_is_never_published(db):
    # GIVEN a due Job, cancelled
    [job] = _due_jobs(1)
    cancelled = job_cancel(job_id=job.pk)
    assert cancelled.state == JobState.CANCELLED
    publish = CountingPublisher()
    # WHEN the relay sweeps
    outbox.sweep_once(publish=publish)
    # THEN nothing is published
    assert not publish.calls


def test_a_cancel_after_the_claim_wins_over_the_publish_record(db):
    # GIVEN a Job claimed by a relay, then cancelled before the relay records its publish
    [job] = _due_jobs(1)
    assert outbox.claim(job.pk, seen_next_publish_at=job.next_publish_at, attempts=1, now=timezone.now())
    job_cancel(job_id=job.pk)
    # WHEN the relay records a successful publish
    outbox.record(job.pk, outbox.Attempt(published=True))
    # THEN the Job stays cancelled (the record only changes a pending Job)
    job.refresh_from_db()
    assert job.state == JobState.CANCELLED


def test_a_publish_past_the_budget_returns_and_its_late_outcome_is_recorded(transactional_db):
    # GIVEN a Job and a publish that hangs until released
    [job] = _due_jobs(1)
    hold = threading.Event()
    publish = CountingPublisher(hold=hold)
    late = threading.Event()

    def on_late(attempt) -> None:
        outbox.record(job.pk, attempt)
        late.set()

    # WHEN it is published with a 0.3 s budget
    attempt = publish_within_budget(job, publish=publish, budget=0.3, on_late=on_late)
    # THEN the caller gets a timed-out attempt, and the Job is still pending
    assert attempt.timed_out
    assert "within the 0.3 s publish budget" in attempt.error
    assert Job.objects.get(pk=job.pk).state == JobState.PENDING
    # AND when the publish ends after all, its success is recorded from its own thread
    hold.set()
    assert late.wait(10)
    assert Job.objects.get(pk=job.pk).state == JobState.QUEUED


@pytest.mark.parametrize("state", [JobState.RUNNING, JobState.SUCCEEDED, JobState.REFUSED])
def test_a_job_started_or_finished_cannot_be_cancelled(db, state):
    # GIVEN a Job past pending, started or finished (tests/unit/api/jobs/test_job_states.py: every state)
    [job] = _due_jobs(1)
    Job.objects.filter(pk=job.pk).update(state=state)
    # WHEN it is cancelled THEN it keeps its state
    assert job_cancel(job_id=job.pk).state == state


def test_after_a_broker_failure_requests_skip_the_fast_path_for_one_budget(db, settings):
    # GIVEN a process whose fast path just failed on the broker, with a clock the test moves
    now = [100.0]
    pause = outbox.FastPathPause(clock=lambda: now[0])
    failing = CountingPublisher(error=ConnectionRefusedError("connection refused"))
    first, second, third = _due_jobs(3)
    outbox.publish_now(first, publish=failing, pause=pause)
    # WHEN another request publishes within the budget, and a third after it
    now[0] += settings.PUBLISH_BUDGET.seconds / 2
    skipped = outbox.publish_now(second, publish=failing, pause=pause)
    now[0] += settings.PUBLISH_BUDGET.seconds
    working = CountingPublisher()
    tried = outbox.publish_now(third, publish=working, pause=pause)
    # THEN the second never waited on SQS: pending, its error says why, left to the relay
    assert sum(failing.calls.values()) == 1
    assert "not tried: SQS failed a publish 2.5 s ago" in skipped.error
    assert Job.objects.get(pk=second.pk).state == JobState.PENDING
    # AND the third tried again, and published
    assert tried.published
    assert Job.objects.get(pk=third.pk).state == JobState.QUEUED
