"""The Redis side of the comparisons: Celery's Redis transport at 127.0.0.1:6379, in a database of its own."""

from __future__ import annotations

import os
import time

import redis
from celery import Celery

from bench.cpu_placement import listening_process
from bench.harness import Progress

DEFAULT_URL = "redis://127.0.0.1:6379/13"  # a database number only the benchmarks use
QUEUE = "default"


class RedisBroker:
    """Publishes Celery tasks to Redis the way the project publishes to SQS, and reads the queue's depth."""

    def __init__(self, url: str | None = None):
        self.url = url or os.environ.get("BENCH_REDIS_URL", DEFAULT_URL)
        self.client = redis.Redis.from_url(self.url)
        self.app = Celery("bench-redis", broker=self.url)
        self.app.conf.update(
            task_default_queue=QUEUE,
            task_serializer="json",
            accept_content=["json"],
            broker_connection_retry_on_startup=True,
        )

    def clear(self) -> None:
        """Delete what Celery keeps in this database (queue, unacked messages, bindings), nothing else."""
        for key in [QUEUE, "unacked", "unacked_index", "unacked_mutex", *self.client.scan_iter("_kombu.binding.*")]:
            self.client.delete(key)

    def fill(self, task: str, n: int, progress: Progress) -> None:
        with self.app.producer_or_acquire() as producer:
            for i in range(n):
                self.app.send_task(task, producer=producer)
                progress(f"published {i + 1}/{n} to redis")

    def fill_paced(self, task: str, n: int, rate: float, progress: Progress) -> None:
        """Publish `n` tasks at `rate` a second, each due at its own time from the first (a late one goes at once): the
        queue stays near empty, so the worker takes them at this pace, not back to back."""
        start = time.monotonic()
        with self.app.producer_or_acquire() as producer:
            for i in range(n):
                delay = start + i / rate - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                self.app.send_task(task, producer=producer)
                progress(f"published {i + 1}/{n} to redis at {rate:.1f}/s")

    def pending(self) -> int:
        """Messages waiting plus messages delivered but not yet acked."""
        return int(self.client.llen(QUEUE)) + int(self.client.hlen("unacked"))

    def server_pid(self) -> int | None:
        """The local redis-server's PID (None when it is not on this machine), for bench/cpu_placement.py."""
        return listening_process("redis-server", self.client.connection_pool.connection_kwargs.get("port", 6379))

    def worker_env(self) -> dict[str, str]:
        return {"DJANGO_SETTINGS_MODULE": "bench.redis_settings", "BENCH_REDIS_URL": self.url}
