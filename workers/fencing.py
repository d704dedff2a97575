"""Fencing tokens for task-id claims: DONE and RELEASED by compare-and-set, and the one short fenced commit."""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator
from dataclasses import dataclass

from celery.exceptions import Ignore
from django.db import transaction
from django.db.models import QuerySet
from django.utils import timezone

from workers.models import ExecutionState, TaskExecution


@dataclass(frozen=True)
class Fence:
    """The token of one granted claim: who holds it, and which claim of the task id it is."""

    task_id: str
    task_name: str
    owner: str  # hostname:pid of the claiming process
    generation: int  # TaskExecution.runs when the claim was granted: each takeover adds one

    def __str__(self) -> str:
        return f"{self.owner} generation {self.generation}"


class LeaseLost(Ignore):
    """This run's claim was taken over (its lease lapsed while it was paused or slow): it must not commit.

    An Ignore, so Celery's autoretry never turns it into a retry (workers.idempotency.run_once decides)."""

    def __init__(self, fence: Fence, current_owner: str | None, current_generation: int | None, current_state: str):
        self.fence, self.current_state = fence, current_state
        self.current_owner, self.current_generation = current_owner, current_generation
        super().__init__(
            f"task {fence.task_name}[{fence.task_id}]: the claim of {fence} was taken over by "
            f"{current_owner} generation {current_generation} (now {current_state})"
        )

    def __reduce__(self):
        # Celery pickles a task's exception from the pool process to the main process: rebuild it from all
        # four arguments (the default would call __init__ with the message alone, and the worker dies).
        return type(self), (self.fence, self.current_owner, self.current_generation, self.current_state)


def _held(fence: Fence) -> QuerySet:
    """The claim's row, only while this token still holds it."""
    return TaskExecution.objects.filter(
        task_id=fence.task_id, owner=fence.owner, runs=fence.generation, state=ExecutionState.RUNNING
    )


def _lost(fence: Fence) -> LeaseLost:
    row = TaskExecution.objects.filter(task_id=fence.task_id).values("owner", "runs", "state").first() or {}
    return LeaseLost(fence, row.get("owner"), row.get("runs"), row.get("state", "deleted"))


def mark_done(fence: Fence) -> None:
    """Running → done, only with the current token; else LeaseLost. In a transaction, the row lock this
    UPDATE takes makes a concurrent takeover wait for the commit (PostgreSQL), and then find it done."""
    if not _held(fence).update(state=ExecutionState.DONE, finished_at=timezone.now()):
        raise _lost(fence)


def release(fence: Fence) -> bool:
    """Running → released (the next delivery may claim at once), only with the current token: a run that
    was taken over must not release the claim of the run that holds it now. False if refused."""
    return bool(_held(fence).update(state=ExecutionState.RELEASED, lease_until=timezone.now()))


@dataclass
class FencedRun:
    """The run in progress in this process (set by workers.idempotency.run_once)."""

    fence: Fence
    committed: bool = False
    lost: LeaseLost | None = None  # set when its fenced commit found the claim taken over


_current_run: contextvars.ContextVar[FencedRun | None] = contextvars.ContextVar("fenced_run", default=None)


@contextlib.contextmanager
def fenced_run(fence: Fence) -> Iterator[FencedRun]:
    """Make `fence` the token that fenced_commit() uses while the block runs."""
    run = FencedRun(fence)
    token = _current_run.set(run)
    try:
        yield run
    finally:
        _current_run.reset(token)


@contextlib.contextmanager
def fenced_commit() -> Iterator[None]:
    """Commit an idempotent task's database writes with its done mark, in one short transaction.

    The transaction first marks the claim done by compare-and-set, then runs the block's writes. If the
    claim was taken over meanwhile, LeaseLost is raised before any write and nothing commits. Once per
    run: its commit ends the run's claim. Outside an idempotent run (a service called directly, a shell)
    it is a plain transaction.
    """
    run = _current_run.get()
    if run is None:
        with transaction.atomic():
            yield
        return
    if run.committed:
        raise RuntimeError(
            f"fenced_commit() may be used once per run: task {run.fence.task_name}[{run.fence.task_id}] "
            "is already done; put all its database writes in one block"
        )
    with transaction.atomic():
        try:
            mark_done(run.fence)
        except LeaseLost as lost:
            run.lost = lost  # seen by run_once even if the task catches it
            raise
        yield
    run.committed = True
