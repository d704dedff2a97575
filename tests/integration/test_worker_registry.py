"""The worker registry with real worker processes: a row with the task running now, lost (with that task) after
a SIGKILL, counts and a stopped row after a clean stop, and polling that goes on while the database hangs."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from datetime import UTC, datetime

import pytest
from django.db import connection

from api.ops.worker_list import workers_report
from devstack import processes
from devstack.fault_proxy import FaultProxy
from devstack.processes import REPO_ROOT
from tests.integration.conftest import database_env, post_job, wait_for_job
from workers.celery_app import app
from workers.models import WorkerRegistration

pytestmark = pytest.mark.integration

QUEUE = "high_priority"  # its tasks may run 25 s (soft limit): long enough to be seen running
REGISTRY = {"WORKER_REGISTRY_SECONDS": "1"}  # one renewal a second, so the test sees changes in seconds
# A 2 s long poll where the test waits for "lost": 2 renewals + one long poll (2 s) + polling_interval (1 s) + 5 s
# (workers/registry/writer.py lost_after): 10 s, where the production poll of 20 s makes it 28 s.
LOSES_SOON = {**REGISTRY, "WORKER_LONG_POLL_SECONDS": "2"}
LOST_AFTER = 10


def row_of(proc) -> WorkerRegistration | None:
    return WorkerRegistration.objects.filter(pid=proc.pid).order_by("-started_at").first()


def worker_entry(proc):
    """The page's view of this worker: (WorkerRow, its status), or None before its first renewal."""
    for row in workers_report().workers:
        if row.pid == proc.pid:
            return row
    return None


def manage_workers(env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(REPO_ROOT / "manage.py"), "workers", "--json"],
        env={"PATH": processes.venv_path(), "DJANGO_SETTINGS_MODULE": "api.settings.test", **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.long_running
def test_a_sigkilled_worker_turns_lost_with_the_task_it_was_running(client, start_worker, queues):
    # GIVEN a worker, registered at its first poll with who it is
    worker = start_worker(env=LOSES_SOON)
    entry = processes.wait_for(lambda: worker_entry(worker.proc), timeout=30, what="the worker's row")
    assert entry.status == "alive"
    assert (entry.queues, entry.concurrency, entry.prefetch) == (sorted(settings_queues()), 2, 2)
    assert "celery 5." in entry.version

    # WHEN it runs a 20 s sleep Job
    response = post_job(client, kind="sleep", payload={"seconds": 20}, queue=QUEUE)
    job_id = response.json()["job_id"]
    wait_for_job(job_id, {"running"})
    # THEN its row shows the task, with its Job, since it started
    running = processes.wait_for(
        lambda: (e := worker_entry(worker.proc)) and e.running and e, timeout=15, what="the running task in the row"
    )
    task = running.running[0]
    assert (task.name, task.job_id) == ("jobs.sleep", job_id)
    assert datetime.fromisoformat(task.since) <= datetime.now(UTC)

    # WHEN the whole worker is SIGKILLed (no shutdown code runs)
    processes.signal_group(worker.proc, signal.SIGKILL)
    worker.proc.wait(timeout=10)
    killed_at = time.monotonic()
    # THEN within its bound the row turns lost, keeping the task it was running at that moment
    lost = processes.wait_for(
        lambda: (e := worker_entry(worker.proc)) and e.status == "lost" and e,
        timeout=LOST_AFTER + 10,
        interval=0.5,
        what="the killed worker's row to turn lost",
    )
    assert time.monotonic() - killed_at <= LOST_AFTER + 10
    assert lost.lost_after_seconds == LOST_AFTER
    assert [(t.task_id, t.name, t.job_id) for t in lost.running] == [(task.task_id, "jobs.sleep", job_id)]
    assert lost.stopped_at is None

    # AND `manage.py workers` shows it too (exit 0), but exits 1 when it cannot reach the database
    shown = manage_workers(database_env())
    assert shown.returncode == 0, shown.stderr
    assert '"status": "lost"' in shown.stdout and task.task_id in shown.stdout
    refused = manage_workers({"DATABASE_URL": f"postgres://postgres@127.0.0.1:{processes.free_port()}/none"})
    assert refused.returncode == 1
    assert "cannot read the worker registry" in refused.stderr


@pytest.mark.graceful_stop
def test_counts_renewals_and_a_clean_stop(client, start_worker, queues):
    # GIVEN a worker that ran three echo Jobs
    worker = start_worker(env=REGISTRY)
    started = time.monotonic()
    for n in range(3):
        job_id = post_job(client, kind="echo", payload={"message": f"m{n}"}).json()["job_id"]
        wait_for_job(job_id, {"succeeded"})
    # THEN its row counts them as done within a renewal or two
    processes.wait_for(
        lambda: (e := worker_entry(worker.proc)) and e.counts.get("done") == 3, timeout=15, what="3 done in the row"
    )
    # AND it was written at most once per renewal interval (the registry's write cost), plus the first one
    row = row_of(worker.proc)
    assert row.renewals <= (time.monotonic() - started) / 1.0 + 2

    # WHEN it is stopped cleanly (SIGTERM, as ECS does)
    worker.proc.send_signal(signal.SIGTERM)
    assert worker.proc.wait(timeout=60) is not None
    # THEN its row says stopped, not lost
    assert worker_entry(worker.proc).status == "stopped"


@pytest.mark.long_running
def test_polling_goes_on_while_the_registry_cannot_be_written(start_process, transactional_db, queues, tmp_path):
    if connection.vendor != "postgresql":
        pytest.skip("needs PostgreSQL (DATABASE_URL=postgres://…): the hang is a black-holed TCP connection")
    # GIVEN a worker whose database connection goes through a proxy that can black-hole it
    db = connection.settings_dict
    proxy = FaultProxy(int(db["PORT"] or 5432)).start()
    user = db["USER"] or "postgres"
    auth = f"{user}:{db['PASSWORD']}" if db["PASSWORD"] else user
    env = {
        "PATH": processes.venv_path(),
        "DATABASE_URL": f"postgres://{auth}@127.0.0.1:{proxy.port}/{db['NAME']}",
        "WORKER_LIVENESS_FILE": str(tmp_path / "liveness"),
        **REGISTRY,
    }
    try:
        worker = start_process("worker", [str(REPO_ROOT / "bin" / "start-worker")], env=env, ready=" ready.")
        first = processes.wait_for(lambda: row_of(worker.proc), timeout=30, what="the worker's row")

        # WHEN the database hangs (accepts, never answers): the registry's next write hangs with it
        proxy.set_mode("blackhole")
        hung_at = datetime.now(UTC)
        # AND tasks that need no database keep arriving for a while
        for _wave in range(4):
            for _ in range(5):
                app.send_task("jobs.noop", queue=QUEUE)
            time.sleep(2)

        # THEN the worker went on polling and ran them all: the event loop never waited on the hung write
        assert queues.drained(QUEUE, timeout=30)
        assert (tmp_path / "liveness").exists() and float((tmp_path / "liveness").read_text()) > hung_at.timestamp()
        assert worker.alive()
        # AND the row was not renewed meanwhile (the writer is stuck, not the worker)
        assert row_of(worker.proc).renewed_at < hung_at or row_of(worker.proc).renewals <= first.renewals + 1

        # WHEN the database answers again THEN the row is renewed with what the worker did
        proxy.set_mode("pass")
        processes.wait_for(
            lambda: (r := row_of(worker.proc)) and r.counts.get("done", 0) >= 20,
            timeout=60,
            interval=0.5,
            what="the row renewed with 20 tasks done",
        )
    finally:
        proxy.cut()


def settings_queues() -> list[str]:
    from django.conf import settings

    return list(settings.QUEUE_TOPOLOGY.queues)
