"""Fencing: a worker paused past its claim's lease cannot commit its effects once another took the claim over."""

from __future__ import annotations

import contextlib
import os
import signal
import uuid

import pytest
from django.db import connection

from api.jobs.models import Effect
from devstack import processes
from devstack.processes import REPO_ROOT
from tests.integration.topology_files import write_topology
from workers.celery_app import app
from workers.models import ExecutionState, TaskExecution

pytestmark = [pytest.mark.integration, pytest.mark.serial]

# A claim's lease is the hard time limit plus the margin (1 s): 5 s. The heartbeat keeps a running task's
# message invisible; a frozen worker's heartbeat stops, so its message returns 5 s after the last one.
SHORT_LEASE = {"visibility_timeout": 5, "visibility_heartbeat_seconds": 2, "soft_time_limit": 3, "time_limit": 4}
WORK_SECONDS = 2  # under the soft time limit: the task itself never times out


def _owner_pid(task_id: str) -> int | None:
    owner = TaskExecution.objects.filter(task_id=task_id).values_list("owner", flat=True).first()
    return int(owner.rsplit(":", 1)[1]) if owner else None


def _start_two_workers(start_process, env: dict[str, str]) -> list:
    """Two real `celery worker`s with one pool process each, started side by side (start-up is the slow part)."""
    worker_env = {"PATH": processes.venv_path(), "WORKER_CONCURRENCY": "1", **env}
    workers = [start_process("worker", [str(REPO_ROOT / "bin" / "start-worker")], env=worker_env) for _ in range(2)]
    processes.wait_for(
        lambda: all(" ready." in w.log() for w in workers) or any(not w.alive() for w in workers),
        timeout=90,
        interval=0.2,
        what="two workers to be ready",
    )
    assert all(w.alive() for w in workers), "a worker exited during start-up"
    return workers


def test_a_worker_paused_past_its_lease_cannot_commit_after_a_takeover(
    transactional_db, start_process, queues, tmp_path
):
    if connection.vendor != "postgresql":
        pytest.skip("the fencing proof runs on PostgreSQL (export DATABASE_URL=postgres://...)")
    # GIVEN two workers with one pool process each, on a queue where a claim's lease is 5 s
    env = {"QUEUE_TOPOLOGY": str(write_topology(tmp_path, default=SHORT_LEASE)), "WORKER_QUEUES": "default"}
    workers = _start_two_workers(start_process, env)
    task_id = str(uuid.uuid4())

    # WHEN one of them starts a record_effect that works 2 s before it writes its Effect
    app.send_task("jobs.record_effect", kwargs={"key": "fence", "seconds": WORK_SECONDS}, task_id=task_id)
    first_pid = processes.wait_for(lambda: _owner_pid(task_id), timeout=30, interval=0.05, what="the first claim")
    paused = next(w for w in workers if first_pid in processes.children(w.proc.pid))
    # AND that whole worker (main process, heartbeat thread, pool process) is frozen past its lease
    processes.signal_group(paused.proc, signal.SIGSTOP)
    try:
        # THEN the other worker receives the message again, takes the claim over and commits
        processes.wait_for(
            lambda: (
                TaskExecution.objects.filter(task_id=task_id, state=ExecutionState.DONE)
                .exclude(owner__endswith=f":{first_pid}")
                .exists()
            ),
            timeout=45,
            interval=0.2,
            what="the other worker to take the claim over and finish",
        )
        assert Effect.objects.filter(task_id=task_id).count() == 1

        # WHEN the frozen worker resumes, its pool process first: which process of a thawed container gets the
        # CPU first is arbitrary, and Celery's overdue time limit firing first in the main process would
        # only hide the race this test is about (a task that finishes its commit on resume)
        os.kill(first_pid, signal.SIGCONT)
        with contextlib.suppress(TimeoutError):
            processes.wait_for(
                lambda: "taken over" in paused.log() or Effect.objects.filter(task_id=task_id).count() > 1,
                timeout=20,
                interval=0.1,
                what="the resumed task to try its commit",
            )
    finally:
        processes.signal_group(paused.proc, signal.SIGCONT)

    # THEN its commit was refused: one Effect, and its log says its lease was taken over and it rolled back
    assert Effect.objects.filter(task_id=task_id).count() == 1
    assert "taken over" in paused.log() and "rolled back" in paused.log()
    # AND the resumed worker carries on (its main process got the outcome from its pool process): with the
    # other worker stopped, it runs the next task; nothing is left queued
    processes.stop(next(w for w in workers if w is not paused).proc, grace=15)
    next_id = str(uuid.uuid4())
    app.send_task("jobs.record_effect", kwargs={"key": "after"}, task_id=next_id)
    processes.wait_for(
        lambda: TaskExecution.objects.filter(task_id=next_id, state=ExecutionState.DONE).exists(),
        timeout=30,
        interval=0.2,
        what="the resumed worker to run the next task",
    )
    assert paused.alive()
    assert queues.drained("default", timeout=30)
