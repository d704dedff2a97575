"""The lost-worker sweep (api/jobs/lost_workers.py): a Job `running` on a worker whose registry row went stale
goes back to `queued` (or `dead_lettered` on its last receive) with a "worker lost" event, once; a Job started
again elsewhere, or on a worker merely late within its bound, is left alone. The test topology's default
queue has maxReceiveCount 2."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from api.jobs.lost_workers import MISSING_ROW_SECONDS, sweep_lost_workers
from api.jobs.models import Job, JobEvent, JobState
from workers.models import WorkerRegistration

pytestmark = pytest.mark.django_db

BOUND = 51


@pytest.fixture
def now() -> datetime:
    return datetime.now(UTC)


def register(now: datetime, nodename: str, *, polled_ago: float, started_ago: float = 1800, stopped=False, **kw):
    return WorkerRegistration.objects.create(
        worker_id=kw.pop("worker_id", nodename.replace("@", "-")),
        nodename=nodename,
        host="box",
        pid=kw.pop("pid", 7),
        queues=["default"],
        concurrency=2,
        prefetch=2,
        version="test",
        started_at=now - timedelta(seconds=started_ago),
        last_poll_at=now - timedelta(seconds=polled_ago),
        renewed_at=now - timedelta(seconds=polled_ago),
        lost_after_seconds=BOUND,
        running=kw.pop("running", []),
        counts={},
        stopped_at=now if stopped else None,
    )


def running_job(now: datetime, nodename: str, *, started_ago: float = 120, receive_count: int = 1, attempts=1) -> Job:
    return Job.objects.create(
        kind="sleep",
        payload={"seconds": 600},
        queue="default",
        state=JobState.RUNNING,
        worker_hostname=nodename,
        worker_pid=4242,
        attempts=attempts,
        receive_count=receive_count,
        started_at=now - timedelta(seconds=started_ago),
    )


def lost_events(job: Job) -> list[JobEvent]:
    return list(JobEvent.objects.filter(job=job, detail__startswith="worker lost"))


def test_a_job_on_a_lost_worker_goes_back_to_queued_with_a_worker_lost_event(now):
    # GIVEN a worker whose row was last renewed 60 s ago (bound 51 s) while it ran a Job
    register(now, "worker@a", polled_ago=60, pid=31)
    job = running_job(now, "worker@a")
    # WHEN the sweep runs
    swept = sweep_lost_workers(now=now)
    # THEN the Job is queued again, its history saying which worker was lost, when, and what SQS does next
    job.refresh_from_db()
    assert job.state == JobState.QUEUED
    assert swept.requeued == [job.pk] and swept.lost_workers == 1
    [event] = lost_events(job)
    assert event.state == JobState.QUEUED
    assert "worker@a pid 31" in event.detail and "last seen" in event.detail
    assert "receive 1 of 2" in event.detail and "redelivered after its visibility timeout" in event.detail
    assert event.worker == "worker@a:4242"


def test_on_its_last_receive_the_job_is_dead_lettered(now):
    # GIVEN the lost worker ran the Job's second receive, the last the default queue allows (maxReceiveCount 2)
    register(now, "worker@a", polled_ago=60)
    job = running_job(now, "worker@a", receive_count=2)
    # WHEN the sweep runs
    swept = sweep_lost_workers(now=now)
    # THEN SQS moves the message to the DLQ, and the Job says so
    job.refresh_from_db()
    assert job.state == JobState.DEAD_LETTERED
    assert (job.dlq_receive_count, swept.dead_lettered) == (2, [job.pk])
    assert job.dead_lettered_at is not None and job.error.startswith("WorkerLost")
    [event] = lost_events(job)
    assert "SQS moves it to the DLQ" in event.detail


def test_running_twice_records_the_loss_once(now):
    register(now, "worker@a", polled_ago=60)
    job = running_job(now, "worker@a")
    sweep_lost_workers(now=now)
    # WHEN the sweep runs again (the row is still lost)
    again = sweep_lost_workers(now=now + timedelta(seconds=5))
    # THEN nothing more happens
    assert again.requeued == [] and again.checked == 0
    assert len(lost_events(job)) == 1


def test_a_job_already_restarted_on_another_worker_is_left_alone(now):
    # GIVEN the lost worker's Job was delivered again and started by a live worker
    register(now, "worker@a", polled_ago=60)
    register(now, "worker@b", polled_ago=2)
    job = running_job(now, "worker@b", started_ago=3, attempts=2, receive_count=2)
    # WHEN the sweep runs THEN that run is untouched
    assert sweep_lost_workers(now=now).checked == 0
    job.refresh_from_db()
    assert (job.state, job.worker_hostname, lost_events(job)) == (JobState.RUNNING, "worker@b", [])


def test_a_restart_between_the_sweeps_read_and_its_write_wins(now):
    # GIVEN the sweep read the Job as running on the lost worker, attempt 1
    from api.jobs.services import job_mark_worker_lost

    register(now, "worker@a", polled_ago=60)
    job = running_job(now, "worker@a")
    seen = Job.objects.get(pk=job.pk)
    # AND another worker started it meanwhile (attempt 2)
    Job.objects.filter(pk=job.pk).update(worker_hostname="worker@b", attempts=2, started_at=now)
    # WHEN the sweep writes what it decided THEN the compare-and-set refuses it
    state = job_mark_worker_lost(
        job_id=job.pk, attempts=seen.attempts, worker_hostname="worker@a", started_at=seen.started_at, lost="x"
    )
    job.refresh_from_db()
    assert state is None and (job.state, job.worker_hostname) == (JobState.RUNNING, "worker@b")
    assert lost_events(job) == []


def test_a_worker_merely_late_within_its_bound_is_left_alone(now):
    # GIVEN a row last renewed 40 s ago: late, but within its 51 s bound
    register(now, "worker@a", polled_ago=40)
    job = running_job(now, "worker@a")
    # WHEN the sweep runs THEN the Job stays running
    assert sweep_lost_workers(now=now).checked == 0
    job.refresh_from_db()
    assert job.state == JobState.RUNNING and lost_events(job) == []


def test_a_live_worker_restarted_under_the_same_name_keeps_its_jobs(now):
    # GIVEN the old worker@a is lost, and a new worker@a (same node name, a new row) started 30 s ago
    register(now, "worker@a", polled_ago=60, worker_id="old")
    register(now, "worker@a", polled_ago=1, started_ago=30, worker_id="new")
    older = running_job(now, "worker@a", started_ago=120)  # ran on the old one
    newer = running_job(now, "worker@a", started_ago=10)  # runs on the new one
    # WHEN the sweep runs THEN only the old worker's Job is released
    assert sweep_lost_workers(now=now).requeued == [older.pk]
    newer.refresh_from_db()
    assert newer.state == JobState.RUNNING


def test_a_stopped_worker_is_not_lost(now):
    register(now, "worker@a", polled_ago=600, stopped=True)
    job = running_job(now, "worker@a")
    assert sweep_lost_workers(now=now).requeued == []
    job.refresh_from_db()
    assert job.state == JobState.RUNNING


def test_a_worker_without_any_row_is_lost_past_the_missing_bound(now):
    # GIVEN Jobs running on a node name no registry row names (it died before its first write)
    old = running_job(now, "worker@gone", started_ago=MISSING_ROW_SECONDS + 10)
    recent = running_job(now, "worker@gone", started_ago=MISSING_ROW_SECONDS - 60)
    # WHEN the sweep runs THEN only the one started past the bound is released
    assert sweep_lost_workers(now=now).requeued == [old.pk]
    assert "no registry row" in lost_events(old)[0].detail
    recent.refresh_from_db()
    assert recent.state == JobState.RUNNING


def test_the_work_per_sweep_is_bounded(now):
    # GIVEN five Jobs on a lost worker
    register(now, "worker@a", polled_ago=60)
    jobs = [running_job(now, "worker@a", started_ago=300 - n) for n in range(5)]
    # WHEN sweeps run with a limit of 2 THEN each takes the 2 oldest left, and three sweeps release all
    assert sweep_lost_workers(now=now, limit=2).requeued == [jobs[0].pk, jobs[1].pk]
    assert sweep_lost_workers(now=now, limit=2).requeued == [jobs[2].pk, jobs[3].pk]
    assert sweep_lost_workers(now=now, limit=2).requeued == [jobs[4].pk]


def test_a_requeued_job_starts_again_on_its_redelivery(now):
    # GIVEN a Job released by the sweep
    from api.jobs.services import job_mark_started
    from workers.delivery import Delivery

    register(now, "worker@a", polled_ago=60)
    job = running_job(now, "worker@a")
    sweep_lost_workers(now=now)
    # WHEN SQS delivers it again to another worker THEN it runs there, attempt 2
    job_mark_started(
        job_id=job.pk,
        delivery=Delivery(hostname="worker@b", pid=9, task_name="jobs.sleep", queue="t-default", receive_count=2),
    )
    job.refresh_from_db()
    assert (job.state, job.attempts, job.worker_hostname) == (JobState.RUNNING, 2, "worker@b")


def test_the_relay_loop_runs_the_lost_sweep_at_most_every_interval():
    # GIVEN a relay loop with a lost-worker sweep every 10 s (on a clock the test moves), each releasing a Job
    # (the loop's tick closes the test's connection, so this sweep stands in for the database one)
    from api.jobs.lost_workers import LostSweep
    from api.jobs.outbox import Sweep
    from api.jobs.outbox_config import RelayConfig
    from api.jobs.relay_loop import RelayLoop

    calls = []
    clock = [0.0]

    def lost_sweep():
        calls.append(clock[0])
        return LostSweep(lost_workers=1, checked=1, requeued=[len(calls)])

    loop = RelayLoop(
        sweep=lambda: Sweep(),
        config=RelayConfig(sweep_seconds=1, sweep_max_seconds=8),
        clock=lambda: clock[0],
        lost_sweep=lost_sweep,
        lost_every=10,
    )
    # WHEN it sweeps once a second for 25 s
    for second in range(25):
        clock[0] = float(second)
        loop.tick()
    # THEN the lost sweep ran at 0, 10 and 20 s
    assert calls == [0.0, 10.0, 20.0]
    assert loop.released == 3


def test_a_failing_lost_sweep_does_not_stop_the_relay(now, caplog):
    from api.jobs.outbox import Sweep
    from api.jobs.outbox_config import RelayConfig
    from api.jobs.relay_loop import RelayLoop

    def broken():
        raise KeyError("surprise")

    loop = RelayLoop(sweep=lambda: Sweep(), config=RelayConfig(sweep_seconds=1, sweep_max_seconds=8), lost_sweep=broken)
    # WHEN the lost sweep raises THEN the tick returns its normal delay and the error is logged
    assert loop.tick() == 1
    assert "lost-worker sweep failed" in caplog.text


def test_manage_workers_sweep_releases_the_jobs_of_lost_workers(now):
    import io

    from django.core.management import call_command

    register(now, "worker@a", polled_ago=60)
    job = running_job(now, "worker@a")
    out, err = io.StringIO(), io.StringIO()
    call_command("workers", "--sweep", stdout=out, stderr=err)
    job.refresh_from_db()
    assert job.state == JobState.QUEUED
    assert f"back to queued [{job.pk}]" in err.getvalue()
    assert "LOST" in out.getvalue()


def test_the_outbox_relay_command_releases_the_jobs_of_lost_workers(transactional_db, tmp_path, settings):
    # GIVEN a Job running on a lost worker, and the relay command (as bin/start-outbox-relay runs it)
    from django.core.management import call_command

    now = datetime.now(UTC)
    settings.OUTBOX_RELAY_LIVENESS_FILE = str(tmp_path / "liveness")
    register(now, "worker@a", polled_ago=60)
    job = running_job(now, "worker@a")
    # WHEN it runs for a moment (one sweep)
    call_command("outbox_relay", "--max-seconds", "0.5")
    # THEN its first sweep released the Job
    job.refresh_from_db()
    assert job.state == JobState.QUEUED and len(lost_events(job)) == 1


def test_jobs_the_sweep_must_skip_do_not_fill_its_limit(now):
    # GIVEN worker@b lost 549 s ago, with 3 Jobs on its name started after that (not by it: left alone), older
    # than the Job of worker@a, lost a moment ago
    register(now, "worker@b", polled_ago=600)
    register(now, "worker@a", polled_ago=60)
    not_by_b = [running_job(now, "worker@b", started_ago=500 - n) for n in range(3)]
    lost_job = running_job(now, "worker@a", started_ago=100)
    # WHEN a sweep may look at 1 Job
    swept = sweep_lost_workers(now=now, limit=1)
    # THEN it takes worker@a's Job: the skipped ones never count against its limit
    assert swept.requeued == [lost_job.pk]
    assert sweep_lost_workers(now=now, limit=1).checked == 0
    assert {Job.objects.get(pk=j.pk).state for j in not_by_b} == {JobState.RUNNING}


def test_a_sweep_with_nothing_to_release_costs_two_queries(now, django_assert_num_queries):
    # GIVEN a fleet of 20 live workers running a Job each, and 5 lost workers whose Jobs were already released
    for n in range(20):
        register(now, f"worker@live{n}", polled_ago=2)
        running_job(now, f"worker@live{n}", started_ago=60)
    for n in range(5):
        register(now, f"worker@gone{n}", polled_ago=120)
    # WHEN the sweep runs THEN it reads the registry once and the running Jobs once
    with django_assert_num_queries(2):
        assert sweep_lost_workers(now=now).checked == 0


def test_manage_workers_sweep_exits_non_zero_when_the_database_refuses(db, monkeypatch):
    from django.core.management import CommandError, call_command
    from django.db import OperationalError

    def refused(**_kwargs):
        raise OperationalError("connection refused")

    monkeypatch.setattr("api.ops.management.commands.workers.sweep_lost_workers", refused)
    with pytest.raises(CommandError, match="cannot sweep for lost workers: OperationalError") as raised:
        call_command("workers", "--sweep")
    assert raised.value.returncode == 1
