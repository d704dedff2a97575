"""bench/redis_broker.py's paced fill: Celery on Redis fed at the SQS worker's pace (bench.cpu_profile)."""

from __future__ import annotations

import time

import pytest
import redis

from bench.harness import Progress
from bench.redis_broker import RedisBroker

# A database of each test's own: xdist runs the two at once, and each clears its database first.
PACED_URL, AT_ONCE_URL = "redis://127.0.0.1:6379/14", "redis://127.0.0.1:6379/15"


def _broker(url: str):
    broker = RedisBroker(url)
    try:
        broker.client.ping()
    except redis.ConnectionError:
        pytest.skip("Redis is not running at 127.0.0.1:6379 (the env skill says how to start it)")
    broker.clear()
    yield broker
    broker.clear()


@pytest.fixture
def paced_broker():
    yield from _broker(PACED_URL)


@pytest.fixture
def broker():
    yield from _broker(AT_ONCE_URL)


def test_a_paced_fill_publishes_every_task_no_sooner_than_its_turn(paced_broker):
    broker = paced_broker
    # GIVEN an empty queue
    # WHEN 11 tasks are published at 50 a second
    started = time.monotonic()
    broker.fill_paced("jobs.noop", 11, 50.0, Progress("test"))
    took = time.monotonic() - started

    # THEN all 11 are queued, and the last went no sooner than its turn (10 / 50 s after the first): a pace, not a burst
    assert broker.pending() == 11
    assert took >= 10 / 50


def test_a_fill_at_once_queues_every_task(broker):
    # GIVEN an empty queue WHEN 5 tasks are published at once THEN all 5 are queued
    broker.fill("jobs.noop", 5, Progress("test"))
    assert broker.pending() == 5
