"""DLQ replay: the replay Lambda's own code vs a one-by-one receive/send/delete loop, same endpoint, same messages.

Each phase starts from fresh queues and a DLQ filled with BENCH_REPLAY_N (300) Celery envelopes (a `jobs.noop`
message published through the project's transport, then copied with a new task id per message, sent straight to
the DLQ). Then it moves them all back to the queue:
- `replay_100_per_s`: core/dlq/replay.py as the Lambda runs it (request validated by its model),
  `rate_per_second` 100, the most the request model allows;
- `replay_uncapped`: the same code with its rate limiter's sleep taken out: what the code itself can do here;
- `one_by_one`: receive 1, send_message, delete_message, n times.
The clock starts at the call and stops when it returns. Both are told how many messages to move (the replay's
`max_messages`, the loop's count), so neither ends on an empty 1 s long poll: the figure is the moving alone.
Each method is timed BENCH_REPLAY_REPS (3) times against the emulator (through the latency proxy, a process of its
own, when the run injects a delay), in a turning order, each run on a
freshly filled DLQ; then it runs once more through the counting proxy to count its requests (the proxy runs in
this process: it would slow the mover it measures). Filling and checks always go to the emulator directly.
"""

from __future__ import annotations

import copy
import os
import statistics
import sys
import time
import uuid
from collections import Counter
from typing import Any

from bench.harness import Progress, Stack, print_table, ratio, size, stack, write_results
from core.dlq.replay import replay_dlq
from core.dlq.request import parse_replay_request
from core.sqs_batches import chunks

QUEUE = "default"
TASK = "jobs.noop"
RATE_MAX = 100  # core/dlq/request.py: MAX_RATE_PER_SECOND
METHODS = ["one_by_one", "replay_100_per_s", "replay_uncapped"]
LOOP_TIMEOUT = 1800
WARMUP = 20  # messages each method moves before the timed runs


def template_body(bench: Stack) -> dict[str, Any]:
    """One Celery envelope as the project's transport sends it: published, received, deleted, decoded."""
    from core.envelope import decode_sqs_body
    from devstack.queues import sqs_client
    from workers.celery_app import app

    sqs, url = sqs_client(bench.moto_endpoint), bench.urls[QUEUE]
    app.send_task(TASK, task_id=str(uuid.uuid4()))
    messages = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=1, WaitTimeSeconds=5).get("Messages", [])
    if not messages:
        raise RuntimeError("the template message did not reach the queue")
    sqs.delete_message(QueueUrl=url, ReceiptHandle=messages[0]["ReceiptHandle"])
    return decode_sqs_body(messages[0]["Body"]).raw


def fill_dlq(bench: Stack, template: dict[str, Any], n: int, progress: Progress) -> None:
    """Fresh queues, then n envelopes (each its own task id) in the DLQ, sent to the emulator directly."""
    from core.envelope import encode_sqs_body
    from devstack.queues import sqs_client

    bench.fresh_queues()
    sqs = sqs_client(bench.moto_endpoint)
    dlq_url = sqs.get_queue_url(QueueName=dlq_name())["QueueUrl"]
    bodies = []
    for _ in range(n):
        envelope = copy.deepcopy(template)
        task_id = str(uuid.uuid4())
        envelope["headers"]["id"] = task_id
        envelope["properties"]["correlation_id"] = task_id
        bodies.append(encode_sqs_body(envelope))
    sent = 0
    for chunk in chunks(bodies):
        entries = [{"Id": str(i), "MessageBody": body} for i, body in enumerate(chunk)]
        response = sqs.send_message_batch(QueueUrl=dlq_url, Entries=entries)
        if response.get("Failed"):
            raise RuntimeError(f"filling the DLQ failed: {response['Failed']}")
        sent += len(chunk)
        progress(f"DLQ filled {sent}/{n}")


def dlq_name() -> str:
    from django.conf import settings

    return settings.QUEUE_TOPOLOGY.queue(QUEUE).dlq_sqs_name(settings.SQS_BROKER.queue_prefix)


def queue_name() -> str:
    from django.conf import settings

    return settings.QUEUE_TOPOLOGY.queue(QUEUE).sqs_name(settings.SQS_BROKER.queue_prefix)


def depths(bench: Stack) -> tuple[int, int]:
    """(messages in the queue, messages in its DLQ), visible or not."""
    from devstack.queues import queue_depth, sqs_client

    dlq_url = sqs_client(bench.moto_endpoint).get_queue_url(QueueName=dlq_name())["QueueUrl"]
    queue = sum(queue_depth(bench.urls[QUEUE], endpoint_url=bench.moto_endpoint).values())
    dlq = sum(queue_depth(dlq_url, endpoint_url=bench.moto_endpoint).values())
    return queue, dlq


def run_replay(n: int, sqs, progress: Progress, *, capped: bool) -> int:
    """The Lambda's code path: validate the payload with its model, then replay_dlq (dlq_replay_run's call)."""
    from django.conf import settings

    moved = 0
    while moved < n:
        payload = {"queue": QUEUE, "max_messages": min(1000, n - moved), "dry_run": False, "rate_per_second": RATE_MAX}
        request = parse_replay_request(payload, settings.QUEUE_TOPOLOGY)
        report = replay_dlq(
            request,
            sqs=sqs,
            topology=settings.QUEUE_TOPOLOGY,
            prefix=settings.SQS_BROKER.queue_prefix,
            max_replays=settings.DLQ_MAX_REPLAYS,
            **({} if capped else {"sleep": lambda _seconds: None}),
        )
        if report.failed or report.not_deleted or report.moved == 0:
            raise RuntimeError(f"the replay did not move everything: {report.as_dict()}")
        moved += report.moved
        progress(f"replay: {moved}/{n}")
    return moved


def run_one_by_one(n: int, sqs, progress: Progress) -> int:
    """The loop an operator writes first: receive one, send it back to the queue, delete it from the DLQ."""
    dlq_url = sqs.get_queue_url(QueueName=dlq_name())["QueueUrl"]
    queue_url = sqs.get_queue_url(QueueName=queue_name())["QueueUrl"]
    moved, deadline = 0, time.monotonic() + LOOP_TIMEOUT
    while moved < n:
        if time.monotonic() > deadline:
            raise TimeoutError(f"the one-by-one loop did not finish in {LOOP_TIMEOUT} s")
        messages = sqs.receive_message(QueueUrl=dlq_url, MaxNumberOfMessages=1, WaitTimeSeconds=1).get("Messages", [])
        if not messages:
            raise RuntimeError(f"the DLQ looked empty after {moved} of {n} messages")
        sqs.send_message(QueueUrl=queue_url, MessageBody=messages[0]["Body"])
        sqs.delete_message(QueueUrl=dlq_url, ReceiptHandle=messages[0]["ReceiptHandle"])
        moved += 1
        progress(f"one by one: {moved}/{n}")
    return moved


def move(bench: Stack, template: dict[str, Any], n: int, progress: Progress, name: str, endpoint: str) -> float:
    """Fill the DLQ, move its n messages back with `name` through `endpoint`, check; the seconds it took."""
    from devstack.queues import sqs_client

    fill_dlq(bench, template, n, progress)
    sqs = sqs_client(endpoint)  # made before the clock starts, as a warm Lambda or a script has it
    progress(f"{name}: moving {n} messages", force=True)
    started = time.monotonic()
    if name == "one_by_one":
        moved = run_one_by_one(n, sqs, progress)
    else:
        moved = run_replay(n, sqs, progress, capped=name == "replay_100_per_s")
    elapsed = time.monotonic() - started
    queue, dlq = depths(bench)
    if moved != n or queue != n or dlq != 0:
        raise RuntimeError(f"{name}: moved {moved} of {n}; queue holds {queue}, DLQ {dlq}")
    return elapsed


def counted(bench: Stack, template: dict[str, Any], n: int, progress: Progress, name: str) -> dict[str, Any]:
    """One more pass of the same messages through the counting proxy: the requests each method makes."""
    bench.proxy.reset()
    elapsed = move(bench, template, n, progress, name, bench.endpoint)
    requests = Counter({k: v for k, v in bench.proxy.snapshot().items() if k != "messages_received"})
    total = sum(requests.values())
    progress(f"{name}: {total} requests for {n} messages", force=True)
    return {
        "requests": total,
        "requests_per_message": round(total / n, 3),
        "by_action": dict(sorted(requests.items())),
        "seconds_through_proxy": round(elapsed, 2),
    }


def main() -> int:
    n = size("BENCH_REPLAY_N", 300, 20)
    reps = size("BENCH_REPLAY_REPS", 3, 1)
    progress = Progress("replay")
    print(f"replay: {n} DLQ messages moved back three ways, timed {reps} time(s) each, then counted", flush=True)
    with stack("replay", proxy=True) as bench:
        template = template_body(bench)
        for name in METHODS:  # warm-up: first calls (botocore's operation models, the replay's code paths)
            move(bench, template, WARMUP, progress, name, bench.sqs_endpoint)
        timed: dict[str, list[float]] = {name: [] for name in METHODS}
        for rep in range(reps):
            # Timed against the emulator directly: the proxy shares this process and its GIL. The order turns
            # each repetition, so drift (the machine's other load) does not favour one method.
            for name in METHODS[rep % len(METHODS) :] + METHODS[: rep % len(METHODS)]:
                seconds = move(bench, template, n, progress, name, bench.sqs_endpoint)
                timed[name].append(round(seconds, 2))
                progress(f"{name} #{rep + 1}: {n} moved in {seconds:.1f} s", force=True)
        results = {}
        for name in METHODS:
            median = statistics.median(timed[name])
            results[name] = {
                "moved": n,
                "seconds_median": round(median, 2),
                "seconds_each": timed[name],
                "messages_per_s": round(n / median, 1),
                **counted(bench, template, n, progress, name),
            }
    loop = results["one_by_one"]
    ratios = {
        "replay_vs_loop_msgs_per_s": ratio(results["replay_100_per_s"]["messages_per_s"], loop["messages_per_s"]),
        "replay_uncapped_vs_loop_msgs_per_s": ratio(
            results["replay_uncapped"]["messages_per_s"], loop["messages_per_s"]
        ),
        "loop_vs_replay_requests_per_message": ratio(
            loop["requests_per_message"], results["replay_100_per_s"]["requests_per_message"]
        ),
    }
    print_table(
        f"DLQ replay ({n} messages, queue {QUEUE}; messages/s from the median of {reps} timed run(s))",
        ["method", "messages/s", "seconds each", "requests", "requests / message", "requests by action"],
        [
            [
                name,
                r["messages_per_s"],
                " / ".join(str(x) for x in r["seconds_each"]),
                r["requests"],
                r["requests_per_message"],
                ", ".join(f"{k} {v}" for k, v in r["by_action"].items()),
            ]
            for name, r in results.items()
        ],
    )
    print_table("ratios", ["ratio", "value"], [[k, v] for k, v in ratios.items()])
    write_results(
        "replay",
        {
            "messages": n,
            "repetitions": reps,
            "queue": QUEUE,
            "rate_per_second": RATE_MAX,
            "methods": results,
            "ratios": ratios,
        },
    )
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
