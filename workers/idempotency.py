"""Run a task's effects at most once per task id, however often SQS delivers it.

Why a database row and not the seed guide's Redis SETNX lock:
- The "done" mark commits in the same transaction as the task's database effects, so either both happen
  or neither: a worker killed between the effect and the mark cannot leave an effect that runs again.
  A lock in another store cannot be atomic with the effects.
- A Redis lock needs a TTL: too short and it expires under a task that is still running (a second run
  starts), none and a killed worker leaves it forever. Here the lease is the task's hard time limit plus
  a margin: Celery kills a task at that limit, so while the lease holds its first run may still be
  alive, and once it lapses that run is certainly over. No lock outlives it, no second run overlaps it.
- The database is already required and backed up; Redis is not part of this system.
Effects outside the database (an e-mail, an HTTP call) stay at-least-once: make those idempotent at the
receiver, keyed by the task id.
"""

from __future__ import annotations

import enum
import logging
import math
import os
import socket
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from django.db import IntegrityError, transaction
from django.db.models import F, Q
from django.utils import timezone

from workers.models import ExecutionState, TaskExecution

logger = logging.getLogger(__name__)


class Claim(enum.Enum):
    RUN = "run"  # this delivery runs it
    DONE = "done"  # already done: skip, ack
    BUSY = "busy"  # another live run holds the lease: come back when it lapses


def _owner() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def claim(task_id: str, task_name: str, lease_seconds: float) -> tuple[Claim, float]:
    """Try to take the task id; returns the outcome and, when BUSY, the seconds left on the lease."""
    now = timezone.now()
    until = now + timedelta(seconds=lease_seconds)
    try:
        with transaction.atomic():
            TaskExecution.objects.create(
                task_id=task_id, task_name=task_name, state=ExecutionState.RUNNING, owner=_owner(), lease_until=until
            )
        return Claim.RUN, 0.0
    except IntegrityError:
        pass
    # Someone claimed it before: take it over only if that run failed or its lease lapsed (atomic CAS).
    taken = (
        TaskExecution.objects.filter(task_id=task_id)
        .exclude(state=ExecutionState.DONE)
        .filter(Q(state=ExecutionState.RELEASED) | Q(lease_until__lt=now))
        .update(state=ExecutionState.RUNNING, owner=_owner(), lease_until=until, runs=F("runs") + 1)
    )
    if taken:
        return Claim.RUN, 0.0
    row = TaskExecution.objects.filter(task_id=task_id).values("state", "lease_until").first()
    if row is None:  # deleted meanwhile (by an operator): claim afresh
        return claim(task_id, task_name, lease_seconds)
    if row["state"] == ExecutionState.DONE:
        return Claim.DONE, 0.0
    return Claim.BUSY, max(0.0, (row["lease_until"] - now).total_seconds())


def run_once(task_id: str, task_name: str, lease_seconds: float, call: Callable[[], Any], *, on_busy) -> Any:
    """Run `call` unless this task id is done or running elsewhere; its database effects and the done mark
    commit together."""
    outcome, left = claim(task_id, task_name, lease_seconds)
    if outcome is Claim.DONE:
        logger.info("task %s[%s] already done: duplicate delivery skipped", task_name, task_id)
        return None
    if outcome is Claim.BUSY:
        logger.info("task %s[%s] is running elsewhere (lease %.0f s left)", task_name, task_id, left)
        return on_busy(left)
    try:
        with transaction.atomic():
            result = call()
            TaskExecution.objects.filter(task_id=task_id).update(state=ExecutionState.DONE, finished_at=timezone.now())
        return result
    except BaseException:
        # The effects rolled back: let the next delivery (a retry, a redelivery) claim it at once.
        TaskExecution.objects.filter(task_id=task_id, state=ExecutionState.RUNNING).update(
            state=ExecutionState.RELEASED, lease_until=timezone.now()
        )
        raise


def lease_for(task) -> float:
    """The run's hard time limit (from the message, else the task's queue limit applied at start-up) plus
    the topology's visibility margin."""
    from workers.topology import get_topology

    timelimit = getattr(task.request, "timelimit", None) or (None, None)
    return float(timelimit[0] or task.time_limit or 0) + get_topology().visibility_margin_seconds


def busy_retry(task) -> Callable[[float], Any]:
    """Come back when the other run's lease lapses: a new delayed message (this one is acked), which does
    not spend the task's own retries."""

    def retry(left: float):
        countdown = min(900, math.ceil(left) + 1)
        raise task.retry(countdown=countdown, max_retries=task.request.retries + 1, exc=None)

    return retry
