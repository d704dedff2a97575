"""Claims on a task id: one run at a time, none after done, take-over once a lease lapses."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from api.jobs.models import Effect
from workers.idempotency import Claim, claim, run_once
from workers.models import ExecutionState, TaskExecution

pytestmark = pytest.mark.django_db(transaction=True)


def _effect(task_id: str):
    return lambda: Effect.objects.create(task_id=task_id, key="k")


def test_first_claim_runs_a_second_is_busy_until_done():
    # GIVEN a task id claimed once
    assert claim("t1", "x", lease_seconds=60)[0] is Claim.RUN
    # WHEN claimed again while the lease holds THEN busy, with the lease left
    outcome, left = claim("t1", "x", lease_seconds=60)
    assert outcome is Claim.BUSY and 50 < left <= 60
    # WHEN it is done THEN a later claim says done
    TaskExecution.objects.filter(task_id="t1").update(state=ExecutionState.DONE)
    assert claim("t1", "x", lease_seconds=60)[0] is Claim.DONE


def test_a_lapsed_lease_is_taken_over():
    # GIVEN a claim whose worker died: its lease has lapsed
    claim("t2", "x", lease_seconds=60)
    TaskExecution.objects.filter(task_id="t2").update(lease_until=timezone.now() - timedelta(seconds=1))
    # WHEN another delivery claims it THEN it runs, and the row counts two runs
    assert claim("t2", "x", lease_seconds=60)[0] is Claim.RUN
    assert TaskExecution.objects.get(task_id="t2").runs == 2


def test_run_once_commits_effect_and_done_together_and_skips_duplicates():
    # GIVEN a task id run once
    run_once("t3", "x", 60, _effect("t3"), on_busy=pytest.fail)
    # WHEN delivered again THEN the call is skipped: one effect, state done
    run_once("t3", "x", 60, pytest.fail, on_busy=pytest.fail)
    assert Effect.objects.filter(task_id="t3").count() == 1
    assert TaskExecution.objects.get(task_id="t3").state == ExecutionState.DONE


def test_a_failed_run_rolls_back_its_effect_and_releases_the_claim():
    # GIVEN a run whose body writes an effect and then fails
    def failing():
        Effect.objects.create(task_id="t4", key="k")
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        run_once("t4", "x", 60, failing, on_busy=pytest.fail)
    # THEN the effect is gone and the claim released
    assert not Effect.objects.filter(task_id="t4").exists()
    assert TaskExecution.objects.get(task_id="t4").state == ExecutionState.RELEASED
    # AND the next delivery runs it at once
    run_once("t4", "x", 60, _effect("t4"), on_busy=pytest.fail)
    assert Effect.objects.filter(task_id="t4").count() == 1


def test_busy_calls_back_with_the_lease_left():
    # GIVEN a run in progress elsewhere
    claim("t5", "x", lease_seconds=30)
    seen = []
    # WHEN a duplicate arrives THEN on_busy gets the seconds left and the body does not run
    run_once("t5", "x", 30, pytest.fail, on_busy=seen.append)
    assert len(seen) == 1 and 20 < seen[0] <= 30
