"""Publish latency: `POST /api/jobs` (real gunicorn) vs a bare `.delay()` vs a raw boto3 `send_message`; then the
POST with SQS black-holed (p99 against the publish budget) and what an idle outbox relay costs.

Each round publishes once by each method, in a shuffled order, so drift (the emulator, the machine's other load)
touches all three alike. The clock runs around one call: the HTTP request until the 202 is read, `.delay()` until
it returns, `send_message` until it returns. Every method warms up first (the first publish on a connection does
GetQueueAttributes, and gunicorn's worker imports lazily). The queue is emptied every few rounds: the emulator's
send slows as the queue grows, and nothing consumes here.
"""

from __future__ import annotations

import http.client
import json
import os
import random
import signal
import string
import sys
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

from bench.harness import Progress, Stack, print_table, ratio, size, stack, summary_ms, wait_until, write_results
from devstack import processes
from devstack.processes import REPO_ROOT

QUEUE = "default"  # jobs.* route here: the echo job's task and jobs.noop alike
ECHO = {"kind": "echo", "payload": {"message": "benchmark"}}
WARMUP = 10
BLACK_HOLED_WARMUP = 2  # each waits for the publish's read timeout
EMPTY_EVERY = 20  # rounds: keeps the queue under 3 x 20 messages
API_WORKERS = 1  # requests are sequential: one gunicorn worker, warmed up, serves them all
SEED = 20261


def start_api(bench: Stack, *, name: str = "api", env: dict[str, str] | None = None) -> str:
    """bin/start-api, the command the image runs, on a free 127.0.0.1 port."""
    port = processes.free_port()
    bench.start(
        name,
        [str(REPO_ROOT / "bin" / "start-api")],
        env={"API_BIND": f"127.0.0.1:{port}", "API_WORKERS": str(API_WORKERS), **(env or {})},
        ready="Booting worker",
    )

    def healthy() -> bool:
        try:
            return request_json(port, "GET", "/healthz")[0] == 200
        except OSError:
            return False

    wait_until(healthy, timeout=60, what="the api to answer /healthz")
    return str(port)


def request_json(port: int | str, method: str, path: str, body: dict | None = None) -> tuple[int, bytes]:
    """One request on a new connection (gunicorn's sync workers close it after each response anyway)."""
    conn = http.client.HTTPConnection("127.0.0.1", int(port), timeout=30)
    try:
        payload = json.dumps(body).encode() if body is not None else None
        headers = {"Content-Type": "application/json"} if payload is not None else {}
        conn.request(method, path, body=payload, headers=headers)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def empty(sqs, url: str) -> None:
    """Delete what the queue holds (PurgeQueue: once a minute, and the emulator enforces it)."""
    for _ in range(1000):
        messages = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=0).get("Messages", [])
        if not messages:
            return
        entries = [{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(messages)]
        sqs.delete_message_batch(QueueUrl=url, Entries=entries)


def body_size(sqs, url: str, publish: Callable[[], None]) -> int:
    """The SQS body length one publish produces: publish, receive it, delete it."""
    empty(sqs, url)
    publish()
    messages = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=1, WaitTimeSeconds=2).get("Messages", [])
    if not messages:
        raise RuntimeError("the published message did not reach the queue")
    sqs.delete_message(QueueUrl=url, ReceiptHandle=messages[0]["ReceiptHandle"])
    return len(messages[0]["Body"])


def black_holed_round(bench: Stack, n: int, progress: Progress, *, pause: bool) -> dict[str, Any]:
    """POST /api/jobs to an api whose SQS endpoint accepts connections and never answers. Without the fast-path
    pause every POST waits on SQS (the budget's bound); with it (the default) one POST per budget does."""
    from django.conf import settings

    from devstack.fault_proxy import FaultProxy

    proxy = FaultProxy(int(bench.moto_endpoint.rsplit(":", 1)[1])).start()
    proxy.set_mode("blackhole")
    try:
        env = {"SQS_ENDPOINT_URL": f"http://127.0.0.1:{proxy.port}", "PUBLISH_FAST_PATH_PAUSE": str(pause).lower()}
        port = start_api(bench, name=f"api-black-holed-pause-{pause}", env=env)
        for _ in range(BLACK_HOLED_WARMUP):  # gunicorn's worker imports the views on its first request
            request_json(port, "POST", "/api/jobs", ECHO)
        timings: list[float] = []
        answers: Counter[str] = Counter()
        for i in range(n):
            t0 = time.perf_counter()
            status, payload = request_json(port, "POST", "/api/jobs", ECHO)
            timings.append(time.perf_counter() - t0)
            state = json.loads(payload).get("state") if payload.startswith(b"{") else "not JSON"
            answers[f"{status} {state}"] += 1
            progress(f"black-holed POST {i + 1}/{n} (fast-path pause {'on' if pause else 'off'})")
    finally:
        proxy.stop()
    figure = summary_ms(timings)
    budget_ms = settings.PUBLISH_BUDGET.seconds * 1000
    return {
        "figure": figure,
        "answers": dict(answers),
        "budget_ms": budget_ms,
        "p99_vs_budget": ratio(figure["p99_ms"], budget_ms),
        "max_vs_budget": ratio(max(timings) * 1000, budget_ms),
    }


def idle_relay_cost(bench: Stack, seconds: float) -> dict[str, Any]:
    """What an idle outbox relay costs: SQS requests (counted at a proxy, by a real relay process) and
    database queries per sweep (counted in this process over the same sweeps)."""
    import threading

    from django.conf import settings
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from api.jobs.relay_loop import RelayLoop
    from bench.counting_proxy import CountingProxy

    counting = CountingProxy(bench.moto_endpoint)
    counting.start()
    try:
        relay = bench.start(
            "relay",
            [sys.executable, "manage.py", "outbox_relay"],
            env={"SQS_ENDPOINT_URL": counting.endpoint},
            ready="outbox relay started",
        )
        loop = RelayLoop()
        stop = threading.Event()
        with CaptureQueriesContext(connection) as queries:
            loop.run(stop, max_seconds=seconds)
        bench.stop(relay, first=signal.SIGTERM)  # its requests are counted after the stop: as before
        sqs_requests = sum(counting.snapshot().values())
    finally:
        counting.stop()
    per_minute = 60 / settings.OUTBOX_RELAY.sweep_seconds
    return {
        "seconds": seconds,
        "sweeps": loop.sweeps,
        "db_queries": len(queries),
        "db_queries_per_sweep": ratio(len(queries), loop.sweeps),
        "db_queries_per_minute": round(len(queries) / max(loop.sweeps, 1) * per_minute, 1),
        "sqs_requests": sqs_requests,
        "sweep_seconds": settings.OUTBOX_RELAY.sweep_seconds,
    }


def main() -> int:
    n = size("BENCH_PUBLISH_N", 500, 20)
    progress = Progress("publish_latency")
    print(f"publish latency: {n} publishes per method, interleaved in shuffled order", flush=True)
    with stack("publish_latency") as bench:
        from api.jobs.tasks import noop
        from devstack.queues import sqs_client

        url = bench.urls[QUEUE]
        sqs = sqs_client(bench.endpoint)  # the same endpoint the api and .delay() publish to
        port = start_api(bench)

        def post() -> None:
            status, payload = request_json(port, "POST", "/api/jobs", ECHO)
            if status != 202:
                raise RuntimeError(f"POST /api/jobs answered {status}: {payload[:500]!r}")

        def delay() -> None:
            noop.delay()

        post_bytes = body_size(sqs, url, post)
        delay_bytes = body_size(sqs, url, delay)
        letters = random.Random(SEED).choices(string.ascii_letters + string.digits, k=post_bytes)  # noqa: S311
        raw_body = "".join(letters)

        def raw() -> None:
            sqs.send_message(QueueUrl=url, MessageBody=raw_body)

        methods: dict[str, Callable[[], None]] = {"post_api_jobs": post, "delay": delay, "raw_send_message": raw}
        for publish in methods.values():
            for _ in range(WARMUP):
                publish()
        empty(sqs, url)

        timings: dict[str, list[float]] = {name: [] for name in methods}
        order = list(methods)
        rng = random.Random(SEED)  # noqa: S311 (an order, not a secret)
        started = time.monotonic()
        for i in range(n):
            rng.shuffle(order)
            for name in order:
                t0 = time.perf_counter()
                methods[name]()
                timings[name].append(time.perf_counter() - t0)
            if (i + 1) % EMPTY_EVERY == 0:
                empty(sqs, url)
            progress(f"round {i + 1}/{n}")
        progress(f"round {n}/{n} in {time.monotonic() - started:.1f} s", force=True)
        n_black_holed = size("BENCH_PUBLISH_BLACK_HOLED_N", 30, 3)
        black_holed = black_holed_round(bench, n_black_holed, progress, pause=False)
        black_holed_paused = black_holed_round(bench, n_black_holed, progress, pause=True)
        from api.jobs.models import Job

        Job.objects.filter(state="pending").update(state="cancelled")  # the relay sample below is of an idle relay
        idle = idle_relay_cost(bench, size("BENCH_RELAY_IDLE_SECONDS", 60, 6))

    figures = {name: summary_ms(values) for name, values in timings.items()}
    sizes = {"post_api_jobs": post_bytes, "delay": delay_bytes, "raw_send_message": post_bytes}
    for name, figure in figures.items():
        figure["sqs_body_bytes"] = sizes[name]
    ratios: dict[str, Any] = {}
    for pct in ("p50_ms", "p99_ms"):
        label = pct.split("_")[0]
        post_ms, delay_ms, raw_ms = (figures[m][pct] for m in ("post_api_jobs", "delay", "raw_send_message"))
        ratios[f"post_vs_raw_{label}"] = ratio(post_ms, raw_ms)
        ratios[f"delay_vs_raw_{label}"] = ratio(delay_ms, raw_ms)
        ratios[f"post_vs_delay_{label}"] = ratio(post_ms, delay_ms)
    print_table(
        f"publish latency ({n} per method, queue {QUEUE})",
        ["method", "p50 ms", "p99 ms", "mean ms", "SQS body bytes"],
        [[name, f["p50_ms"], f["p99_ms"], f["mean_ms"], f["sqs_body_bytes"]] for name, f in figures.items()],
    )
    print_table("ratios", ["ratio", "value"], [[k, v] for k, v in ratios.items()])
    print_table(
        f"POST /api/jobs, SQS black-holed ({n_black_holed} requests each, budget {black_holed['budget_ms']:.0f} ms)",
        ["fast-path pause", "p50 ms", "p99 ms", "p99 / budget", "answers"],
        [
            [label, r["figure"]["p50_ms"], r["figure"]["p99_ms"], r["p99_vs_budget"], r["answers"]]
            for label, r in (("off: every POST tries", black_holed), ("on (default)", black_holed_paused))
        ],
    )
    print_table(
        f"idle outbox relay ({idle['seconds']:g} s, a sweep every {idle['sweep_seconds']:g} s)",
        ["sweeps", "db queries per sweep", "db queries per minute", "SQS requests"],
        [[idle["sweeps"], idle["db_queries_per_sweep"], idle["db_queries_per_minute"], idle["sqs_requests"]]],
    )
    write_results(
        "publish_latency",
        {
            "n_per_method": n,
            "queue": QUEUE,
            "api_workers": API_WORKERS,
            "queue_emptied_every_rounds": EMPTY_EVERY,
            "methods": {
                "post_api_jobs": "POST /api/jobs kind echo to bin/start-api (gunicorn), new connection, until the 202",
                "delay": "api.jobs.tasks.noop.delay() in this process (the project's transport)",
                "raw_send_message": "boto3 send_message of a body as long as the POST's message",
            },
            "figures": figures,
            "ratios": ratios,
            "black_holed": black_holed,
            "black_holed_fast_path_pause": black_holed_paused,
            "idle_relay": idle,
        },
    )
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
