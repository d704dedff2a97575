"""Where a worker's CPU goes: BENCH_PROFILE_TASKS (1000) no-op tasks drained by the project's worker on SQS and by
the same worker on Celery's Redis transport, each sampled by py-spy; CPU per 1000 tasks (main process and pool
children apart) and the top functions of each, side by side in one run (issue 17 item 3). The SQS workers' connections
are kept alive by a proxy, as SQS keeps them (BENCH_PROFILE_KEEP_ALIVE=0: moto directly, a new one per request).
Each worker runs on a CPU of its own, the emulator, proxy, producers and the Redis server on the others
(bench/cpu_placement.py; BENCH_PIN_CONTENDER=0: wherever the scheduler puts them).

    python -m bench.cpu_profile            # BENCH_SMOKE=1 for a tiny run; BENCH_PROFILE_ROUNDS (2) rounds
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

from bench import redis_broker
from bench.cpu_placement import thread_ids
from bench.harness import (
    Progress,
    Stack,
    filling_beside,
    is_smoke,
    own_cpu_seconds,
    print_table,
    publish_tasks,
    ratio,
    size,
    stack,
    stat_cpu_seconds,
    wait_for_worker_drain,
    write_results,
)
from devstack import processes
from devstack.processes import REPO_ROOT

TASK = "jobs.noop"
CONCURRENCY = int(os.environ.get("BENCH_CONCURRENCY", "4"))
TOP = int(os.environ.get("BENCH_PROFILE_TOP", "25"))
DRAIN_TIMEOUT = 1800
PY_SPY = Path(sys.executable).with_name("py-spy")
# BENCH_PROFILE_PY_SPY=0: CPU figures only, both queues filled before the worker starts (bench/throughput.py's way).
PROFILING = os.environ.get("BENCH_PROFILE_PY_SPY", "1") != "0" and PY_SPY.exists()
REDIS = "celery on redis"
# The same Redis worker fed at the pace the shipped SQS worker drained in the same round: its pool children then wait
# between tasks as the SQS worker's do (a child woken per task pays for the wake), so the two ratios tell the broker's
# cost from the pace's. BENCH_PROFILE_PACED=0 leaves it out.
REDIS_PACED = "celery on redis paced"
# BENCH_PROFILE_STEADY_DEPTH=20: the SQS workers drain while a producer holds the queue at 20 visible messages
# (bench/steady_depth.py), so the emulator's scan of a deep queue does not set their pace; 0 (the default): the queue
# is filled first, as before.
STEADY_DEPTH = int(os.environ.get("BENCH_PROFILE_STEADY_DEPTH", "0"))
PACED = os.environ.get("BENCH_PROFILE_PACED", "1") != "0"
# BENCH_PROFILE_VARIANTS="name:VAR=value,VAR=value;name2:...": more SQS workers, each with these environment
# variables, drained in the same rounds (e.g. "window_0.5:WORKER_DELETE_BATCH_SECONDS=0.5").
VARIANTS_ENV = "BENCH_PROFILE_VARIANTS"
# The SQS workers reach the emulator through a proxy that keeps their connections alive, as SQS does (moto's
# werkzeug closes every connection after one answer: a new TCP connection per request, which SQS never costs);
# BENCH_PROFILE_KEEP_ALIVE=0: they talk to moto directly, as before 2026-12-02.
KEEP_ALIVE = os.environ.get("BENCH_PROFILE_KEEP_ALIVE", "1") != "0"


def variants(text: str | None = None) -> dict[str, dict[str, str]]:
    """The SQS workers to drain: the worker as shipped ("sqs_worker"), then each variant of VARIANTS_ENV."""
    text = os.environ.get(VARIANTS_ENV, "") if text is None else text
    chosen: dict[str, dict[str, str]] = {"sqs_worker": {}}
    for part in filter(None, (p.strip() for p in text.split(";"))):
        name, sep, assignments = part.partition(":")
        pairs = [a.partition("=") for a in assignments.split(",") if a.strip()]
        if not sep or not name.strip() or not pairs or any(not eq or not k.strip() for k, eq, _ in pairs):
            raise ValueError(f"{VARIANTS_ENV}: {part!r} is not name:VAR=value[,VAR=value]")
        chosen[name.strip()] = {k.strip(): v.strip() for k, _, v in pairs}
    return chosen


def cpu_split(pid: int) -> tuple[float, float]:
    """(the main process's CPU, its live pool children's together)."""
    main = own_cpu_seconds(pid)
    children = sum(own_cpu_seconds(child) for child in processes.children(pid))
    return main, children


def thread_cpu(pid: int) -> dict[int, float]:
    """User + system CPU seconds of each thread of one process, by OS thread id."""
    out = {}
    for tid in thread_ids(pid):
        if (cpu := stat_cpu_seconds(Path(f"/proc/{pid}/task/{tid}/stat"), reaped_children=False)) is not None:
            out[tid] = cpu
    return out


def thread_names(pid: int) -> dict[int, str]:
    """OS thread id → Python thread name (py-spy dump; the pool children's threads are not the main process's)."""
    if not PY_SPY.exists():
        return {}
    dump = subprocess.run(
        [str(PY_SPY), "dump", "--json", "--nonblocking", "--pid", str(pid)], capture_output=True, text=True, timeout=60
    )
    try:
        return {t["os_thread_id"]: t.get("thread_name") or "?" for t in json.loads(dump.stdout)}
    except (ValueError, KeyError, TypeError):
        return {}


def per_thread(before: dict[int, float], after: dict[int, float], names: dict[int, str], n: int) -> dict[str, float]:
    """CPU seconds per 1000 tasks of each thread of the main process, by name (threads gone by the end: "ended")."""
    spent: dict[str, float] = {}
    for tid in before.keys() | after.keys():
        name = names.get(tid, "ended" if tid not in after else f"thread {tid}")
        spent[name] = spent.get(name, 0.0) + after.get(tid, before.get(tid, 0.0)) - before.get(tid, 0.0)
    return {name: round(cpu / n * 1000, 3) for name, cpu in sorted(spent.items(), key=lambda kv: -kv[1])}


def start_py_spy(pid: int, out: Path) -> subprocess.Popen:
    """py-spy sampling the worker and its pool children: collapsed stacks of the threads holding the GIL (a thread
    waiting in epoll, a pipe or a lock releases it, so these are the samples that run Python)."""
    argv = [str(PY_SPY), "record", "--pid", str(pid), "--subprocesses", "--gil", "--format", "raw"]
    argv += ["--rate", os.environ.get("BENCH_PROFILE_RATE", "200"), "--output", str(out)]
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    time.sleep(1)  # py-spy attaches before the first task
    return proc


def stop_py_spy(proc: subprocess.Popen | None) -> None:
    if proc is None:
        return
    proc.send_signal(signal.SIGINT)  # py-spy writes its output on Ctrl-C
    try:
        proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def _frame_name(frame: str) -> str:
    """`func (path/to/module.py:123)` → `func (module.py:123)` without the line: one entry per function."""
    name, _, where = frame.partition(" (")
    path = where.rstrip(")").rsplit(":", 1)[0]
    for marker in ("site-packages/", "/lib/python3"):
        if marker in path:
            path = path.split(marker, 1)[1]
            break
    else:
        path = path.removeprefix(f"{REPO_ROOT}/")
    return f"{name} ({path})"


def top_entries(collapsed: Path, *, main_pid: int) -> dict[str, Any]:
    """From py-spy's collapsed stacks: per process kind (main, children), samples, and the functions with the most
    samples on their own (self) and with their callees (total)."""
    kinds: dict[str, dict[str, Counter]] = {}
    samples: Counter = Counter()
    if not collapsed.exists():
        return {}
    for line in collapsed.read_text(errors="replace").splitlines():
        stack_text, _, count_text = line.rpartition(" ")
        if not stack_text or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = stack_text.split(";")
        processes_seen = [f for f in frames if f.startswith("process ")]
        own = processes_seen[-1].split()[1].split(":")[0] if processes_seen else str(main_pid)
        kind = "main" if own == str(main_pid) else "children"
        frames = [f for f in frames if not f.startswith("process ")]
        frames = [_frame_name(f) for f in frames if not f.startswith("thread ")]
        if not frames:
            continue
        samples[kind] += count
        per = kinds.setdefault(kind, {"self": Counter(), "total": Counter()})
        per["self"][frames[-1]] += count
        for frame in set(frames):
            per["total"][frame] += count
    result: dict[str, Any] = {}
    for kind, per in kinds.items():
        n = samples[kind]
        result[kind] = {
            "samples": n,
            "self": [[f, round(100 * c / n, 1)] for f, c in per["self"].most_common(TOP)],
            # Leaving out the frames under which (nearly) everything runs: the entry point, the pool's bootstrap.
            "total": [[f, round(100 * c / n, 1)] for f, c in per["total"].most_common() if c < 0.97 * n][: TOP * 4],
        }
    return result


def drain(
    bench: Stack, label: str, n: int, env: dict[str, str], pending, fill, progress: Progress, *, prefill: bool = True
) -> dict[str, Any]:
    """Sample a worker from ready to the drain's end, then stop it. The queue is filled first (`prefill`), as
    bench/throughput.py does; otherwise once py-spy samples (Redis would drain before py-spy attaches; a paced producer
    runs beside the worker). A fill that takes time runs in a thread beside the drain."""
    if prefill:
        fill()
    worker = bench.start_worker(concurrency=CONCURRENCY, env=env, name=label.replace(" ", "-"))
    main0, children0 = cpu_split(worker.pid)
    threads0 = thread_cpu(worker.pid)
    out = bench.workdir / f"{label.replace(' ', '-')}-{time.monotonic_ns()}.collapsed"
    spy = start_py_spy(worker.pid, out) if PROFILING else None
    started = time.monotonic()
    try:
        # (the drain waits for n tasks succeeded, not only an empty queue)
        with filling_beside(None if prefill else fill, timeout=DRAIN_TIMEOUT):
            wait_for_worker_drain(worker, n, progress, label=label, pending=pending, timeout=DRAIN_TIMEOUT)
        main1, children1 = cpu_split(worker.pid)
        threads1 = thread_cpu(worker.pid)
        seconds = time.monotonic() - started
        names = thread_names(worker.pid)
    finally:
        stop_py_spy(spy)
        bench.stop(worker)
    main, children = main1 - main0, children1 - children0
    return {
        "tasks": n,
        "seconds": round(seconds, 2),
        "cpu_s_per_1000": round((main + children) / n * 1000, 3),
        "main_cpu_s_per_1000": round(main / n * 1000, 3),
        "children_cpu_s_per_1000": round(children / n * 1000, 3),
        "main_threads_cpu_s_per_1000": per_thread(threads0, threads1, names, n),
        "profile": top_entries(out, main_pid=worker.pid),
    }


def drain_sqs(bench: Stack, n: int, progress: Progress, *, name: str, env: dict[str, str]) -> dict[str, Any]:
    label = name.replace("_", " ")
    if not STEADY_DEPTH:
        return drain(bench, label, n, env, bench.total, lambda: publish_tasks(bench, TASK, n, progress), progress)
    from bench.replay import template_body
    from bench.steady_depth import envelope_bodies
    from bench.throughput import steady_producer

    bench.fresh_queues()  # a stopped worker's long poll, still open in the emulator, would take the template
    bodies = envelope_bodies(template_body(bench), n)
    producers = []
    try:
        result = drain(
            bench,
            label,
            n,
            env,
            bench.total,
            lambda: producers.append(steady_producer(bench, bodies, STEADY_DEPTH)),
            progress,
        )
    finally:
        for producer in producers:
            producer.stop()
    return {**result, "steady_depth": STEADY_DEPTH, "max_visible_depth_seen": producers[0].max_visible_seen}


def drain_redis(bench: Stack, n: int, progress: Progress, *, rate: float | None = None) -> dict[str, Any]:
    """Celery on Redis: the queue filled at once, or at `rate` tasks a second beside the drain."""
    broker = redis_broker.RedisBroker()
    broker.clear()
    if rate is None:
        label, prefill, fill = REDIS, not PROFILING, lambda: broker.fill(TASK, n, progress)
    else:
        label, prefill, fill = REDIS_PACED, False, lambda: broker.fill_paced(TASK, n, rate, progress)
    try:
        with bench.off_contender(broker.server_pid()) as moved:
            result = drain(bench, label, n, broker.worker_env(), broker.pending, fill, progress, prefill=prefill)
    finally:
        broker.clear()
    result["redis_server_moved_off_contender"] = moved
    if rate is not None:
        result["paced_tasks_per_s"] = round(rate, 2)
    return result


def print_profile(label: str, result: dict[str, Any]) -> None:
    for kind, per in result["profile"].items():
        rows = [[pct, f] for f, pct in per["self"]]
        print_table(f"{label}, {kind} ({per['samples']} samples): self %", ["self %", "function"], rows)
        rows = [[pct, f] for f, pct in per["total"]]
        print_table(f"{label}, {kind}: total %", ["total %", "function"], rows)


def main() -> int:
    n = size("BENCH_PROFILE_TASKS", 1000, 20)
    rounds = size("BENCH_PROFILE_ROUNDS", 2, 1)
    progress = Progress("cpu_profile")
    sqs_workers = variants()
    runs: list[dict[str, Any]] = []
    with stack("cpu_profile", topology={}, keep_alive=KEEP_ALIVE, pin=True) as bench:
        placed = bench.placement_info()
        for round_no in range(rounds):
            progress(f"round {round_no + 1}/{rounds}", force=True)
            run = {name: drain_sqs(bench, n, progress, name=name, env=env) for name, env in sqs_workers.items()}
            run["celery_redis"] = drain_redis(bench, n, progress)
            if PACED:
                shipped = run["sqs_worker"]
                run["celery_redis_paced"] = drain_redis(bench, n, progress, rate=n / shipped["seconds"])
            runs.append(run)
    rows = []
    for i, run in enumerate(runs, 1):
        redis = run["celery_redis"]
        for name in sqs_workers:
            run[name]["ratio_cpu_vs_redis"] = ratio(run[name]["cpu_s_per_1000"], redis["cpu_s_per_1000"])
            if paced := run.get("celery_redis_paced"):
                run[name]["ratio_cpu_vs_redis_paced"] = ratio(run[name]["cpu_s_per_1000"], paced["cpu_s_per_1000"])
        for name, r in run.items():
            rows.append(
                [i, name, r["seconds"], r["cpu_s_per_1000"], r.get("ratio_cpu_vs_redis", "")]
                + [r.get("ratio_cpu_vs_redis_paced", ""), r["main_cpu_s_per_1000"], r["children_cpu_s_per_1000"]]
            )
        for name, r in run.items():
            threads = ", ".join(f"{t} {v}" for t, v in r["main_threads_cpu_s_per_1000"].items())
            rows.append([i, f"  {name}: main-process threads", "", "", "", "", threads, ""])
    if not is_smoke():
        for name, r in runs[-1].items():
            print_profile(f"{name} (round {len(runs)})", r)
    spy, kept = ("on" if PROFILING else "off"), ("kept alive" if KEEP_ALIVE else "one per request")
    where = (
        f"worker on CPU {placed['contender_cpus']}, rest on {placed['rest_cpus']}" if placed["pinned"] else "unpinned"
    )
    print_table(
        f"worker CPU per 1000 no-op tasks ({n} tasks, concurrency {CONCURRENCY}, py-spy {spy}, connections {kept}, "
        f"{where})",
        ["round", "worker", "seconds", "cpu s / 1000", "vs redis", "vs redis paced", "main", "children"],
        rows,
    )
    write_results(
        "cpu_profile",
        {
            "tasks": n,
            "concurrency": CONCURRENCY,
            "py_spy": PROFILING,
            "keep_alive_proxy": KEEP_ALIVE,
            "cpu_placement": placed,
            "sqs_workers": sqs_workers,
            "rounds": runs,
        },
    )
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
