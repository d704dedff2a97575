"""Throughput and worker CPU: the project's worker vs a raw boto3 loop vs Celery on Redis, one run, same tasks.

Part 1 drains BENCH_TASKS (2000) no-op tasks three ways. Part 2 (issue E item 7) drains BENCH_SHALLOW_TASKS (300)
with the worker as shipped, with only fetch-when-a-slot-frees, as before (kombu's pace), and as a short-task worker
group would run it (prefetch_multiplier BENCH_PREFETCH_MULTIPLIER, 3), beside the raw loop, BENCH_ROUNDS (3) times
in turn; the median round of each is reported. Part 3 (issue L item 1) drains BENCH_STEADY_TASKS (600) with the
queue held at BENCH_STEADY_DEPTH (20) visible messages by a producer refilling it (bench/steady_depth.py), by the raw
loop, the worker before issue L item 2 (one receive per queue at a time), the worker as shipped (receiving ahead)
and the prefetch variant, BENCH_ROUNDS times in turn: the emulator's scan stays small,
so what shows is the round trips (run with BENCH_INJECTED_LATENCY_MS to add a delay to each).
Each contender (a worker with its pool children, the raw loop's thread) runs on a CPU of its own, the emulator, the
proxy, the producer and the Redis server on the others (bench/cpu_placement.py; BENCH_PIN_CONTENDER=0: unpinned).
"""

from __future__ import annotations

import os
import sys
import time
from typing import Any

from bench import redis_broker
from bench.harness import (
    PREFETCH_MULTIPLIER,
    PREFETCH_VARIANT,
    WORKER_VARIANTS,
    Progress,
    Stack,
    cpu_seconds,
    filling_beside,
    is_smoke,
    print_table,
    publish_tasks,
    ratio,
    raw_boto3_drain,
    size,
    stack,
    task_span,
    wait_for_worker_drain,
    write_results,
)
from bench.steady_depth import SteadyProducer, envelope_bodies

CONCURRENCY = int(os.environ.get("BENCH_CONCURRENCY", "4"))  # 4: the main worker group in queues.yml
TASK = "jobs.noop"
TOPOLOGY: dict = {}  # the production numbers of queues.yml
DRAIN_TIMEOUT = 1800
# The measured clients (the raw loop, the workers) reach the emulator through the latency proxy at 0 ms too, which
# keeps their connections alive as SQS does: moto answers each request with `Connection: close`, and a new TCP
# connection per request cost the worker 0.3-0.5 s of CPU per 1000 tasks (bench.cpu_profile, 2026-12-02).
# BENCH_THROUGHPUT_KEEP_ALIVE=0: moto directly at 0 ms, as before.
KEEP_ALIVE = os.environ.get("BENCH_THROUGHPUT_KEEP_ALIVE", "1") != "0"


def fill(bench: Stack, n: int, progress: Progress) -> None:
    publish_tasks(bench, TASK, n, progress)


def per_1000(cpu: float, n: int) -> float:
    return round(cpu / n * 1000, 2)


def drain_raw_boto3(bench: Stack, n: int, progress: Progress) -> dict[str, Any]:
    """The floor: receive 10 (long poll), delete the batch, no work at all."""
    fill(bench, n, progress)
    started = time.monotonic()
    with bench.as_contender():
        done = raw_boto3_drain(bench.sqs_endpoint, bench.urls["default"], n, progress, timeout=DRAIN_TIMEOUT)
    elapsed = time.monotonic() - started
    return {"tasks": done, "seconds": round(elapsed, 2), "tasks_per_s": round(done / elapsed, 1)}


def drain_with_worker(
    bench: Stack, n: int, progress: Progress, *, label: str, env: dict[str, str], pending, beside=None
) -> dict:
    """Start a worker on a full queue (or one `beside` fills meanwhile, in a thread); the drain time is Celery's own
    first-received to last-succeeded, its CPU what the worker's processes used from the moment it logged ready
    (start-up excluded) to the drain's end."""
    worker = bench.start_worker(concurrency=CONCURRENCY, env=env, name=label.replace(" ", "-"))
    startup_cpu = cpu_seconds(worker.pid)
    with filling_beside(beside, timeout=DRAIN_TIMEOUT):
        wait_for_worker_drain(worker, n, progress, label=label, pending=pending, timeout=DRAIN_TIMEOUT)
    cpu = cpu_seconds(worker.pid) - startup_cpu
    bench.stop(worker)
    span = task_span(worker.log_path)
    return {
        "tasks": span.succeeded,
        "seconds": round(span.seconds, 2),
        "tasks_per_s": round(span.succeeded / span.seconds, 1) if span.seconds else None,
        "worker_cpu_s_per_1000": per_1000(cpu, n),
    }


def drain_sqs_worker(bench: Stack, n: int, progress: Progress, *, variant: str) -> dict[str, Any]:
    """The project's worker (bin/start-worker) on the project's transport."""
    fill(bench, n, progress)
    label = variant.replace("_", " ")
    return drain_with_worker(
        bench,
        n,
        progress,
        label=label,
        env=WORKER_VARIANTS[variant],
        pending=bench.total,
    )


def drain_redis_worker(bench: Stack, n: int, progress: Progress, *, rate: float | None = None) -> dict[str, Any]:
    """The same command, tasks and settings on Celery's Redis transport (127.0.0.1:6379): the queue filled first,
    or, with `rate`, published at `rate` tasks a second beside the drain (the SQS worker's pace: its pool children
    and main loop then wait between tasks as the SQS worker's do, and pay for each wake-up as they do)."""
    broker = redis_broker.RedisBroker()
    broker.clear()
    try:
        beside = None
        if rate is None:
            broker.fill(TASK, n, progress)
        else:
            beside = lambda: broker.fill_paced(TASK, n, rate, progress)  # noqa: E731
        with bench.off_contender(broker.server_pid()) as moved:
            result = drain_with_worker(
                bench,
                n,
                progress,
                label="celery on redis" + (" paced" if rate else ""),
                env=broker.worker_env(),
                pending=broker.pending,
                beside=beside,
            )
        return {**result, "redis_server_moved_off_contender": moved, "paced_tasks_per_s": rate}
    finally:
        broker.clear()


def worker_pace(drained: dict[str, Any]) -> float | None:
    """The tasks/s a worker drain reported, to feed Celery on Redis at (None: its log gave none, so no paced drain)."""
    return drained.get("tasks_per_s") or None


LOW_DEPTH_CONTENDERS = ("raw_boto3", "worker_before", "worker_fetch_only", "worker", PREFETCH_VARIANT)


def low_depth_rounds(bench: Stack, n: int, rounds: int, progress: Progress) -> dict[str, Any]:
    """Each contender once per round, in turn, so drift on a shared machine hits them alike; the median round
    of each is reported (and every round is kept in the JSON)."""
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in LOW_DEPTH_CONTENDERS}
    for round_no in range(rounds):
        progress(f"low depth: round {round_no + 1}/{rounds}", force=True)
        for name in LOW_DEPTH_CONTENDERS:
            if name == "raw_boto3":
                runs[name].append(drain_raw_boto3(bench, n, progress))
            else:
                runs[name].append(drain_sqs_worker(bench, n, progress, variant=name))
    low = {}
    for name, results in runs.items():
        low[name] = {**median_round(results, "tasks_per_s"), "rounds_tasks_per_s": [r["tasks_per_s"] for r in results]}
    return low


# worker_one_receive: the worker before issue L item 2 (one receive per queue at a time, WORKER_RECEIVE_AHEAD=0);
# worker_no_predict: receive ahead for free slots only (WORKER_RECEIVE_AHEAD_PREDICT=0); BENCH_STEADY_CONTENDERS
# (comma-separated) picks others, e.g. worker_eager_ahead (WORKER_RECEIVE_AHEAD_COALESCE_MS=0).
STEADY_CONTENDERS = ("raw_boto3", "worker_one_receive", "worker_no_predict", "worker", PREFETCH_VARIANT)


def steady_contenders() -> tuple[str, ...]:
    """Smoke runs keep the raw loop and the worker as shipped: two worker starts less in `make test`."""
    listed = os.environ.get("BENCH_STEADY_CONTENDERS")
    if listed:
        chosen = tuple(name.strip() for name in listed.split(",") if name.strip())
        unknown = [name for name in chosen if name != "raw_boto3" and name not in WORKER_VARIANTS]
        if unknown or "raw_boto3" not in chosen:
            names = sorted(WORKER_VARIANTS)
            raise ValueError(f"BENCH_STEADY_CONTENDERS: raw_boto3 and names of {names}, got {listed!r}")
        return chosen
    return ("raw_boto3", "worker") if is_smoke() else STEADY_CONTENDERS


def steady_producer(bench: Stack, bodies: list[str], depth: int) -> SteadyProducer:
    """Fresh queues, then a producer holding the default queue at `depth` visible messages (emulator direct)."""
    from core.sqs_batches import message_counts
    from devstack.queues import sqs_client

    bench.fresh_queues()
    sqs, url = sqs_client(bench.moto_endpoint), bench.urls["default"]
    producer = SteadyProducer(
        sqs, url, bodies, depth=depth, timeout=DRAIN_TIMEOUT, visible=lambda: message_counts(sqs, url)["visible"]
    ).start()
    producer.wait_filled()
    return producer


def steady_drain(bench: Stack, name: str, bodies: list[str], depth: int, progress: Progress) -> dict[str, Any]:
    """One contender drains len(bodies) tasks while the producer keeps the queue at `depth`."""
    n = len(bodies)
    producer = steady_producer(bench, bodies, depth)
    try:
        if name == "raw_boto3":
            started = time.monotonic()
            with bench.as_contender():
                done = raw_boto3_drain(bench.sqs_endpoint, bench.urls["default"], n, progress, timeout=DRAIN_TIMEOUT)
            elapsed = time.monotonic() - started
            result = {"tasks": done, "seconds": round(elapsed, 2), "tasks_per_s": round(done / elapsed, 1)}
        else:
            label = f"steady {name.replace('_', ' ')}"
            result = drain_with_worker(bench, n, progress, label=label, env=WORKER_VARIANTS[name], pending=bench.total)
        producer.check()
    finally:
        producer.stop()
    return {**result, "max_visible_depth_seen": producer.max_visible_seen}


def steady_rounds(bench: Stack, n: int, depth: int, rounds: int, progress: Progress) -> dict[str, Any]:
    """Each steady-depth contender once per round, in turn; the median round of each (every round kept)."""
    from bench.replay import template_body

    bench.fresh_queues()  # a stopped worker's long poll, still open in the emulator, would take the template
    template = template_body(bench)
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in steady_contenders()}
    redis_runs: list[dict[str, Any]] = []
    redis_paced_runs: list[dict[str, Any]] = []
    for round_no in range(rounds):
        progress(f"steady depth {depth}: round {round_no + 1}/{rounds}", force=True)
        for name in steady_contenders():
            runs[name].append(steady_drain(bench, name, envelope_bodies(template, n), depth, progress))
        if not is_smoke():
            # Celery on Redis in every round too: one sample of it read 1.46-2.23 s per 1000 in one evening.
            redis_runs.append(drain_redis_worker(bench, n, progress))
            if "worker" in runs and (pace := worker_pace(runs["worker"][-1])):  # and fed at the worker's pace
                redis_paced_runs.append(drain_redis_worker(bench, n, progress, rate=pace))
    steady: dict[str, Any] = {"depth": depth}
    for name, results in runs.items():
        steady[name] = {
            **median_round(results, "tasks_per_s"),
            "rounds_tasks_per_s": [r["tasks_per_s"] for r in results],
            "rounds": [
                {"tasks_per_s": r["tasks_per_s"], "worker_cpu_s_per_1000": r.get("worker_cpu_s_per_1000")}
                for r in results
            ],
        }
        if name != "raw_boto3":
            steady[name]["rounds_vs_raw"] = round_ratios(results, runs["raw_boto3"])
    for key, redis in (("celery_redis", redis_runs), ("celery_redis_paced", redis_paced_runs)):
        if redis:
            steady[key] = {
                **median_round(redis, "worker_cpu_s_per_1000"),
                "rounds_cpu_s_per_1000": [r["worker_cpu_s_per_1000"] for r in redis],
            }
    return steady


def steady_cpu_ratios(deep: dict[str, Any], steady: dict[str, Any]) -> dict[str, float | None]:
    """Issue L item 3: the worker's CPU per 1000 tasks at the held depth (the emulator's scan of a deep queue slows
    the worker's drain, and a longer drain adds its per-second costs to every task) over Celery on Redis draining its
    queue back to back, Redis's cheapest case (steady_cpu_figures)."""
    cpu, redis = steady_cpu_figures(deep, steady)
    if not cpu or not redis:
        return {}
    ratios = {"steady_worker_cpu_vs_celery_redis": ratio(cpu, redis)}
    if paced := median_of((steady.get("celery_redis_paced") or {}).get("rounds_cpu_s_per_1000", [])):
        # The same worker on Redis at the SQS worker's pace: what the pace costs any Celery worker on this machine.
        ratios["steady_worker_cpu_vs_celery_redis_paced"] = ratio(cpu, paced)
    return ratios


def steady_cpu_figures(deep: dict[str, Any], steady: dict[str, Any]) -> tuple[float | None, float | None]:
    """(worker, Celery on Redis) CPU s per 1000 tasks: the medians of the same rounds when Redis ran in each steady
    round, else the worker's median round and the deep part's one Redis sample."""
    worker = steady.get("worker") or {}
    if "celery_redis" in steady:
        cpu = median_of([r.get("worker_cpu_s_per_1000") for r in worker.get("rounds", [])])
        return cpu, median_of(steady["celery_redis"]["rounds_cpu_s_per_1000"])
    return worker.get("worker_cpu_s_per_1000"), (deep.get("celery_redis") or {}).get("worker_cpu_s_per_1000")


def redis_rows(steady: dict[str, Any], n: int) -> list[list[Any]]:
    """The table's rows for Celery on Redis drained in each steady round (its median-CPU round), queued first and
    fed at the worker's pace, if they ran."""
    rows = []
    for key, depth in (("celery_redis", f"{n} queued"), ("celery_redis_paced", f"{n} at the worker's pace")):
        if redis := steady.get(key):
            cpu_each = " ".join(str(v) for v in redis["rounds_cpu_s_per_1000"])
            rows.append(
                [
                    depth,
                    key,
                    redis["tasks_per_s"],
                    redis["seconds"],
                    redis["worker_cpu_s_per_1000"],
                    f"CPU s / 1000 of each round: {cpu_each}",
                ]
            )
    return rows


def median_round(results: list[dict[str, Any]], key: str) -> dict[str, Any]:
    """The round whose `key` is the median of the rounds' (the upper one of an even count; a missing figure as 0)."""
    return sorted(results, key=lambda r: r[key] or 0)[len(results) // 2]


def median_of(values: list[float | None]) -> float | None:
    known = sorted(v for v in values if v is not None)
    return known[len(known) // 2] if known else None


def round_ratios(results: list[dict[str, Any]], raw: list[dict[str, Any]]) -> list[float | None]:
    """Each round's tasks/s over the raw loop's in the same round: minutes apart on a shared machine the load
    differs more than between neighbours, so the median of these is the figure (bench/README: side by side)."""
    return [ratio(r["tasks_per_s"] or 0, w["tasks_per_s"] or 0) for r, w in zip(results, raw, strict=True)]


def median_round_ratio(contender: dict[str, Any]) -> float | None:
    return median_of(contender.get("rounds_vs_raw", []))


PARTS = ("deep", "low", "steady")


def parts() -> tuple[str, ...]:
    """BENCH_THROUGHPUT_PARTS (comma-separated, default all): deep, low, steady; e.g. `steady` alone to compare
    the worker's pace with the raw loop's at a held depth in a few minutes."""
    listed = os.environ.get("BENCH_THROUGHPUT_PARTS")
    chosen = tuple(p.strip() for p in listed.split(",") if p.strip()) if listed else PARTS
    unknown = set(chosen) - set(PARTS)
    if unknown or not chosen:
        raise ValueError(f"BENCH_THROUGHPUT_PARTS: choose from {PARTS}, got {listed!r}")
    return chosen


def deep_ratios(deep: dict[str, Any]) -> dict[str, float | None]:
    if not deep:
        return {}
    raw, redis = deep["raw_boto3"]["tasks_per_s"], deep["celery_redis"]["tasks_per_s"]
    cpu = deep["worker"]["worker_cpu_s_per_1000"]
    ratios = {
        "worker_vs_raw_boto3": ratio(deep["worker"]["tasks_per_s"], raw),
        "worker_vs_celery_redis": ratio(deep["worker"]["tasks_per_s"], redis),
        "worker_cpu_vs_celery_redis": ratio(cpu, deep["celery_redis"]["worker_cpu_s_per_1000"]),
    }
    if paced := deep.get("celery_redis_paced"):
        ratios["worker_cpu_vs_celery_redis_paced"] = ratio(cpu, paced["worker_cpu_s_per_1000"])
    return ratios


def low_ratios(low: dict[str, Any]) -> dict[str, float | None]:
    if not low:
        return {}
    raw = low["raw_boto3"]["tasks_per_s"]
    return {
        "low_depth_before_vs_raw": ratio(low["worker_before"]["tasks_per_s"], raw),
        "low_depth_fetch_only_vs_raw": ratio(low["worker_fetch_only"]["tasks_per_s"], raw),
        "low_depth_after_vs_raw": ratio(low["worker"]["tasks_per_s"], raw),
        "low_depth_after_vs_before": ratio(low["worker"]["tasks_per_s"], low["worker_before"]["tasks_per_s"]),
        "low_depth_prefetch_vs_raw": ratio(low[PREFETCH_VARIANT]["tasks_per_s"], raw),
    }


def steady_ratios(steady: dict[str, Any]) -> dict[str, float | None]:
    if not steady:
        return {}
    keys = {
        "worker_one_receive": "steady_one_receive_vs_raw",
        "worker_eager_ahead": "steady_eager_ahead_vs_raw",
        "worker_no_predict": "steady_no_predict_vs_raw",
        "worker": "steady_worker_vs_raw",
        PREFETCH_VARIANT: "steady_prefetch_vs_raw",
    }
    ratios = {key: median_round_ratio(steady[name]) for name, key in keys.items() if name in steady}
    if "worker" in steady and "worker_one_receive" in steady:
        # After against before issue L item 2, round by round; a stalled round (0 tasks/s) counts.
        after_vs_before = round_ratios(steady["worker"]["rounds"], steady["worker_one_receive"]["rounds"])
        ratios["steady_worker_vs_one_receive"] = median_of(after_vs_before)
    return ratios


def main() -> int:
    n = size("BENCH_TASKS", 2000, 20)
    shallow = size("BENCH_SHALLOW_TASKS", 300, 20)
    rounds = size("BENCH_ROUNDS", 3, 1)
    steady_n = size("BENCH_STEADY_TASKS", 600, 20)
    steady_depth = size("BENCH_STEADY_DEPTH", 20, 10)
    progress = Progress("throughput")
    print(
        f"throughput: {n} tasks three ways, then {shallow} by the worker before, after, with prefetch multiplier "
        f"{PREFETCH_MULTIPLIER}, and raw",
        flush=True,
    )
    chosen = parts()
    deep: dict[str, Any] = {}
    low: dict[str, Any] = {}
    steady: dict[str, Any] = {}
    with stack("throughput", topology=TOPOLOGY, keep_alive=KEEP_ALIVE, pin=True) as bench:
        placed = bench.placement_info()
        bench.fresh_queues()
        if "deep" in chosen:
            deep = {
                "raw_boto3": drain_raw_boto3(bench, n, progress),
                "worker": drain_sqs_worker(bench, n, progress, variant="worker"),
                "celery_redis": drain_redis_worker(bench, n, progress),
            }
            if not is_smoke() and (pace := worker_pace(deep["worker"])):
                # At 15 ms the worker drains at a fraction of Redis's pace, and CPU per task follows the pace.
                deep["celery_redis_paced"] = drain_redis_worker(bench, n, progress, rate=pace)
        if "low" in chosen:
            low = low_depth_rounds(bench, shallow, rounds, progress)
        if "steady" in chosen:
            steady = steady_rounds(bench, steady_n, steady_depth, rounds, progress)
    ratios = {**deep_ratios(deep), **low_ratios(low), **steady_ratios(steady), **steady_cpu_ratios(deep, steady)}
    rows = (
        [
            [f"{n} tasks", name, r["tasks_per_s"], r["seconds"], r.get("worker_cpu_s_per_1000"), ""]
            for name, r in deep.items()
        ]
        + [
            [
                f"{shallow} tasks",
                name,
                r["tasks_per_s"],
                r["seconds"],
                r.get("worker_cpu_s_per_1000"),
                " ".join(str(v) for v in r["rounds_tasks_per_s"]),
            ]
            for name, r in low.items()
        ]
        + [
            [
                f"{steady_n} at depth {steady_depth}",
                name,
                steady[name]["tasks_per_s"],
                steady[name]["seconds"],
                steady[name].get("worker_cpu_s_per_1000"),
                " ".join(str(v) for v in steady[name]["rounds_tasks_per_s"])
                + (
                    f" (vs raw: {' '.join(str(v) for v in steady[name]['rounds_vs_raw'])})"
                    if name in steady and "rounds_vs_raw" in steady[name]
                    else ""
                ),
            ]
            for name in steady_contenders()
            if name in steady
        ]
        + redis_rows(steady, steady_n)
    )
    print_table(
        f"throughput (concurrency {CONCURRENCY}, task {TASK})",
        ["depth", "drained by", "tasks/s", "seconds", "worker CPU s / 1000 tasks", "tasks/s of each round"],
        rows,
    )
    print_table("ratios", ["ratio", "value"], [[k, v] for k, v in ratios.items()])
    write_results(
        "throughput",
        {
            "concurrency": CONCURRENCY,
            "prefetch_multiplier_variant": PREFETCH_MULTIPLIER,
            "task": TASK,
            "cpu_placement": placed,
            "deep": deep,
            "low_depth": low,
            "steady_depth": steady,
            "ratios": ratios,
        },
    )
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
