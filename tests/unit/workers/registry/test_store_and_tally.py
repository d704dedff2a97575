"""The registry row (one UPSERT per renewal, pruning), the 15-minute tally, the snapshot of running tasks, and
the Request class that feeds the tally (a contract with Celery's create_request_cls)."""

from __future__ import annotations

import pickle
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from unittest import mock

import pytest
from billiard.einfo import ExceptionInfo
from celery.contrib.testing.mocks import TaskMessage
from celery.exceptions import Retry
from celery.worker.request import create_request_cls
from django.db import connection
from django.test.utils import CaptureQueriesContext

from workers.models import WorkerRegistration
from workers.registry import store
from workers.registry.snapshot import WorkerIdentity, running_tasks, take_snapshot
from workers.registry.tally import TaskTally
from workers.registry.writer import stopped

IDENTITY = WorkerIdentity(nodename="worker@box", queues=("default", "high_priority"), concurrency=2, prefetch=4)


class Clock:
    def __init__(self, now: float = 10_000.0):
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_the_tally_counts_the_last_15_minutes_only():
    # GIVEN a task done at t, one failed 10 min later, one done and one retried 16 min after the first
    clock = Clock()
    tally = TaskTally(clock=clock)
    tally.add("done")
    clock.now += 600
    tally.add("failed")
    clock.now += 360
    tally.add("done")
    tally.add("retried")
    # THEN the first one has left the window
    assert tally.counts() == {"done": 1, "failed": 1, "retried": 1, "window_minutes": 15}
    # AND 15 more minutes later nothing is left, and the buckets are gone with it
    clock.now += 901
    assert tally.counts()["done"] == 0
    assert len(tally._buckets) == 0


def test_a_busy_worker_keeps_one_bucket_per_second_not_one_per_task():
    clock = Clock()
    tally = TaskTally(clock=clock)
    for n in range(10_000):
        clock.now = 10_000.0 + n / 100  # 100 tasks a second for 100 s
        tally.add("done")
    assert tally.counts()["done"] == 10_000
    assert len(tally._buckets) == 100


def test_the_snapshot_lists_accepted_tasks_oldest_first_with_their_start():
    # GIVEN Celery's active requests: two accepted by a pool process, one not yet (no time_start)
    requests = [
        SimpleNamespace(id="b", name="jobs.sleep", time_start=1_000_010.0),
        SimpleNamespace(id="a", name="jobs.echo", time_start=1_000_000.0),
        SimpleNamespace(id="c", name="jobs.echo", time_start=None),
    ]
    tally = TaskTally()
    tally.add("done")
    # WHEN a snapshot is taken at a liveness tick
    snap = take_snapshot(IDENTITY, tally, tick=1_000_020.0, requests=requests)
    # THEN it holds the two running tasks, oldest first, the tick as the last poll, and the counts
    assert [t["task_id"] for t in snap.running] == ["a", "b"]
    assert snap.running[0] == {"task_id": "a", "name": "jobs.echo", "since": "1970-01-12T13:46:40+00:00"}
    assert snap.last_poll_at == datetime.fromtimestamp(1_000_020.0, UTC)
    assert snap.counts["done"] == 1


class FakeRequest:
    def __init__(self, task_id: str, time_start: float | None):
        self.id, self.name, self.time_start = task_id, "jobs.echo", time_start


def test_running_tasks_read_celerys_worker_state_from_another_thread():
    """Contract (Celery 5.7): a Request has id, name and time_start (None until a pool process accepts it), and
    the worker state keeps accepted requests in active_requests, a WeakSet whose `data` is a set of weakrefs
    (the writer thread copies it in one call). A rename fails here, not on the page."""
    from celery.worker import state
    from celery.worker.request import Request

    from workers.registry.snapshot import active_requests

    assert Request.time_start is None and hasattr(Request, "on_accepted")
    accepted, waiting = FakeRequest("a", 1_000_000.0), FakeRequest("w", None)
    state.active_requests.add(accepted)
    state.active_requests.add(waiting)
    try:
        assert isinstance(state.active_requests.data, set)
        assert {r.id for r in active_requests()} >= {"a", "w"}
        assert [t["task_id"] for t in running_tasks(active_requests()) if t["task_id"] in "aw"] == ["a"]
    finally:
        state.active_requests.discard(accepted)
        state.active_requests.discard(waiting)


def test_each_renewal_is_one_upsert_and_a_restart_is_a_new_row(db):
    # GIVEN a worker's first snapshot
    snap = take_snapshot(IDENTITY, TaskTally(), tick=1_000_000.0, requests=[])
    # WHEN it is stored, then renewed
    with CaptureQueriesContext(connection) as first:
        store.store_snapshot(snap, renewals=1, lost_after_seconds=51)
    renewed = take_snapshot(
        IDENTITY, TaskTally(), tick=1_000_015.0, requests=[SimpleNamespace(id="t", name="jobs.sleep", time_start=1.0)]
    )
    with CaptureQueriesContext(connection) as second:
        store.store_snapshot(renewed, renewals=2, lost_after_seconds=51)
    # THEN each write was one statement, an INSERT ... ON CONFLICT, and one row holds the newest state
    assert len(first) == 1 and len(second) == 1
    assert "ON CONFLICT" in second[0]["sql"].upper()
    row = WorkerRegistration.objects.get()
    assert (row.renewals, row.running[0]["task_id"], row.queues) == (2, "t", ["default", "high_priority"])
    assert (row.concurrency, row.prefetch, row.lost_after_seconds) == (2, 4, 51)
    assert "celery" in row.version
    # WHEN the same host and pid start a new worker (a container restart) THEN it is a row of its own
    store.store_snapshot(
        take_snapshot(
            WorkerIdentity(nodename="worker@box", queues=("default",), concurrency=2, prefetch=2),
            TaskTally(),
            tick=1.0,
            requests=[],
        ),
        renewals=1,
        lost_after_seconds=51,
    )
    assert WorkerRegistration.objects.count() == 2


def test_a_clean_stop_marks_the_row_stopped(db):
    snap = take_snapshot(IDENTITY, TaskTally(), tick=1_000_000.0, requests=[])
    store.store_snapshot(stopped(snap), renewals=3, lost_after_seconds=51)
    assert WorkerRegistration.objects.get().stopped_at is not None


def test_rows_not_renewed_for_the_keep_bound_are_pruned(db):
    # GIVEN one row renewed now and one 25 h ago
    store.store_snapshot(take_snapshot(IDENTITY, TaskTally(), tick=1.0, requests=[]), renewals=1, lost_after_seconds=51)
    old = WorkerIdentity(nodename="worker@gone", queues=("default",), concurrency=1, prefetch=1)
    store.store_snapshot(take_snapshot(old, TaskTally(), tick=1.0, requests=[]), renewals=1, lost_after_seconds=51)
    WorkerRegistration.objects.filter(nodename="worker@gone").update(renewed_at=datetime.now(UTC) - timedelta(hours=25))
    # WHEN pruned with a 24 h bound THEN only the old one goes
    assert store.prune_rows(keep=timedelta(hours=24)) == 1
    assert list(WorkerRegistration.objects.values_list("nodename", flat=True)) == ["worker@box"]


def _einfo(exc: BaseException) -> ExceptionInfo:
    try:
        raise exc
    except BaseException:
        return pickle.loads(pickle.dumps(ExceptionInfo()))  # noqa: S301  (our own bytes, as billiard does)


def test_outcomes_reach_the_tally_through_the_class_celerys_strategy_builds(monkeypatch):
    """Contract (Celery 5.7): the strategy builds its Request with create_request_cls(Task.Request, ...), which
    replaces on_success; a pool child's outcome arrives in the main process as on_success((failed, retval,
    runtime)), and a failed run goes on to on_failure (a Retry too)."""
    from celery.utils.imports import symbol_by_name

    import api.jobs.tasks  # noqa: F401  (registers the tasks, as the worker's autodiscovery does)
    import api.newsletter.tasks  # noqa: F401
    from workers.celery_app import app

    tally = TaskTally()
    monkeypatch.setattr("workers.registry.request.task_tally", tally)
    task = app.tasks["jobs.echo"]
    monkeypatch.setattr(task.backend, "mark_as_failure", lambda *a, **k: None)
    monkeypatch.setattr(task.backend, "mark_as_retry", lambda *a, **k: None, raising=False)
    Req = create_request_cls(symbol_by_name(task.Request), task, mock.Mock(), "worker@test", None, app=app)

    def request(task_id: str):
        return Req(TaskMessage("jobs.echo", id=task_id), app=app, task=task, on_reject=mock.Mock(), on_ack=mock.Mock())

    # WHEN one task succeeds, one fails and one asks for a retry
    request("ok").on_success((False, {"message": "hi"}, 0.01))
    request("bad").on_success((True, _einfo(ValueError("boom")), 0.01))
    request("again").on_success((True, _einfo(Retry("later")), 0.01))
    # THEN each is counted once, under its outcome
    assert tally.counts() == {"done": 1, "failed": 1, "retried": 1, "window_minutes": 15}


@pytest.mark.parametrize("outcome", ["done", "failed", "retried"])
def test_every_outcome_has_a_column(outcome):
    tally = TaskTally()
    tally.add(outcome)
    assert tally.counts()[outcome] == 1


def test_shutting_down_is_read_from_celerys_state_flags(monkeypatch):
    """Contract (Celery 5.7): the shutdown handlers set state.should_stop (warm) or state.should_terminate
    (cold) to the exit code, 0 included; both start as None."""
    from celery.worker import state

    from workers.registry.shutdown import worker_is_shutting_down

    assert state.should_stop is None and state.should_terminate is None
    assert worker_is_shutting_down() is False
    monkeypatch.setattr(state, "should_terminate", 0)  # a cold shutdown with exit code 0
    assert worker_is_shutting_down() is True
