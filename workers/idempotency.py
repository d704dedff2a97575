"""Run a task's effects at most once per task id, however often SQS delivers it.

Why a database row and not the seed guide's Redis SETNX lock:
- The "done" mark commits in the same transaction as the task's database writes (its fenced_commit()
  block, workers/fencing.py), so either both happen or neither: a worker killed between the effect and
  the mark cannot leave an effect that runs again. A lock in another store cannot be atomic with them.
- A lock needs a lease: here the task's hard time limit plus a margin, after which another delivery may
  take the claim over. Celery kills a task at that limit, but not while the whole worker is frozen (a
  paused container, SIGSTOP, a swap storm): a run may outlive its lease. So each claim carries a fencing
  token (owner, generation), and done/released apply only with the current one (compare-and-set): a run
  that was taken over cannot commit, whenever it wakes up.
- The task computes outside any transaction; only its short fenced commit takes locks (SQLite's write
  lock, PostgreSQL row locks).
- The database is already required and backed up; Redis is not part of this system.
Effects outside the database (an e-mail, an HTTP call) and writes outside fenced_commit() stay
at-least-once: make those idempotent at the receiver, keyed by the task id.
"""

from __future__ import annotations

import enum
import logging
import math
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from celery.exceptions import Reject
from django.db import IntegrityError, transaction
from django.db.models import F, Q
from django.utils import timezone

from workers.fencing import Fence, LeaseLost, fenced_commit, fenced_run, mark_done, release
from workers.models import ExecutionState, TaskExecution
from workers.owner import process_owner

__all__ = ["Claim", "Fence", "LeaseLost", "busy_retry", "claim", "fenced_commit", "lease_for", "run_once"]

logger = logging.getLogger(__name__)


class Claim(enum.Enum):
    RUN = "run"  # this delivery runs it
    DONE = "done"  # already done: skip, ack
    BUSY = "busy"  # another live run holds the lease: come back when it lapses


_TAKEOVER_ATTEMPTS = 3  # each lost compare-and-set means another run just took it: look again, then give up


def claim(task_id: str, task_name: str, lease_seconds: float) -> tuple[Claim, float, Fence | None]:
    """Try to take the task id; returns the outcome, the seconds left on the other run's lease when BUSY, and
    this run's fencing token when RUN."""
    now = timezone.now()
    until = now + timedelta(seconds=lease_seconds)
    owner = process_owner()
    try:
        with transaction.atomic():
            TaskExecution.objects.create(
                task_id=task_id, task_name=task_name, state=ExecutionState.RUNNING, owner=owner, lease_until=until
            )
        return Claim.RUN, 0.0, Fence(task_id, task_name, owner, generation=1)
    except IntegrityError:
        pass
    row = None
    for _ in range(_TAKEOVER_ATTEMPTS):
        row = TaskExecution.objects.filter(task_id=task_id).values("state", "lease_until", "runs").first()
        if row is None:  # deleted meanwhile (by an operator): claim afresh
            return claim(task_id, task_name, lease_seconds)
        if row["state"] == ExecutionState.DONE:
            return Claim.DONE, 0.0, None
        if row["state"] != ExecutionState.RELEASED and row["lease_until"] >= now:
            break
        # That run failed or its lease lapsed: take it over with the next generation, compare-and-set on the
        # generation seen, so of two runs taking over at once exactly one wins.
        taken = (
            TaskExecution.objects.filter(task_id=task_id, runs=row["runs"])
            .exclude(state=ExecutionState.DONE)
            .filter(Q(state=ExecutionState.RELEASED) | Q(lease_until__lt=now))
            .update(state=ExecutionState.RUNNING, owner=owner, lease_until=until, runs=F("runs") + 1)
        )
        if taken:
            return Claim.RUN, 0.0, Fence(task_id, task_name, owner, generation=row["runs"] + 1)
    return Claim.BUSY, max(0.0, (row["lease_until"] - now).total_seconds()), None


def run_once(task_id: str, task_name: str, lease_seconds: float, call: Callable[[], Any], *, on_busy) -> Any:
    """Run `call` unless this task id is done or running elsewhere. It runs outside any transaction; its
    database writes commit with the done mark in its fenced_commit() block, or the done mark follows it."""
    outcome, left, fence = claim(task_id, task_name, lease_seconds)
    if outcome is Claim.DONE:
        logger.info("task %s[%s] already done: duplicate delivery skipped", task_name, task_id)
        return None
    if outcome is Claim.BUSY:
        logger.info("task %s[%s] is running elsewhere (lease %.0f s left)", task_name, task_id, left)
        return on_busy(left)
    with fenced_run(fence) as run:
        try:
            result = call()
        except BaseException:
            if run.lost:
                raise _left_to_owner(run.lost, _ROLLED_BACK) from run.lost
            # Its fenced commit (if any) rolled back: let the next delivery (a retry, a redelivery) claim it
            # at once, unless another run holds the claim now.
            if not release(fence):
                logger.info("task %s[%s]: not released: the claim is done, or no longer %s", task_name, task_id, fence)
            raise
    if run.lost:  # the task caught LeaseLost itself
        raise _left_to_owner(run.lost, _ROLLED_BACK)
    if not run.committed:
        try:
            mark_done(fence)
        except LeaseLost as lost:
            raise _left_to_owner(
                lost, "its done mark was refused: effects outside fenced_commit() may have happened twice"
            ) from lost
    return result


_ROLLED_BACK = "its fenced commit rolled back: no database write of this run committed"


def _left_to_owner(lost: LeaseLost, what_happened: str) -> Reject:
    """A run whose claim was taken over leaves its message to the run holding the claim: it rejects without
    requeue (kept for redelivery, never deleted here), because a delete with its receipt handle, older
    than the other run's, may delete the copy that run is working on (moto does; AWS says only the newest
    handle deletes)."""
    fence = lost.fence
    logger.warning(
        "task %s[%s]: lease lost: this run (%s) was taken over by %s generation %s (now %s); %s; its message is "
        "left to the run that holds the claim",
        fence.task_name,
        fence.task_id,
        fence,
        lost.current_owner,
        lost.current_generation,
        lost.current_state,
        what_happened,
    )
    return Reject(str(lost), requeue=False)


def lease_for(task) -> float:
    """The run's hard time limit (from the message, else the task's queue limit applied at start-up) plus
    the topology's visibility margin."""
    from core.topology import get_topology

    timelimit = getattr(task.request, "timelimit", None) or (None, None)
    return float(timelimit[0] or task.time_limit or 0) + get_topology().visibility_margin_seconds


def busy_retry(task) -> Callable[[float], Any]:
    """Come back when the other run's lease lapses: a new delayed message (this one is acked), which does
    not spend the task's own retries."""

    def retry(left: float):
        countdown = min(900, math.ceil(left) + 1)
        raise task.retry(countdown=countdown, max_retries=task.request.retries + 1, exc=None)

    return retry
