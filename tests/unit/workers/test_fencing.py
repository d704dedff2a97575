"""Fencing tokens under concurrency, and the Celery behaviour LeaseLost relies on."""

from __future__ import annotations

import pickle
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from unittest import mock

import pytest
from celery import Celery
from django.db import connection, connections
from django.utils import timezone

from api.jobs.models import Effect
from devstack import processes
from workers.fencing import Fence, LeaseLost, fenced_commit, fenced_run
from workers.idempotency import Claim, claim
from workers.models import ExecutionState, TaskExecution

pytestmark = pytest.mark.django_db(transaction=True)


def _lapse(task_id: str) -> None:
    TaskExecution.objects.filter(task_id=task_id).update(lease_until=timezone.now() - timedelta(seconds=1))


def _in_thread(fn):
    """Run fn with its own database connection, closed afterwards (Django connections are per thread)."""

    def run(*args):
        try:
            return fn(*args)
        finally:
            connections.close_all()

    return run


def test_of_several_runs_taking_over_a_lapsed_claim_at_once_exactly_one_wins():
    # GIVEN a claim whose lease lapsed
    claim("c1", "x", lease_seconds=60)
    _lapse("c1")
    start = threading.Barrier(4)

    def take_over(_):
        start.wait()
        return claim("c1", "x", lease_seconds=60)

    # WHEN four deliveries try to take it over at the same moment
    with ThreadPoolExecutor(4) as pool:
        outcomes = [result[0] for result in pool.map(_in_thread(take_over), range(4))]

    # THEN one runs (generation 2), the others see it busy
    assert sorted(o.value for o in outcomes) == ["busy", "busy", "busy", "run"]
    assert TaskExecution.objects.get(task_id="c1").runs == 2


def test_a_takeover_waits_for_an_open_fenced_commit_and_then_finds_it_done():
    if connection.vendor != "postgresql":
        pytest.skip("row locks: PostgreSQL (SQLite serialises every write transaction anyway)")
    # GIVEN a run inside its fenced commit (done marked, not yet committed), its lease already lapsed
    fence = claim("c2", "x", lease_seconds=60)[2]
    _lapse("c2")
    inside, finish = threading.Event(), threading.Event()

    def commit():
        with fenced_run(fence), fenced_commit():
            Effect.objects.create(task_id="c2", key="k")
            inside.set()
            assert finish.wait(30)

    with ThreadPoolExecutor(2) as pool:
        committing = pool.submit(_in_thread(commit))
        assert inside.wait(30)
        # WHEN another delivery tries to take the claim over
        taking_over = pool.submit(_in_thread(lambda: claim("c2", "x", lease_seconds=60)))
        # THEN it waits on the row lock the fenced commit holds
        processes.wait_for(
            lambda: _waiting_on_a_lock(), timeout=10, interval=0.05, what="the takeover to wait on the row lock"
        )
        assert not taking_over.done()
        # AND once the commit ends, it finds the task done: no second run
        finish.set()
        committing.result(timeout=30)
        assert taking_over.result(timeout=30)[0] is Claim.DONE
    assert TaskExecution.objects.get(task_id="c2").runs == 1
    assert Effect.objects.filter(task_id="c2").count() == 1


def _waiting_on_a_lock() -> bool:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'"
        )
        return cursor.fetchone()[0] > 0


def test_celerys_autoretry_never_retries_lease_lost():
    # Contract (celery/app/autoretry.py, 5.7.0): an Ignore is re-raised, never passed to task.retry(). If an
    # upgrade changed it, a run whose claim was taken over would publish a retry instead of stopping.
    # GIVEN a task that autoretries any exception, whose body finds its claim taken over
    app = Celery(set_as_current=False)
    fence = Fence("c3", "x", "host:1", generation=1)

    @app.task(bind=True, autoretry_for=(Exception,), max_retries=3, shared=False)
    def lost(self):
        raise LeaseLost(fence, "host:2", 2, ExecutionState.DONE)

    task = lost._get_current_object()
    # WHEN it runs THEN LeaseLost comes out and retry() was never called
    with mock.patch.object(task, "retry", side_effect=AssertionError("retried")) as retry, pytest.raises(LeaseLost):
        task.run()
    retry.assert_not_called()


def test_lease_lost_survives_the_trip_from_the_pool_process():
    # GIVEN a LeaseLost, as a pool process raises it (Celery pickles exceptions to the main process)
    lost = LeaseLost(Fence("c4", "x", "host:1", generation=1), "host:2", 2, ExecutionState.DONE)
    # WHEN pickled and loaded THEN it is the same, message and all
    copy = pickle.loads(pickle.dumps(lost))  # noqa: S301 (our own bytes)
    assert (copy.fence, copy.current_owner, copy.current_generation, str(copy)) == (lost.fence, "host:2", 2, str(lost))
