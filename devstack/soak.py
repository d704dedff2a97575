"""`make soak`: publish SOAK_TASKS idempotent tasks to two workers, SIGKILL worker processes, pause whole
workers and break their SQS endpoint at random until the queue drains, then check the database: every task's
effect exactly once.

Bounded: SOAK_TIMEOUT (1200, or a second per task above 1200 tasks) seconds at most; every process it starts
is stopped by PID when it ends, a paused worker resumed first (also on Ctrl-C or SIGTERM). Own moto server and
SQLite database (or SOAK_DATABASE_URL) under a temporary directory it names at the start and the end, `soak`
topology profile. Workers and the publisher reach SQS through one fault proxy (devstack/fault_proxy.py); the
disruptions are in devstack/soak_chaos.py, the verdict and the last line in devstack/soak_report.py:
`soak: tasks=… kills=… pauses=… faults=… hops=… expired=… dlq=… executions=… lost=… duplicate_effects=…`;
the exit code is 0 only when lost and duplicate_effects are both 0.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

from core.env import env_float, env_int, env_str
from devstack import processes
from devstack.fault_proxy import FaultProxy
from devstack.processes import REPO_ROOT
from devstack.soak_chaos import Chaos, ChaosSettings, Tally
from devstack.soak_report import EXPIRED_MARK, FENCED_MARKS, HOP_MARK, count_log_lines, last_line, verdict
from devstack.stack import LocalStack

WORKERS = 2
CONCURRENCY = 2
SHALLOW = 100  # messages in the queue before the next slice is published
SLICE = 50
# The ETA tasks go out once both workers are ready and the queue has drained to this many: near its head, a worker
# receives them within seconds, long before they are due, and must hop them. Behind a slice they were reached only
# once due on a slow machine (hops=0 in CI, 2026-12-02: 300 tasks took 287 s), and nothing was hopped.
ETA_FRONT = 10
READY_TIMEOUT = 180  # seconds for both workers' first " ready." and first successful poll (a loaded machine)
# A stock producer's ETA is SOAK_ETA_AHEAD_SECONDS (45) to twice that ahead, well past the soak's 6 s visibility.
# The soak cannot end before the last one is due: a shorter soak (the suite's) asks for less.
ETA_AHEAD_SECONDS = 45
PUBLISH_ATTEMPTS = 5  # a publish that fails (the proxy's faults) is sent again with the same task id


def chaos_settings() -> ChaosSettings:
    return ChaosSettings(
        kill_every=env_float("SOAK_KILL_EVERY", 4),
        pause_every=env_float("SOAK_PAUSE_EVERY", 10),
        pause_min_seconds=env_float("SOAK_PAUSE_MIN_SECONDS", 1),
        pause_max_seconds=env_float("SOAK_PAUSE_MAX_SECONDS", 10),
        fault_every=env_float("SOAK_FAULT_EVERY", 3),
        fault_max_seconds=env_float("SOAK_FAULT_MAX_SECONDS", 3),
    )


class Workers:
    """The soak's worker processes, each the leader of its own process group, restarted when one dies.

    A worker is ready once it logged " ready." and polled SQS once (its own heartbeat file, touched after each
    successful poll, is newer than its start): only ready workers are disrupted, so a kill or a pause never
    lands in a start-up (which on a loaded machine takes longer than the interval between kills).
    """

    def __init__(self, stack: LocalStack, count: int):
        self.stack = stack
        self.workdir = stack.workdir
        self.count = count
        self.procs: list[subprocess.Popen] = []
        self._since: list[tuple[int, float]] = []  # per worker: log size and wall time at its start
        self._ready: list[bool] = []
        self._lock = threading.Lock()

    def log_path(self, n: int) -> Path:
        return self.workdir / f"worker-{n}.log"

    def liveness_path(self, n: int) -> Path:
        return self.workdir / f"worker-{n}-heartbeat"

    def _start(self, n: int) -> subprocess.Popen:
        log_path = self.log_path(n)
        self._since[n] = (log_path.stat().st_size if log_path.exists() else 0, time.time())
        self._ready[n] = False
        return self.stack.start(
            f"worker-{n}",
            [str(REPO_ROOT / "bin" / "start-worker")],
            env={
                "WORKER_QUEUES": "default",
                "WORKER_CONCURRENCY": str(CONCURRENCY),
                "WORKER_LIVENESS_FILE": str(self.liveness_path(n)),  # its own: "polled once" is per worker
            },
            log_path=log_path,
        ).proc

    def start(self) -> None:
        with self._lock:
            self._since = [(0, 0.0)] * self.count
            self._ready = [False] * self.count
            self.procs = [self._start(n) for n in range(self.count)]

    def restart_dead(self) -> None:
        with self._lock:
            for n, proc in enumerate(self.procs):
                if proc.poll() is not None:
                    processes.stop(proc, grace=0)
                    self.procs[n] = self._start(n)

    def _is_ready(self, n: int) -> bool:
        if not self._ready[n]:
            offset, started = self._since[n]
            liveness = self.liveness_path(n)
            if liveness.exists() and liveness.stat().st_mtime >= started:
                with self.log_path(n).open("rb") as log:
                    log.seek(offset)
                    self._ready[n] = b" ready." in log.read()
        return self._ready[n]

    def ready(self) -> list[subprocess.Popen]:
        """The workers that are ready (and alive)."""
        with self._lock:
            return [proc for n, proc in enumerate(self.procs) if proc.poll() is None and self._is_ready(n)]

    def all_ready(self) -> bool:
        return len(self.ready()) == self.count

    def stop(self) -> None:
        """Every worker (a paused one resumed first) and the restarted ones' predecessors, by PID."""
        with self._lock:
            self.stack.stop_all()


class Say:
    """Print a line and append it to soak.log in the log folder, beside the workers' logs it explains."""

    def __init__(self, workdir: Path):
        self.path = workdir / "soak.log"
        self._lock = threading.Lock()  # the chaos thread says things too

    def __call__(self, line: str) -> None:
        with self._lock:
            print(line, flush=True)
            with self.path.open("a") as log:
                log.write(line + "\n")


def _raise_exit(signum, frame):
    raise SystemExit(128 + signum)  # SIGTERM: unwind through the finally blocks like Ctrl-C


def main() -> int:
    tasks = env_int("SOAK_TASKS", 2000)
    eta_tasks = env_int("SOAK_ETA_TASKS", max(1, tasks // 100))
    expired_tasks = env_int("SOAK_EXPIRED_TASKS", max(1, tasks // 100))
    # Long enough that a kill usually lands mid-task: the worker drains 20 ms tasks too fast to be hit.
    task_seconds = env_float("SOAK_TASK_SECONDS", 0.2)
    timeout = env_int("SOAK_TIMEOUT", max(1200, tasks))
    eta_ahead = env_float("SOAK_ETA_AHEAD_SECONDS", ETA_AHEAD_SECONDS)
    use_proxy = env_int("SOAK_FAULTS", 1) != 0
    settings_ = chaos_settings()
    seed = env_int("SOAK_SEED", 1)
    rng = random.Random(seed)  # noqa: S311 (choosing victims, not secrets); the chaos thread's own
    eta_rng = random.Random(seed + 1)  # noqa: S311 (the main thread's)
    if not 0 <= eta_tasks + expired_tasks <= tasks:
        raise SystemExit(f"soak: SOAK_ETA_TASKS + SOAK_EXPIRED_TASKS must be between 0 and SOAK_TASKS ({tasks})")
    signal.signal(signal.SIGTERM, _raise_exit)
    workdir = Path(tempfile.mkdtemp(prefix="celery-sqs-soak-"))
    say = Say(workdir)
    say(f"soak: logs in {workdir}")
    port = processes.free_port()
    endpoint = f"http://127.0.0.1:{port}"
    proxy = FaultProxy(port, http=True).start() if use_proxy else None
    worker_endpoint = proxy.url if proxy is not None else endpoint
    env = {
        "DJANGO_SETTINGS_MODULE": "api.settings.local",
        "QUEUE_TOPOLOGY": str(REPO_ROOT / "queues.yml"),
        "QUEUE_TOPOLOGY_PROFILE": "soak",
        "SQS_ENDPOINT_URL": worker_endpoint,  # the publisher (this process) and the workers: through the proxy
        "SQLITE_PATH": str(workdir / "soak.sqlite3"),
        "DATABASE_URL": env_str("SOAK_DATABASE_URL", ""),
        "PYTHONUNBUFFERED": "1",
        "PATH": processes.venv_path(),
    }
    os.environ.update(env)
    stack = LocalStack(workdir, env=env, grace=5)

    import django

    django.setup()
    from django.conf import settings
    from django.db import OperationalError
    from django.db.models import Count

    from api.jobs.models import Effect
    from devstack.queues import dlq_url, queue_depth
    from devstack.soak_publish import dlq_task_ids, publish_stock_eta
    from workers.celery_app import app
    from workers.models import DiscardedMessage, ExecutionState, TaskExecution

    spec = settings.QUEUE_TOPOLOGY.queue("default")
    lease = spec.time_limit + settings.QUEUE_TOPOLOGY.visibility_margin_seconds
    workers = Workers(stack, WORKERS)
    chaos: Chaos | None = None
    started = time.monotonic()
    deadline = started + timeout
    try:
        stack.start_emulator(port)
        urls = stack.create_queues(settings.QUEUE_TOPOLOGY, endpoint_url=endpoint)
        dlq = dlq_url(settings.QUEUE_TOPOLOGY, "default", endpoint_url=endpoint)
        stack.migrate()

        ids = [str(uuid.uuid4()) for _ in range(tasks)]
        expired_ids = set(ids[:expired_tasks])
        eta_ids = set(ids[expired_tasks : expired_tasks + eta_tasks])
        expected = {task_id: 0 if task_id in expired_ids else 1 for task_id in ids}
        runnable = tasks - expired_tasks

        workers.start()

        def publish(task_id: str) -> None:
            if task_id in eta_ids:
                # A stock Celery producer's ETA (a header, no DelaySeconds), further ahead than the visibility:
                # the worker must hop it back into SQS rather than hold it. Published near the queue's head, far
                # enough ahead that it is not yet due when a worker reaches it.
                eta = datetime.now(UTC) + timedelta(seconds=eta_ahead + eta_rng.uniform(0, eta_ahead))
                publish_stock_eta(endpoint, urls["default"], task_id, key=task_id[:8], seconds=task_seconds, eta=eta)
                say(f"soak: {task_id} published by a stock producer, due {eta:%H:%M:%S,%f}"[:-3])
                return
            extra = {"expires": datetime.now(UTC) - timedelta(minutes=1)} if task_id in expired_ids else {}
            kwargs = {"key": task_id[:8], "seconds": task_seconds}
            for attempt in range(PUBLISH_ATTEMPTS):  # as the outbox relay would: again, same task id
                try:
                    app.send_task("jobs.record_effect", kwargs=kwargs, task_id=task_id, **extra)
                    return
                except Exception as exc:  # noqa: BLE001 (a fault the proxy injected; the last one is raised)
                    if attempt == PUBLISH_ATTEMPTS - 1:
                        raise
                    say(f"soak: publish of {task_id} failed ({type(exc).__name__}), again")
                    time.sleep(1)

        def done_count() -> int:
            return TaskExecution.objects.filter(task_id__in=ids, state=ExecutionState.DONE).count()

        def depth() -> int:
            return sum(queue_depth(urls["default"], endpoint_url=endpoint).values())

        sliced = [task_id for task_id in ids if task_id not in eta_ids]
        published = sliced_out = 0
        eta_waiting = bool(eta_ids)  # until published, near the queue's head (ETA_FRONT)
        last_report = 0.0
        finished = False
        while time.monotonic() < deadline:
            # The first slice goes out at once (an empty queue's first long poll would take 20 s to prove the
            # workers poll); the first disruption waits until both workers are ready, and so do the ETA tasks
            # (due 45 s or more after they are published: published earlier, they could be due before a slow start-up
            # ends), which also wait for the queue to drain near its head, no slice going out meanwhile.
            if chaos is None and workers.all_ready():
                say(f"soak: {time.monotonic() - started:5.0f} s both workers ready and polling")
                chaos = Chaos(settings_, rng=rng, workers=workers.ready, proxy=proxy, lease_seconds=lease, log=say)
                chaos.start()
            elif chaos is None and time.monotonic() - started > READY_TIMEOUT:
                raise SystemExit(f"soak: the workers were not ready after {READY_TIMEOUT} s; see {workdir}")
            if eta_waiting and chaos is not None and depth() <= ETA_FRONT:
                for task_id in eta_ids:
                    publish(task_id)
                published += len(eta_ids)
                eta_waiting = False
            # Publish in slices while the queue is shallow: the emulator's receive slows as the queue grows.
            if sliced_out < len(sliced) and not (eta_waiting and chaos is not None) and depth() < SHALLOW:
                batch = sliced[sliced_out : sliced_out + SLICE]
                for task_id in batch:
                    publish(task_id)
                sliced_out += len(batch)
                published += len(batch)
            workers.restart_dead()
            try:
                done = done_count()
            except OperationalError:  # SQLite busy for longer than its timeout (a paused worker's write lock)
                done = -1
            now = time.monotonic()
            if now - last_report > 5:
                last_report = now
                tally = chaos.tally if chaos is not None else Tally()
                say(
                    f"soak: {now - started:5.0f} s published={published} done={done} kills={tally.kills} "
                    f"pauses={tally.pauses} ({tally.long_pauses} past the lease) faults={tally.fault_episodes}"
                )
            if published == tasks and done >= runnable and depth() == 0:
                finished = True
                break
            time.sleep(0.2)
        if not finished:
            say(f"soak: timed out after {timeout} s")
        # End the disruptions, then give a resumed worker a lease's time to finish (or commit twice).
        if chaos is not None:
            chaos.close()
        settle = time.monotonic() + lease + 2
        while time.monotonic() < settle:
            workers.restart_dead()
            time.sleep(0.5)

        counts = dict(
            Effect.objects.filter(task_id__in=ids)
            .values_list("task_id")
            .annotate(n=Count("id"))
            .values_list("task_id", "n")
        )
        dead = dlq_task_ids(dlq, endpoint_url=endpoint)
        in_dlq = {task_id for task_id in dead if task_id}
        recorded = set(DiscardedMessage.objects.filter(task_id__in=expired_ids).values_list("task_id", flat=True))
        lost, duplicates = verdict(expected, counts, in_dlq=in_dlq, recorded=recorded)
        executions = sum(TaskExecution.objects.filter(task_id__in=ids).values_list("runs", flat=True))
        tally = chaos.tally if chaos is not None else Tally()
        faulted = proxy.snapshot()["faulted"] if proxy is not None else {}
        logs = [workers.log_path(n) for n in range(WORKERS)]
        result = {
            "tasks": tasks,
            "kills": tally.kills,
            "pauses": tally.pauses,
            "faults": sum(faulted.values()),
            "hops": count_log_lines(logs, HOP_MARK),
            "expired": count_log_lines(logs, EXPIRED_MARK),
            "dlq": len(dead),
            "executions": executions,
            "lost": lost,
            "duplicate_effects": duplicates,
        }
        say(
            f"soak: {time.monotonic() - started:.0f} s; {tally.long_pauses} of the pauses past the "
            f"{lease:g} s lease; {tally.fault_episodes} fault episodes, requests faulted by action: "
            f"{dict(faulted)}; stale runs refused by the fencing: {count_log_lines(logs, *FENCED_MARKS)}; "
            f"eta tasks={len(eta_ids)} expired tasks={len(expired_ids)}"
        )
    finally:
        if chaos is not None:
            chaos.close()
        workers.stop()  # and the emulator: the stack's every process
        if proxy is not None:
            proxy.stop()
        say(f"soak: logs in {workdir}")
    say(last_line(result))
    return 0 if lost == 0 and duplicates == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
