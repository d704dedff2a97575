"""`make soak`: publish SOAK_TASKS idempotent tasks to two workers, SIGKILL worker processes at random
until the queue drains, then check the database: every task's effect exactly once.

Bounded: SOAK_TIMEOUT (1200) seconds at most; every process it starts is stopped by PID when it ends.
Own moto server and SQLite database (under a temporary directory), `soak` topology profile.
The last line is `soak: tasks=<n> kills=<k> executions=<e> lost=<l> duplicate_effects=<d>`;
the exit code is 0 only when lost and duplicate_effects are both 0.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from devstack import processes
from devstack.moto_server import start_moto_server, wait_until_up
from devstack.processes import REPO_ROOT
from workers.env import env_int

WORKERS = 2
CONCURRENCY = 2
SHALLOW = 100  # messages in the queue before the next slice is published


def main() -> int:
    tasks = env_int("SOAK_TASKS", 2000)
    kill_every = float(os.environ.get("SOAK_KILL_EVERY", "4"))
    # Long enough that a kill usually lands mid-task: the worker drains 20 ms tasks too fast to be hit.
    task_seconds = float(os.environ.get("SOAK_TASK_SECONDS", "0.2"))
    timeout = env_int("SOAK_TIMEOUT", 1200)
    rng = random.Random(env_int("SOAK_SEED", 1))  # noqa: S311 (choosing victims, not secrets)
    workdir = Path(tempfile.mkdtemp(prefix="celery-sqs-soak-"))
    port = processes.free_port()
    endpoint = f"http://127.0.0.1:{port}"
    env = {
        "DJANGO_SETTINGS_MODULE": "api.settings.local",
        "QUEUE_TOPOLOGY": str(REPO_ROOT / "queues.yml"),
        "QUEUE_TOPOLOGY_PROFILE": "soak",
        "SQS_ENDPOINT_URL": endpoint,
        "SQLITE_PATH": str(workdir / "soak.sqlite3"),
        "DATABASE_URL": "",
        "WORKER_HEARTBEAT_FILE": str(workdir / "worker-heartbeat"),
        "PYTHONUNBUFFERED": "1",
        "PATH": processes.venv_path(),
    }
    os.environ.update(env)

    import django

    django.setup()
    from django.conf import settings
    from django.db.models import Count

    from api.jobs.models import Effect
    from devstack.queues import create_queues, queue_depth
    from workers.celery_app import app
    from workers.models import ExecutionState, TaskExecution

    moto = start_moto_server(port, stdout=(workdir / "moto.log").open("wb"))
    workers: list[subprocess.Popen] = []
    kills = 0
    started = time.monotonic()
    try:
        wait_until_up(endpoint, moto)
        urls = create_queues(settings.QUEUE_TOPOLOGY, endpoint_url=endpoint)
        subprocess.run([sys.executable, "manage.py", "migrate", "-v", "0"], check=True, cwd=REPO_ROOT)

        def start_worker(n: int) -> subprocess.Popen:
            log = (workdir / f"worker-{n}.log").open("ab")
            proc = processes.start(
                [str(REPO_ROOT / "bin" / "start-worker")],
                env={**env, "WORKER_QUEUES": "default", "WORKER_CONCURRENCY": str(CONCURRENCY)},
                stdout=log,
            )
            return proc

        workers = [start_worker(n) for n in range(WORKERS)]
        ids = [str(uuid.uuid4()) for _ in range(tasks)]
        published = 0
        next_kill = time.monotonic() + kill_every
        deadline = started + timeout

        def done_count() -> int:
            return TaskExecution.objects.filter(task_id__in=ids, state=ExecutionState.DONE).count()

        def depth() -> int:
            return sum(queue_depth(urls["default"], endpoint_url=endpoint).values())

        last_report = 0.0
        while time.monotonic() < deadline:
            # Publish in slices while the queue is shallow: the emulator's receive slows as the queue grows.
            if published < tasks and depth() < SHALLOW:
                for task_id in ids[published : published + 50]:
                    app.send_task(
                        "jobs.record_effect", kwargs={"key": task_id[:8], "seconds": task_seconds}, task_id=task_id
                    )
                published = min(tasks, published + 50)
            now = time.monotonic()
            for n, proc in enumerate(workers):  # restart what died
                if proc.poll() is not None:
                    processes.stop(proc, grace=0)
                    workers[n] = start_worker(n)
            if now >= next_kill:
                victim = rng.choice(workers)
                children = processes.children(victim.pid)
                if children and rng.random() < 0.6:
                    os.kill(rng.choice(children), signal.SIGKILL)  # a pool child mid-task
                else:
                    processes.signal_group(victim, signal.SIGKILL)  # the whole worker
                kills += 1
                next_kill = now + kill_every
            if now - last_report > 5:
                last_report = now
                print(
                    f"soak: {time.monotonic() - started:5.0f} s published={published} done={done_count()} "
                    f"kills={kills}",
                    flush=True,
                )
            if published == tasks and done_count() == tasks and depth() == 0:
                break
            time.sleep(0.2)
        else:
            print(f"soak: timed out after {timeout} s", flush=True)

        counts = dict(
            Effect.objects.filter(task_id__in=ids)
            .values_list("task_id")
            .annotate(n=Count("id"))
            .values_list("task_id", "n")
        )
        lost = sum(1 for task_id in ids if counts.get(task_id, 0) == 0)
        duplicates = sum(n - 1 for n in counts.values() if n > 1)
        executions = sum(TaskExecution.objects.filter(task_id__in=ids).values_list("runs", flat=True))
    finally:
        for proc in workers:
            processes.stop(proc, grace=5)
        processes.stop(moto, grace=5)
    print(f"soak: tasks={tasks} kills={kills} executions={executions} lost={lost} duplicate_effects={duplicates}")
    return 0 if lost == 0 and duplicates == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
