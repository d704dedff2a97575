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
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

from devstack import processes
from devstack.processes import REPO_ROOT

RESULTS_DIR = REPO_ROOT / "bench" / "results"
# The project's worker as shipped, and as it was before issue E item 7 (kombu's own pace), side by side.
WORKER_VARIANTS: dict[str, dict[str, str]] = {
    "worker": {},  # fetch when a slot frees, deletes in batches (the defaults)
    "worker_fetch_only": {"WORKER_DELETE_BATCH_SECONDS": "0"},  # one DeleteMessage per ack, as kombu does
    "worker_before": {"WORKER_FETCH_WHEN_SLOT_FREES": "0", "WORKER_DELETE_BATCH_SECONDS": "0"},  # kombu's pace
    "worker_one_receive": {"WORKER_RECEIVE_AHEAD": "0"},  # before issue L item 2: one receive per queue at a time
}
WORKER_READY = " ready."
PROFILE = "bench"
# The worker as a short-task group would run it: the bench profile plus that group's prefetch_multiplier.
PREFETCH_PROFILE = "bench-prefetch"
PREFETCH_MULTIPLIER = int(os.environ.get("BENCH_PREFETCH_MULTIPLIER", "3"))
PREFETCH_VARIANT = f"worker_prefetch_{PREFETCH_MULTIPLIER}"
WORKER_VARIANTS[PREFETCH_VARIANT] = {"QUEUE_TOPOLOGY_PROFILE": PREFETCH_PROFILE}


def is_smoke() -> bool:
    """`make bench-smoke`: every benchmark at a tiny size, to prove it still runs (figures mean nothing)."""
    return os.environ.get("BENCH_SMOKE", "") not in ("", "0")


def injected_latency_ms() -> float:
    """The delay the latency proxy adds to each request of this run (0: clients talk to the emulator directly)."""
    from bench.latency_proxy import ENV

    value = float(os.environ.get(ENV) or 0)
    if value < 0:
        raise ValueError(f"{ENV} must be 0 or more, got {value:g}")
    return value


def results_path(name: str, latency_ms: float, *, smoke: bool) -> Path:
    """bench/results/<name>.json at 0 ms added, <name>.latency-<ms>ms.json with a delay (smoke runs: smoke/)."""
    folder = RESULTS_DIR / "smoke" if smoke else RESULTS_DIR
    return folder / (f"{name}.json" if not latency_ms else f"{name}.latency-{latency_ms:g}ms.json")


def size(env_var: str, full: int, smoke: int) -> int:
    """A benchmark size: the environment variable if set, else the full or the smoke default."""
    value = os.environ.get(env_var)
    return int(value) if value else (smoke if is_smoke() else full)


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


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process and its live children, plus what its reaped children used."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for p in [pid, *processes.children(pid)]:
        with contextlib.suppress(OSError, IndexError, ValueError):
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            # utime, stime, cutime, cstime are fields 14-17 of /proc/<pid>/stat (1-based, name included).
            total += sum(int(v) for v in fields[11:15]) / ticks
    return total


@dataclass
class Stack:
    """A moto server, the topology's queues and a SQLite database, all private to one benchmark run."""

    workdir: Path
    endpoint: str  # what clients talk to: the counting proxy when there is one
    moto_endpoint: str  # the emulator itself: set-up and checks, never delayed
    env: dict[str, str]
    urls: dict[str, str] = field(default_factory=dict)
    started: list[subprocess.Popen] = field(default_factory=list)
    # The emulator as measured clients reach it: the latency proxy when the run injects a delay, else moto itself.
    sqs_endpoint: str = ""

    def start(
        self,
        name: str,
        argv: list[str],
        *,
        env: dict[str, str] | None = None,
        ready: str | None = None,
        timeout: float = 60,
    ) -> subprocess.Popen:
        log_path = self.workdir / f"{name}-{len(self.started)}.log"
        proc = processes.start(argv, env={**self.env, **(env or {})}, stdout=log_path.open("wb"))
        proc.log_path = log_path  # type: ignore[attr-defined]
        self.started.append(proc)
        if ready:

            def is_ready() -> bool:
                if proc.poll() is not None:
                    raise RuntimeError(f"{name} exited with {proc.returncode}:\n{log_path.read_text()[-3000:]}")
                return ready in log_path.read_text(errors="replace")

            processes.wait_for(is_ready, timeout=timeout, interval=0.02, what=f"{name} to be ready")
        return proc

    def start_worker(
        self, *, queues: str = "default", concurrency: int = 4, env: dict[str, str] | None = None, name: str = "worker"
    ) -> subprocess.Popen:
        """The same command ECS runs (bin/start-worker)."""
        worker_env = {"WORKER_QUEUES": queues, "WORKER_CONCURRENCY": str(concurrency), **(env or {})}
        return self.start(name, [str(REPO_ROOT / "bin" / "start-worker")], env=worker_env, ready=WORKER_READY)

    def stop(self, proc: subprocess.Popen, *, grace: float = 10) -> None:
        processes.stop(proc, grace=grace)

    def fresh_queues(self) -> None:
        """Forget every queue and message, then create the topology's queues again: a stopped worker's
        long poll lives on in the emulator for up to 20 s and would take a message of the next phase."""
        from django.conf import settings

        from devstack.moto_server import reset
        from devstack.queues import create_queues

        reset(self.moto_endpoint)
        self.urls = create_queues(settings.QUEUE_TOPOLOGY, endpoint_url=self.moto_endpoint)

    def depth(self, key: str = "default") -> dict[str, int]:
        from devstack.queues import queue_depth

        return queue_depth(self.urls[key], endpoint_url=self.moto_endpoint)

    def total(self, key: str = "default") -> int:
        return sum(self.depth(key).values())


def start_latency_proxy(moto_port: int, latency_ms: float, workdir: Path) -> tuple[str, subprocess.Popen | None]:
    """(the endpoint measured clients use, the proxy's process): moto itself at 0 ms, else a latency proxy."""
    if not latency_ms:
        return f"http://127.0.0.1:{moto_port}", None
    from bench.latency_proxy import argv

    port = processes.free_port()
    log = workdir / "latency-proxy.log"
    proc = processes.start(argv(moto_port, latency_ms, port), stdout=log.open("wb"))
    try:
        processes.wait_for(
            lambda: proc.poll() is None and "latency proxy" in log.read_text(errors="replace"),
            timeout=30,
            interval=0.05,
            what="the latency proxy to listen",
        )
    except Exception:
        processes.stop(proc, grace=2)
        raise
    return f"http://127.0.0.1:{port}", proc


def _raise_interrupt(*_args) -> None:
    raise KeyboardInterrupt


@contextlib.contextmanager
def stack(
    name: str, *, topology: dict[str, Any] | None = None, proxy: bool = False, extra_env: dict[str, str] | None = None
) -> Iterator[Stack]:
    """Start a private stack, set this process up as its Django client, and stop everything (by PID) after."""
    # SIGTERM (a CI timeout, `kill`) must run the clean-up below like Ctrl-C does, not orphan the processes.
    signal.signal(signal.SIGTERM, _raise_interrupt)
    workdir = Path(tempfile.mkdtemp(prefix=f"celery-sqs-bench-{name}-"))
    moto_port = processes.free_port()
    moto_endpoint = f"http://127.0.0.1:{moto_port}"
    env = {
        "DJANGO_SETTINGS_MODULE": "api.settings.local",
        "QUEUE_TOPOLOGY": str(bench_topology(workdir, topology or {})),
        "QUEUE_TOPOLOGY_PROFILE": PROFILE,
        "SQLITE_PATH": str(workdir / "bench.sqlite3"),
        "DATABASE_URL": "",
        "WORKER_HEARTBEAT_FILE": str(workdir / "worker-heartbeat"),
        "AWS_ACCESS_KEY_ID": "bench",
        "AWS_SECRET_ACCESS_KEY": "bench",
        "AWS_DEFAULT_REGION": "us-east-1",
        "PYTHONUNBUFFERED": "1",
        "PATH": processes.venv_path(),
        # The emulator's CloudWatch metrics walk every queue's messages: not during a measurement.
        "LOCAL_SQS_METRICS_SECONDS": "3600",
        **(extra_env or {}),
    }
    from devstack.moto_server import start_moto_server, wait_until_up

    os.environ["LOCAL_SQS_METRICS_SECONDS"] = env["LOCAL_SQS_METRICS_SECONDS"]
    moto = start_moto_server(moto_port, stdout=(workdir / "moto.log").open("wb"))
    counting = delay = None
    try:
        wait_until_up(moto_endpoint, moto)
        sqs_endpoint, delay = start_latency_proxy(moto_port, injected_latency_ms(), workdir)
        endpoint = sqs_endpoint
        if proxy:
            from bench.counting_proxy import CountingProxy

            counting = CountingProxy(sqs_endpoint)
            counting.start()
            endpoint = counting.endpoint
        env["SQS_ENDPOINT_URL"] = endpoint
        os.environ.update(env)
        import django

        django.setup()
        from django.conf import settings

        from devstack.queues import create_queues

        urls = create_queues(settings.QUEUE_TOPOLOGY, endpoint_url=moto_endpoint)
        subprocess.run([sys.executable, "manage.py", "migrate", "-v", "0"], check=True, cwd=REPO_ROOT, env=os.environ)
        bench = Stack(
            workdir=workdir,
            endpoint=endpoint,
            moto_endpoint=moto_endpoint,
            env=env,
            urls=urls,
            sqs_endpoint=sqs_endpoint,
        )
        bench.proxy = counting  # type: ignore[attr-defined]
        try:
            yield bench
        finally:
            for proc in reversed(bench.started):
                processes.stop(proc, grace=10)
    finally:
        if counting is not None:
            counting.stop()
        if delay is not None:
            processes.stop(delay, grace=5)
        processes.stop(moto, grace=5)
        if os.environ.get("BENCH_KEEP_WORKDIR"):
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
