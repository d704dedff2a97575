"""Requests per task, counted at the endpoint, and what they cost; requests per hour of an idle worker.

A counting proxy sits in front of the emulator. Each way of draining BENCH_REQUESTS_TASKS (300) tasks is counted:
the project's worker as shipped, with only fetch-when-a-slot-frees, and as before (kombu's pace), and a raw
boto3 loop (receive 10, delete the batch). SQS bills every request (a batch of up to 10 is one) and each 64 KiB
chunk of its payload as one more, so $ per million tasks is billed requests per task (the proxy counts the chunks)
times the price per million requests (BENCH_SQS_PRICE_PER_MILLION, 0.40).
Then a worker consuming every topology queue idles for BENCH_IDLE_SECONDS (180); its requests are scaled
to one hour, per queue.
"""

from __future__ import annotations

import sys
import time
from collections import Counter
from typing import Any

from bench.harness import (
    PREFETCH_VARIANT,
    WORKER_VARIANTS,
    Progress,
    Stack,
    is_smoke,
    print_table,
    publish_tasks,
    ratio,
    raw_boto3_drain,
    size,
    stack,
    wait_for_worker_drain,
    write_results,
)
from core.env import env_float

CONCURRENCY = 4
TASK = "jobs.noop"
DRAIN_TIMEOUT = 1200
COLUMNS = {
    "send": ("SendMessage", "SendMessageBatch"),
    "receive": ("ReceiveMessage",),
    "receive_empty": ("ReceiveMessage(empty)",),
    "delete": ("DeleteMessage", "DeleteMessageBatch"),
    "visibility": ("ChangeMessageVisibility", "ChangeMessageVisibilityBatch"),
    "attributes": ("GetQueueAttributes", "GetQueueUrl"),
}


def price_per_million() -> float:
    return env_float("BENCH_SQS_PRICE_PER_MILLION", 0.40)


def per_task(counts: Counter, n: int, billed: int | None = None) -> dict[str, Any]:
    """Requests per task by kind; `total` counts every request, including any kind not listed; `billed` counts
    each 64 KiB chunk of a request's payload as one request, as SQS bills (the $ figure)."""
    row: dict[str, Any] = {kind: round(sum(counts[a] for a in actions) / n, 3) for kind, actions in COLUMNS.items()}
    total = sum(v for k, v in counts.items() if k != "messages_received")
    billed = total if billed is None else billed
    row["total"] = round(total / n, 3)
    row["billed"] = round(billed / n, 3)
    row["usd_per_million_tasks"] = round(billed / n * price_per_million(), 3)
    row["raw_counts"] = dict(counts)
    return row


def publish(bench: Stack, n: int, progress: Progress) -> tuple[Counter, int]:
    """Fresh queues, then n tasks through the project's transport (via the proxy); what it counted, and billed."""
    bench.proxy.reset()
    publish_tasks(bench, TASK, n, progress)  # fresh_queues() talks to the emulator directly: not counted
    return bench.proxy.snapshot(), bench.proxy.billed_requests()


def drain_with_worker(bench: Stack, n: int, progress: Progress, *, variant: str) -> dict[str, Any]:
    sent, sent_billed = publish(bench, n, progress)
    label = variant.replace("_", " ")
    bench.proxy.reset()
    worker = bench.start_worker(concurrency=CONCURRENCY, env=WORKER_VARIANTS[variant], name=variant)
    wait_for_worker_drain(worker, n, progress, label=label, pending=bench.total, timeout=DRAIN_TIMEOUT)
    # Counted up to the drain, not the shutdown: a stopping worker's requests are not per-task costs.
    consumed, consumed_billed = bench.proxy.snapshot(), bench.proxy.billed_requests()
    bench.stop(worker)
    return per_task(sent + consumed, n, sent_billed + consumed_billed)


def drain_raw_boto3(bench: Stack, n: int, progress: Progress) -> dict[str, Any]:
    sent, sent_billed = publish(bench, n, progress)
    bench.proxy.reset()
    raw_boto3_drain(bench.endpoint, bench.urls["default"], n, progress, timeout=DRAIN_TIMEOUT)
    return per_task(sent + bench.proxy.snapshot(), n, sent_billed + bench.proxy.billed_requests())


def idle_worker(bench: Stack, seconds: int, progress: Progress) -> dict[str, Any]:
    """A worker on every topology queue, nothing to do: its requests, scaled to an hour per queue."""
    from django.conf import settings

    queues = list(settings.QUEUE_TOPOLOGY.queues)
    bench.fresh_queues()
    worker = bench.start_worker(queues=",".join(queues), concurrency=CONCURRENCY, name="idle-worker")
    bench.proxy.reset()
    started = time.monotonic()
    while (elapsed := time.monotonic() - started) < seconds:
        progress(f"idle worker: {elapsed:.0f}/{seconds} s, {sum(bench.proxy.snapshot().values())} requests")
        time.sleep(1)
    counts = bench.proxy.snapshot()
    bench.stop(worker)
    total = sum(v for k, v in counts.items() if k != "messages_received")
    per_hour = total / elapsed * 3600 / len(queues)
    return {
        "queues": queues,
        "seconds": round(elapsed, 1),
        "requests": total,
        "requests_per_hour_per_queue": round(per_hour, 1),
        "usd_per_month_per_queue": round(per_hour * 24 * 30 / 1e6 * price_per_million(), 4),
        "raw_counts": dict(counts),
    }


def worker_variants() -> tuple[str, ...]:
    """The worker as shipped and its variants; smoke runs (part of `make test`) leave out the eager receive ahead,
    which only the full run's table compares."""
    eager = () if is_smoke() else ("worker_eager_ahead",)
    return ("worker", *eager, "worker_one_receive", "worker_fetch_only", "worker_before", PREFETCH_VARIANT)


def main() -> int:
    n = size("BENCH_REQUESTS_TASKS", 300, 20)
    idle_seconds = size("BENCH_IDLE_SECONDS", 180, 25)
    progress = Progress("requests")
    print(f"requests: {n} tasks drained by each worker variant and raw; then an idle worker for {idle_seconds} s")
    with stack("requests", proxy=True) as bench:
        drains = {
            **{variant: drain_with_worker(bench, n, progress, variant=variant) for variant in worker_variants()},
            "raw_boto3": drain_raw_boto3(bench, n, progress),
        }
        idle = idle_worker(bench, idle_seconds, progress)
    price = f"$ / 1M tasks at ${price_per_million():.2f}/1M"
    header = ["drained by", *COLUMNS, "total", "billed (64 KiB chunks)", price]
    keys = [*COLUMNS, "total", "billed", "usd_per_million_tasks"]
    rows = [[name, *(r[k] for k in keys)] for name, r in drains.items()]
    print_table(f"requests per task ({n} tasks, concurrency {CONCURRENCY}, sends included)", header, rows)
    print_table(
        "idle worker",
        ["queues", "seconds", "requests", "requests/hour/queue", "$/month/queue"],
        [
            [
                len(idle["queues"]),
                idle["seconds"],
                idle["requests"],
                idle["requests_per_hour_per_queue"],
                idle["usd_per_month_per_queue"],
            ]
        ],
    )
    worker, raw, before = (drains[k]["total"] for k in ("worker", "raw_boto3", "worker_before"))
    ratios = {
        "worker_vs_one_receive_requests_per_task": ratio(worker, drains["worker_one_receive"]["total"]),
        "worker_vs_raw_boto3_requests_per_task": ratio(worker, raw),
        "worker_vs_before_requests_per_task": ratio(worker, before),
        "prefetch_vs_raw_boto3_requests_per_task": ratio(drains[PREFETCH_VARIANT]["total"], raw),
    }
    print_table("ratios", ["ratio", "value"], [[k, v] for k, v in ratios.items()])
    write_results(
        "requests",
        {
            "tasks": n,
            "concurrency": CONCURRENCY,
            "price_per_million_requests": price_per_million(),
            "per_task": drains,
            "idle": idle,
            "ratios": ratios,
        },
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
