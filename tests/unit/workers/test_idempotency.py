"""Claims on a task id: one run at a time, none after done, take-over once a lease lapses."""

from __future__ import annotations

from datetime import timedelta

import pytest
from celery.exceptions import Reject
from django.db import connection
from django.utils import timezone

from api.jobs.models import Effect
from workers.fencing import Fence, LeaseLost, mark_done, release
from workers.idempotency import Claim, claim, fenced_commit, run_once
from workers.models import ExecutionState, TaskExecution

pytestmark = pytest.mark.django_db(transaction=True)


def _effect(task_id: str):
    def body():
        with fenced_commit():
            Effect.objects.create(task_id=task_id, key="k")

    return body


def test_first_claim_runs_a_second_is_busy_until_done():
    # GIVEN a task id claimed once
    assert claim("t1", "x", lease_seconds=60)[0] is Claim.RUN
    # WHEN claimed again while the lease holds THEN busy, with the lease left
    outcome, left, _fence = claim("t1", "x", lease_seconds=60)
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
    # GIVEN a run whose body writes an effect in its fenced commit and then fails there
    def failing():
        with fenced_commit():
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


# --- Fencing: a claim's token is (owner, generation); DONE and RELEASED apply only with the current one ---


def _take_over(task_id: str) -> Fence:
    """Let the current claim's lease lapse and claim the task id again (another run takes it over)."""
    TaskExecution.objects.filter(task_id=task_id).update(lease_until=timezone.now() - timedelta(seconds=1))
    outcome, _left, fence = claim(task_id, "x", lease_seconds=60)
    assert outcome is Claim.RUN
    return fence


def test_a_takeover_bumps_the_generation():
    # GIVEN a claim whose lease lapsed
    first = claim("f1", "x", lease_seconds=60)[2]
    # WHEN another run takes it over
    second = _take_over("f1")
    # THEN the new token has the next generation, and the row says who holds it now
    assert (first.generation, second.generation) == (1, 2)
    row = TaskExecution.objects.get(task_id="f1")
    assert (row.owner, row.runs) == (second.owner, 2)


def test_done_is_refused_with_a_stale_token():
    # GIVEN a claim taken over by a second run
    stale = claim("f2", "x", lease_seconds=60)[2]
    current = _take_over("f2")
    # WHEN the first run tries to mark it done THEN it is refused, and the claim stays the second run's
    with pytest.raises(LeaseLost) as lost:
        mark_done(stale)
    assert (lost.value.current_generation, lost.value.current_state) == (2, ExecutionState.RUNNING)
    assert TaskExecution.objects.get(task_id="f2").state == ExecutionState.RUNNING
    # AND the current token marks it done
    mark_done(current)
    assert TaskExecution.objects.get(task_id="f2").state == ExecutionState.DONE


def test_release_is_refused_with_a_stale_token():
    # GIVEN a claim taken over by a second run
    stale = claim("f3", "x", lease_seconds=60)[2]
    current = _take_over("f3")
    # WHEN the first run fails and releases THEN nothing changes: the second run still holds it
    assert release(stale) is False
    row = TaskExecution.objects.get(task_id="f3")
    assert (row.state, row.runs) == (ExecutionState.RUNNING, current.generation)
    # AND the current token releases it
    assert release(current) is True
    assert TaskExecution.objects.get(task_id="f3").state == ExecutionState.RELEASED


def test_a_taken_over_run_cannot_commit_its_fenced_effects(caplog):
    # GIVEN a run whose claim is taken over while it computes
    def body():
        _take_over("f4")
        with fenced_commit():
            Effect.objects.create(task_id="f4", key="k")

    # WHEN it reaches its fenced commit THEN it rolls back, says so, and leaves the message to the new owner
    with pytest.raises(Reject) as rejected:
        run_once("f4", "x", 60, body, on_busy=pytest.fail)
    assert rejected.value.requeue is False
    assert not Effect.objects.filter(task_id="f4").exists()
    assert "taken over" in caplog.text and "rolled back" in caplog.text
    assert TaskExecution.objects.get(task_id="f4").state == ExecutionState.RUNNING


def test_the_body_runs_outside_any_transaction_and_the_fenced_commit_marks_done():
    # GIVEN a body that records whether it runs in a transaction, then commits its effect fenced
    seen = {}

    def body():
        seen["computing"] = connection.in_atomic_block
        with fenced_commit():
            seen["committing"] = connection.in_atomic_block
            Effect.objects.create(task_id="f5", key="k")
        return "ok"

    # WHEN it runs THEN it computed outside a transaction and committed inside one, with done
    assert run_once("f5", "x", 60, body, on_busy=pytest.fail) == "ok"
    assert seen == {"computing": False, "committing": True}
    assert Effect.objects.filter(task_id="f5").count() == 1
    assert TaskExecution.objects.get(task_id="f5").state == ExecutionState.DONE


def test_a_body_without_a_fenced_commit_is_marked_done_by_its_token():
    # GIVEN a body that writes nothing fenced
    # WHEN it runs THEN the claim is done afterwards
    run_once("f6", "x", 60, lambda: None, on_busy=pytest.fail)
    assert TaskExecution.objects.get(task_id="f6").state == ExecutionState.DONE
    # AND WHEN such a run was taken over THEN its done mark is refused too
    with pytest.raises(Reject):
        run_once("f7", "x", 60, lambda: _take_over("f7"), on_busy=pytest.fail)
    assert TaskExecution.objects.get(task_id="f7").runs == 2


def test_one_fenced_commit_per_run():
    # GIVEN a body that opens the fenced block twice
    def body():
        with fenced_commit():
            Effect.objects.create(task_id="f8", key="k")
        with fenced_commit():
            Effect.objects.create(task_id="f8", key="k")

    # WHEN it runs THEN the second is refused with a clear error, the first commit stands
    with pytest.raises(RuntimeError, match="once per run"):
        run_once("f8", "x", 60, body, on_busy=pytest.fail)
    assert Effect.objects.filter(task_id="f8").count() == 1


def test_fenced_commit_outside_an_idempotent_run_is_a_plain_transaction():
    # GIVEN no run in progress (a service called directly, a shell)
    # WHEN its writes fail inside the block THEN they roll back together
    with pytest.raises(ValueError), fenced_commit():
        Effect.objects.create(task_id="f9", key="k")
        raise ValueError("boom")
    assert not Effect.objects.filter(task_id="f9").exists()
