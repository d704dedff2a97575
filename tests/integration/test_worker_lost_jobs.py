"""A whole worker dies (SIGKILL of its main process and pool children) while it runs a Job: once its registry row
is lost, the lost-worker sweep (`manage.py workers --sweep`, as the relay runs it) puts the Job back to queued
with a "worker lost" event, and after SQS delivers the message again a second worker finishes it."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from api.jobs.lost_workers import sweep_lost_workers
from api.jobs.models import Job, JobEvent
from devstack import processes
from devstack.processes import REPO_ROOT
from tests.integration.conftest import database_env, post_job, wait_for_job
from workers.models import WorkerRegistration

pytestmark = pytest.mark.integration

QUEUE = "high_priority"  # visibility timeout 6 s on the test topology: the redelivery comes soon after
# One renewal a second and a 2 s long poll: lost after 2 renewals + one long poll + polling_interval (1 s) + 5 s
# (workers/registry/writer.py lost_after): 10 s, where the production poll of 20 s makes it 28 s.
REGISTRY = {"WORKER_REGISTRY_SECONDS": "1", "WORKER_LONG_POLL_SECONDS": "2"}
LOST_AFTER = 10


def children_of(pid: int) -> list[int]:
    """The worker's pool processes, read from /proc by its PID."""
    try:
        return [int(child) for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def kill_whole_worker(proc: subprocess.Popen) -> None:
    """SIGKILL the main process and its pool children, each by PID: no shutdown code runs anywhere."""
    pids = [proc.pid, *children_of(proc.pid)]
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    proc.wait(timeout=10)


def sweep() -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(REPO_ROOT / "manage.py"), "workers", "--sweep"],
        env={"PATH": processes.venv_path(), "DJANGO_SETTINGS_MODULE": "api.settings.test", **database_env()},
        capture_output=True,
        text=True,
        timeout=60,
    )


def lost_events(job_id: int) -> list[JobEvent]:
    return list(JobEvent.objects.filter(job_id=job_id, detail__startswith="worker lost"))


def start_registered_worker(start_worker):
    """A worker with REGISTRY's settings, once its registry row exists."""
    worker = start_worker(env=REGISTRY)
    processes.wait_for(
        lambda: WorkerRegistration.objects.filter(pid=worker.proc.pid).exists(), timeout=30, what="its row"
    )
    return worker


def wait_until_lost(pid: int, what: str) -> None:
    processes.wait_for(
        lambda: (row := WorkerRegistration.objects.get(pid=pid)) and row.last_poll_at and _lost(row),
        timeout=LOST_AFTER + 15,
        interval=0.5,
        what=what,
    )


@pytest.mark.long_running
def test_a_job_of_a_sigkilled_worker_is_released_and_finished_by_another(client, start_worker, queues):
    # GIVEN a worker running a 6 s sleep Job
    first = start_registered_worker(start_worker)
    job_id = post_job(client, kind="sleep", payload={"seconds": 6}, queue=QUEUE).json()["job_id"]
    running = wait_for_job(job_id, {"running"})
    assert children_of(first.proc.pid), "the worker has pool processes"

    # WHEN the whole worker is SIGKILLed
    kill_whole_worker(first.proc)
    # THEN a sweep while its row is still within its bound leaves the Job running (the relay's sweep, in this
    # process: a `manage.py` start-up alone can outlast the 10 s bound on a loaded machine)
    early = sweep_lost_workers()
    assert not _lost(WorkerRegistration.objects.get(pid=first.proc.pid)), "the sweep came too late to tell"
    assert (early.lost_workers, early.requeued) == (0, [])
    assert Job.objects.get(pk=job_id).state == "running" and lost_events(job_id) == []

    # WHEN its row turns lost and the sweep runs
    wait_until_lost(first.proc.pid, "the killed worker's row to turn lost")
    swept = sweep()
    assert swept.returncode == 0, swept.stderr
    # THEN the Job is back to queued, its history naming the lost worker
    job = Job.objects.get(pk=job_id)
    assert job.state == "queued", swept.stderr
    [event] = lost_events(job_id)
    assert running.worker_hostname in event.detail and f"pid {first.proc.pid}" in event.detail
    assert "redelivered after its visibility timeout" in event.detail
    # AND a second sweep records nothing more
    assert sweep().returncode == 0 and len(lost_events(job_id)) == 1

    # WHEN SQS delivers the message again, to a second worker
    second = start_worker(env=REGISTRY)
    # THEN that worker finishes it: succeeded on its second attempt
    done = wait_for_job(job_id, {"succeeded"}, timeout=60)
    assert done.attempts == 2
    assert done.worker_pid in children_of(second.proc.pid) or done.worker_pid == second.proc.pid
    assert len(lost_events(job_id)) == 1


def _lost(row: WorkerRegistration) -> bool:
    from datetime import UTC, datetime

    return (datetime.now(UTC) - row.last_poll_at).total_seconds() > row.lost_after_seconds


def test_a_worker_paused_past_its_lost_bound_finishes_its_job_once_it_resumes(client, start_worker, queues):
    # GIVEN a worker running a 4 s sleep Job
    worker = start_registered_worker(start_worker)
    job_id = post_job(client, kind="sleep", payload={"seconds": 4}, queue=QUEUE).json()["job_id"]
    wait_for_job(job_id, {"running"})

    # WHEN the whole worker is paused (SIGSTOP of its process group: a frozen container), past its lost bound and
    # the queue's visibility timeout, and the sweep runs meanwhile
    processes.signal_group(worker.proc, signal.SIGSTOP)
    try:
        wait_until_lost(worker.proc.pid, "the paused worker's row to turn lost")
        swept = sweep()
        assert swept.returncode == 0, swept.stderr
        # THEN the sweep puts its Job back to queued, naming the lost worker
        assert Job.objects.get(pk=job_id).state == "queued"
        assert len(lost_events(job_id)) == 1
    finally:
        # WHEN it resumes
        processes.signal_group(worker.proc, signal.SIGCONT)

    # THEN the Job still ends succeeded (its run, or a second one after SQS delivered the message again), once
    # recorded lost; the worker's row is alive again; nothing is left in the queue or its DLQ
    done = wait_for_job(job_id, {"succeeded"}, timeout=60)
    print([(e.state, e.detail[:80]) for e in done.events.order_by("id")])  # shown when the test fails
    assert done.attempts in (1, 2)
    assert len(lost_events(job_id)) == 1
    processes.wait_for(
        lambda: not _lost(WorkerRegistration.objects.get(pid=worker.proc.pid)), timeout=30, what="its row alive"
    )
    assert queues.drained(QUEUE, timeout=30)
    assert queues.dlq_depth(QUEUE)["visible"] == 0
    assert worker.alive()
