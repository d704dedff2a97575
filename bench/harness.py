"""What every benchmark shares: sizes, a stack of its own (emulator, queues, database), workers, progress, results."""

from __future__ import annotations

import contextlib
import json
import os
import platform
import re
import shutil
import signal
import statistics
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

from bench.cpu_placement import Placement, calling_thread_on, placement, process_on
from core.env import env_bool, env_float, env_int
from devstack import processes
from devstack.processes import REPO_ROOT
from devstack.stack import LocalStack, Processes, local_stack

RESULTS_DIR = REPO_ROOT / "bench" / "results"
# The project's worker as shipped, and as it was before issue E item 7 (kombu's own pace), side by side.
WORKER_VARIANTS: dict[str, dict[str, str]] = {
    "worker": {},  # fetch when a slot frees, deletes in batches (the defaults)
    "worker_fetch_only": {"WORKER_DELETE_BATCH_SECONDS": "0"},  # one DeleteMessage per ack, as kombu does
    "worker_before": {"WORKER_FETCH_WHEN_SLOT_FREES": "0", "WORKER_DELETE_BATCH_SECONDS": "0"},  # kombu's pace
    "worker_one_receive": {"WORKER_RECEIVE_AHEAD": "0"},  # before issue L item 2: one receive per queue at a time
    # Receive ahead without the coalesce window: a receive for every slot freed while one is out (before the window).
    "worker_eager_ahead": {"WORKER_RECEIVE_AHEAD_COALESCE_MS": "0"},
    # Receive ahead for free slots only, none for the busy ones predicted free (before the slot forecast).
    "worker_no_predict": {"WORKER_RECEIVE_AHEAD_PREDICT": "0"},
}
WORKER_READY = " ready."
PROFILE = "bench"
# The worker as a short-task group would run it: the bench profile plus that group's prefetch_multiplier.
PREFETCH_PROFILE = "bench-prefetch"
PREFETCH_MULTIPLIER = env_int("BENCH_PREFETCH_MULTIPLIER", 3)
PREFETCH_VARIANT = f"worker_prefetch_{PREFETCH_MULTIPLIER}"
WORKER_VARIANTS[PREFETCH_VARIANT] = {"QUEUE_TOPOLOGY_PROFILE": PREFETCH_PROFILE}


def is_smoke() -> bool:
    """`make bench-smoke`: every benchmark at a tiny size, to prove it still runs (figures mean nothing)."""
    return env_bool("BENCH_SMOKE", False)


def injected_latency_ms() -> float:
    """The delay the latency proxy adds to each request of this run (0: clients talk to the emulator directly)."""
    from bench.latency_proxy import ENV

    value = env_float(ENV, 0.0)
    if value < 0:
        raise ValueError(f"{ENV} must be 0 or more, got {value:g}")
    return value


def results_path(name: str, latency_ms: float, *, smoke: bool) -> Path:
    """bench/results/<name>.json at 0 ms added, <name>.latency-<ms>ms.json with a delay (smoke runs: smoke/)."""
    folder = RESULTS_DIR / "smoke" if smoke else RESULTS_DIR
    return folder / (f"{name}.json" if not latency_ms else f"{name}.latency-{latency_ms:g}ms.json")


def size(env_var: str, full: int, smoke: int) -> int:
    """A benchmark size: the environment variable if set, else the full or the smoke default."""
    return env_int(env_var, smoke if is_smoke() else full)


class Progress:
    """A progress line at most every `every` seconds, so a long run shows it is alive."""

    def __init__(self, label: str, every: float = 2.0):
        self.label, self.every, self._last = label, every, 0.0

    def __call__(self, text: str, *, force: bool = False) -> None:
        now = time.monotonic()
        if force or now - self._last >= self.every:
            self._last = now
            print(f"  [{self.label}] {text}", flush=True)


def percentile(values: list[float], pct: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    index = min(len(ordered) - 1, max(0, round(pct / 100 * (len(ordered) - 1))))
    return ordered[index]


def summary_ms(seconds: list[float]) -> dict[str, float]:
    ms = [s * 1000 for s in seconds]
    return {
        "n": len(ms),
        "p50_ms": round(statistics.median(ms), 2),
        "p99_ms": round(percentile(ms, 99), 2),
        "mean_ms": round(statistics.fmean(ms), 2),
    }


def ratio(a: float, b: float) -> float | None:
    return round(a / b, 2) if b else None


def machine() -> dict[str, Any]:
    cpu = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


def write_results(name: str, results: dict[str, Any]) -> Path:
    """bench/results/<name>.json, or <name>.latency-<ms>ms.json (smoke runs: bench/results/smoke/, not committed).
    The results carry `injected_latency_ms`, so every figure and ratio says which latency it was taken at."""
    latency = injected_latency_ms()
    path = results_path(name, latency, smoke=is_smoke())
    path.parent.mkdir(parents=True, exist_ok=True)
    results = {"injected_latency_ms": latency, **results}
    document = {
        "benchmark": name,
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "smoke": is_smoke(),
        "machine": machine(),
        "results": results,
    }
    path.write_text(json.dumps(document, indent=2) + "\n")
    shown = path.relative_to(REPO_ROOT) if path.is_relative_to(REPO_ROOT) else path
    print(f"  results: {shown}", flush=True)
    return path


def print_table(title: str, header: list[str], rows: list[list[Any]]) -> None:
    cells = [[str(c) for c in header]] + [[("" if c is None else str(c)) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    print(f"\n{title}")
    for n, row in enumerate(cells):
        print("  " + "  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)))
        if n == 0:
            print("  " + "  ".join("-" * w for w in widths))
    print(flush=True)


def bench_topology(workdir: Path, overrides: dict[str, Any]) -> Path:
    """queues.yml with a `bench` profile laid over it: names and routes stay the topology's own. A second
    profile, `bench-prefetch`, also gives the `default` queue's worker group PREFETCH_MULTIPLIER."""
    raw = yaml.safe_load((REPO_ROOT / "queues.yml").read_text())
    group = next(name for name, g in raw["worker_groups"].items() if "default" in g["queues"])
    raw.setdefault("profiles", {})[PROFILE] = overrides
    raw["profiles"][PREFETCH_PROFILE] = {
        **overrides,
        "worker_groups": {group: {"prefetch_multiplier": PREFETCH_MULTIPLIER}},
    }
    path = workdir / "queues.bench.yml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


_LOG_TIME = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) .*Task [\w.]+\[[^\]]+\] (received|succeeded)")


@dataclass
class TaskSpan:
    """From a worker's log: tasks succeeded, and the time from the first receive to the last success."""

    received: int
    succeeded: int
    seconds: float


def task_span(log_path: Path) -> TaskSpan:
    """Read Celery's own per-task log lines, so worker start-up never counts as drain time."""
    first = last = None
    received = succeeded = 0
    for line in log_path.read_text(errors="replace").splitlines():
        match = _LOG_TIME.match(line)
        if not match:
            continue
        at = datetime.strptime(match.group(1), "%Y-%m-%d %H:%M:%S,%f")
        if match.group(2) == "received":
            received += 1
            first = first or at
        else:
            succeeded += 1
            last = at
    seconds = (last - first).total_seconds() if first and last else 0.0
    return TaskSpan(received=received, succeeded=succeeded, seconds=seconds)


def stat_cpu_seconds(stat: Path, *, reaped_children: bool = True) -> float | None:
    """User + system CPU in a /proc stat file (a process's or a thread's), its reaped children's too if asked;
    None once the process or thread is gone."""
    with contextlib.suppress(OSError, IndexError, ValueError):
        fields = stat.read_text().rsplit(")", 1)[1].split()
        # utime, stime, cutime, cstime are fields 14-17 of /proc/<pid>/stat (1-based, name included).
        return sum(int(v) for v in fields[11 : 15 if reaped_children else 13]) / os.sysconf("SC_CLK_TCK")
    return None


def own_cpu_seconds(pid: int) -> float:
    """User + system CPU of one process, its reaped children included (0.0 once it is gone)."""
    cpu = stat_cpu_seconds(Path(f"/proc/{pid}/stat"))
    return 0.0 if cpu is None else cpu


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process and its live children, plus what its reaped children used."""
    return sum(own_cpu_seconds(p) for p in [pid, *processes.children(pid)])


@contextlib.contextmanager
def filling_beside(fill: Callable[[], object] | None, *, timeout: float) -> Iterator[None]:
    """Run `fill` (None: nothing) in a thread while the body drains, and wait up to `timeout` for it after."""
    filler = threading.Thread(target=fill, name="bench-fill", daemon=True) if fill else None
    if filler is not None:
        filler.start()
    yield
    if filler is not None:
        filler.join(timeout)


@dataclass
class Stack:
    """A benchmark's view of its private local stack (devstack/stack.py): the emulator, the topology's queues and
    a SQLite database, its processes' logs under `workdir`."""

    local: LocalStack
    endpoint: str  # what clients talk to: the counting proxy when there is one
    moto_endpoint: str  # the emulator itself: set-up and checks, never delayed
    urls: dict[str, str] = field(default_factory=dict)
    # The emulator as measured clients reach it: the latency proxy when the run injects a delay, else moto itself.
    sqs_endpoint: str = ""
    proxy: Any = None  # the counting proxy, when the benchmark asked for one
    # The contender under test on a CPU of its own, the rest elsewhere (bench/cpu_placement.py); None: the scheduler's.
    placement: Placement | None = None

    @property
    def workdir(self) -> Path:
        return self.local.workdir

    @property
    def env(self) -> dict[str, str]:
        return self.local.env

    def start(
        self,
        name: str,
        argv: list[str],
        *,
        env: dict[str, str] | None = None,
        ready: str | None = None,
        timeout: float = 60,
    ) -> subprocess.Popen:
        handle = self.local.start(name, argv, env=env, ready=ready, timeout=timeout, interval=0.02)
        handle.proc.log_path = handle.log_path  # type: ignore[attr-defined]
        return handle.proc

    def start_worker(
        self, *, queues: str = "default", concurrency: int = 4, env: dict[str, str] | None = None, name: str = "worker"
    ) -> subprocess.Popen:
        """The same command ECS runs (bin/start-worker)."""
        worker_env = {"WORKER_QUEUES": queues, "WORKER_CONCURRENCY": str(concurrency), **(env or {})}
        with self.as_contender():  # the worker and the pool children it forks inherit the contender's CPU
            return self.start(name, [str(REPO_ROOT / "bin" / "start-worker")], env=worker_env, ready=WORKER_READY)

    def as_contender(self):
        """Run the calling thread (a raw loop) on the contender's CPU, when the stack places one."""
        return calling_thread_on(self.placement.contender if self.placement else None)

    def off_contender(self, pid: int | None):
        """Move a process the stack did not start (the Redis server) off the contender's CPU meanwhile."""
        return process_on(pid, self.placement.rest if self.placement else None)

    def placement_info(self) -> dict[str, Any]:
        return {"pinned": self.placement is not None, **(self.placement.describe() if self.placement else {})}

    def stop(self, proc: subprocess.Popen, *, grace: float = 10, first: int = signal.SIGKILL) -> None:
        """Stop a process of the stack by PID: SIGKILL unless told otherwise, as no benchmark measures a shutdown
        it does not start itself (a graceful stop of a worker costs seconds each, for nothing measured)."""
        processes.stop(proc, grace=grace, first=first)

    def fresh_queues(self) -> None:
        """Forget every queue and message, then create the topology's queues again: a stopped worker's
        long poll lives on in the emulator for up to 20 s and would take a message of the next phase."""
        from django.conf import settings

        self.urls = self.local.fresh_queues(settings.QUEUE_TOPOLOGY)

    def depth(self, key: str = "default") -> dict[str, int]:
        from devstack.queues import queue_depth

        return queue_depth(self.urls[key], endpoint_url=self.moto_endpoint)

    def total(self, key: str = "default") -> int:
        return sum(self.depth(key).values())


def start_latency_proxy(local: Processes, moto_port: int, latency_ms: float, *, keep_alive: bool = False) -> str:
    """The endpoint measured clients use: moto itself at 0 ms (unless `keep_alive`), else a latency proxy the stack
    started. moto's werkzeug server answers every request with `Connection: close`, so each request of a client
    talking to it directly opens a new TCP connection; the proxy keeps its clients' connections open, as SQS does."""
    if not latency_ms and not keep_alive:
        return f"http://127.0.0.1:{moto_port}"
    from bench.latency_proxy import argv

    port = processes.free_port()
    local.start("latency-proxy", argv(moto_port, latency_ms, port), ready="latency proxy", timeout=30, interval=0.05)
    return f"http://127.0.0.1:{port}"


def _raise_interrupt(*_args) -> None:
    raise KeyboardInterrupt


@contextlib.contextmanager
def stack(
    name: str,
    *,
    topology: dict[str, Any] | None = None,
    proxy: bool = False,
    extra_env: dict[str, str] | None = None,
    keep_alive: bool = False,
    pin: bool = False,
) -> Iterator[Stack]:
    """Start a private stack, set this process up as its Django client, and stop everything (by PID) after.
    `keep_alive`: measured clients reach the emulator through the proxy at 0 ms too (start_latency_proxy).
    `pin`: this process and all it starts run off the contender's CPU, but for the workers and raw loops measured
    (bench/cpu_placement.py)."""
    # SIGTERM (a CI timeout, `kill`) must run the clean-up below like Ctrl-C does, not orphan the processes.
    signal.signal(signal.SIGTERM, _raise_interrupt)
    workdir = Path(tempfile.mkdtemp(prefix=f"celery-sqs-bench-{name}-"))
    env = {
        "DJANGO_SETTINGS_MODULE": "api.settings.local",
        "QUEUE_TOPOLOGY": str(bench_topology(workdir, topology or {})),
        "QUEUE_TOPOLOGY_PROFILE": PROFILE,
        "SQLITE_PATH": str(workdir / "bench.sqlite3"),
        "DATABASE_URL": "",
        "WORKER_LIVENESS_FILE": str(workdir / "worker-liveness"),
        "AWS_ACCESS_KEY_ID": "bench",
        "AWS_SECRET_ACCESS_KEY": "bench",
        "AWS_DEFAULT_REGION": "us-east-1",
        # The emulator's CloudWatch metrics walk every queue's messages: not during a measurement.
        "LOCAL_SQS_METRICS_SECONDS": "3600",
        **(extra_env or {}),
    }
    counting = None
    place = placement() if pin else None
    affinity = os.sched_getaffinity(0)
    try:
        if place is not None:
            os.sched_setaffinity(0, place.rest)  # before the emulator and proxies start: they inherit it
        # At the end, SIGKILL: each benchmark measures the shutdowns it cares about itself, and a graceful stop of
        # every worker would cost seconds per process for nothing.
        with local_stack(workdir, env=env, emulator=False, first=signal.SIGKILL, grace=5) as local:
            moto_endpoint = local.start_emulator()
            moto_port = int(moto_endpoint.rsplit(":", 1)[1])
            sqs_endpoint = start_latency_proxy(local, moto_port, injected_latency_ms(), keep_alive=keep_alive)
            endpoint = sqs_endpoint
            if proxy:
                from bench.counting_proxy import CountingProxy

                counting = CountingProxy(sqs_endpoint)
                counting.start()
                endpoint = counting.endpoint
            local.env["SQS_ENDPOINT_URL"] = endpoint
            os.environ.update(local.env)
            import django

            django.setup()
            from django.conf import settings

            urls = local.create_queues(settings.QUEUE_TOPOLOGY, endpoint_url=moto_endpoint)
            local.migrate()
            yield Stack(
                local=local,
                endpoint=endpoint,
                moto_endpoint=moto_endpoint,
                urls=urls,
                sqs_endpoint=sqs_endpoint,
                proxy=counting,
                placement=place,
            )
    finally:
        if counting is not None:
            counting.stop()
        os.sched_setaffinity(0, affinity)
        if env_bool("BENCH_KEEP_WORKDIR", False):
            print(f"  logs kept in {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)


def wait_until(
    predicate, *, timeout: float, what: str, progress: Progress | None = None, status=None, interval: float = 0.1
):
    """processes.wait_for with a progress line."""

    def check():
        value = predicate()
        if not value and progress and status:
            progress(status())
        return value

    return processes.wait_for(check, timeout=timeout, interval=interval, what=what)


def publish_tasks(bench: Stack, task: str, n: int, progress: Progress) -> None:
    """Fresh queues, then n tasks published the way Django does (app.send_task through the project's transport)."""
    import uuid

    from workers.celery_app import app

    bench.fresh_queues()
    for i in range(n):
        app.send_task(task, task_id=str(uuid.uuid4()))
        progress(f"published {i + 1}/{n}")


def wait_for_worker_drain(worker, n: int, progress: Progress, *, label: str, pending, timeout: float) -> None:
    """Until the worker's log shows n tasks succeeded and `pending()` (the broker's count) is 0."""
    wait_until(
        lambda: task_span(worker.log_path).succeeded >= n and pending() == 0,
        timeout=timeout,
        what=f"{label} to run {n} tasks",
        progress=progress,
        status=lambda: f"{label}: {task_span(worker.log_path).succeeded}/{n}",
        interval=0.2,
    )


def raw_boto3_drain(endpoint: str, url: str, n: int, progress: Progress, *, timeout: float) -> int:
    """The floor every benchmark compares with: receive 10 (long poll 1 s), delete the batch, no work at all.
    Returns how many messages it deleted (n, unless `timeout` ran out)."""
    from devstack.queues import sqs_client

    sqs = sqs_client(endpoint)
    done, deadline = 0, time.monotonic() + timeout
    while done < n and time.monotonic() < deadline:
        messages = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=1).get("Messages", [])
        if messages:
            sqs.delete_message_batch(
                QueueUrl=url,
                Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(messages)],
            )
            done += len(messages)
        progress(f"raw boto3: {done}/{n}")
    return done
