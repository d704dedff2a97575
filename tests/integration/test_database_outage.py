"""A database outage pauses the workers: no receives while it lasts, nothing in the DLQ, every task once after."""

from __future__ import annotations

import json
import time
from collections import Counter

import pytest
from django.db import connection
from django.db.models import Count

from api.jobs.models import Effect
from bench.counting_proxy import CountingProxy
from core.env import env_float, env_int, env_str
from core.topology import load_topology
from devstack import processes
from devstack.fault_proxy import FaultProxy
from devstack.moto_server import reset
from devstack.processes import REPO_ROOT
from devstack.queues import create_queues, dlq_url, queue_depth
from tests.integration.conftest import worker_health
from workers.celery_app import app

pytestmark = [pytest.mark.integration, pytest.mark.serial]

TOPOLOGY = REPO_ROOT / "tests" / "fixtures" / "queues.outage.yml"  # visibility 8 s, maxReceiveCount 5
TASKS = env_int("OUTAGE_TASKS", 200)
# Longer than maxReceiveCount (5) visibility timeouts (8 s): a worker that kept receiving through the outage
# would have sent messages to the DLQ by its end. (It was 60 s; 45 s proves the same, 15 s sooner.)
OUTAGE_SECONDS = env_float("OUTAGE_SECONDS", 45)
# cut: connections dropped, new ones refused; blackhole: accepted, never answered (devstack/fault_proxy.py)
OUTAGE_MODE = env_str("OUTAGE_MODE", "cut")
CUT_AFTER = TASKS // 5  # effects recorded before the database goes away
WORKERS = 2
MAX_AGE = 30


class MessageCountingProxy(CountingProxy):
    """The counting proxy, also counting receives per SQS message id."""

    def __init__(self, upstream: str):
        super().__init__(upstream)
        self.per_message: Counter = Counter()

    def _record(self, action: str, response_body: bytes, request_body: bytes = b"") -> None:
        super()._record(action, response_body, request_body)
        if action == "ReceiveMessage" and response_body.lstrip().startswith(b"{"):
            for message in json.loads(response_body).get("Messages") or []:
                with self._lock:
                    self.per_message[message["MessageId"]] += 1


def _effects() -> int:
    return Effect.objects.filter(key__startswith="outage-").values("task_id").distinct().count()


@pytest.fixture
def outage_stack(sqs_endpoint, transactional_db, start_process, tmp_path):
    """Queues of the outage topology behind a counting proxy; two workers reaching PostgreSQL through a TCP
    proxy the test can cut. The test process itself uses the real port."""
    if connection.vendor != "postgresql":
        pytest.skip("needs PostgreSQL (DATABASE_URL=postgres://…): the outage is a cut TCP connection")
    reset(sqs_endpoint)
    topology = load_topology(TOPOLOGY, profile="")
    urls = create_queues(topology, endpoint_url=sqs_endpoint)
    sqs = MessageCountingProxy(sqs_endpoint)
    sqs.start()
    db = connection.settings_dict
    db_proxy = FaultProxy(int(db["PORT"] or 5432)).start()
    user = db["USER"] or "postgres"
    auth = f"{user}:{db['PASSWORD']}" if db["PASSWORD"] else user
    workers = []
    for n in range(WORKERS):
        env = {
            "PATH": processes.venv_path(),
            "QUEUE_TOPOLOGY": str(TOPOLOGY),
            "SQS_ENDPOINT_URL": sqs.endpoint,
            "DATABASE_URL": f"postgres://{auth}@127.0.0.1:{db_proxy.port}/{db['NAME']}",
            "WORKER_LIVENESS_FILE": str(tmp_path / f"liveness-{n}"),
            "WORKER_HEALTH_MAX_AGE": str(MAX_AGE),
            "WORKER_CONCURRENCY": "2",
            # Below the test topology's 2 s soft time limit, as the 5 s default is below production's.
            "DATABASE_CONNECT_TIMEOUT": "1",
        }
        worker = start_process(f"worker{n}", [str(REPO_ROOT / "bin" / "start-worker")], env=env)
        workers.append((worker, env))
    # Started side by side, then waited for: start-up is the slow part.
    processes.wait_for(
        lambda: all(" ready." in w.log() for w, _env in workers) or any(not w.alive() for w, _env in workers),
        timeout=90,
        interval=0.2,
        what="both workers to be ready",
    )
    assert all(w.alive() for w, _env in workers), "a worker exited during start-up"
    try:
        yield {
            "sqs": sqs,
            "db_proxy": db_proxy,
            "workers": workers,
            "queue_url": urls["default"],
            "dlq_url": dlq_url(topology, "default", endpoint_url=sqs_endpoint),
            "endpoint": sqs_endpoint,
        }
    finally:
        db_proxy.cut()
        sqs.stop()


def test_a_database_outage_pauses_the_workers_and_sends_nothing_to_the_dlq(outage_stack):
    stack = outage_stack
    sqs, db_proxy = stack["sqs"], stack["db_proxy"]
    # GIVEN 200 idempotent tasks queued for two workers (concurrency 2 each)
    for i in range(TASKS):
        app.send_task("jobs.record_effect", kwargs={"key": f"outage-{i}", "seconds": 0.05})

    # WHEN the database goes away after some of them ran, for OUTAGE_SECONDS
    processes.wait_for(lambda: _effects() >= CUT_AFTER, timeout=120, interval=0.2, what=f"{CUT_AFTER} effects")
    db_proxy.set_mode(OUTAGE_MODE)
    cut_at, before_cut = time.monotonic(), sqs.snapshot()
    done_at_cut = _effects()
    health_during = None
    while (left := OUTAGE_SECONDS - (time.monotonic() - cut_at)) > 0:
        if health_during is None and time.monotonic() - cut_at > 10:
            health_during = [worker_health(env) for _worker, env in stack["workers"]]
        time.sleep(min(left, 1.0))
    during = sqs.snapshot()
    db_proxy.restore()
    restored_at = time.monotonic()

    # ... and comes back
    first_task_after = None

    def settled() -> bool:
        nonlocal first_task_after
        if first_task_after is None and _effects() > done_at_cut:
            first_task_after = time.monotonic() - restored_at
        if _effects() == TASKS:
            return True
        return sum(queue_depth(stack["queue_url"], endpoint_url=stack["endpoint"]).values()) == 0

    processes.wait_for(settled, timeout=180, interval=0.1, what="every task done or the queue empty")
    in_dlq = queue_depth(stack["dlq_url"], endpoint_url=stack["endpoint"])["visible"]
    received = Counter(sqs.per_message)
    outage_messages = during["messages_received"] - before_cut["messages_received"]
    outage_polls = (during["ReceiveMessage"] + during["ReceiveMessage(empty)"]) - (
        before_cut["ReceiveMessage"] + before_cut["ReceiveMessage(empty)"]
    )
    left_at_cut = TASKS - done_at_cut
    print(
        f"\noutage: mode={OUTAGE_MODE} tasks={TASKS} outage_s={OUTAGE_SECONDS:.0f} done_at_cut={done_at_cut} "
        f"effects={_effects()} "
        f"dlq={in_dlq} receive_calls_during_outage={outage_polls} messages_received_during_outage={outage_messages} "
        f"receives_per_remaining_task_during_outage={outage_messages / max(left_at_cut, 1):.2f} "
        f"receives_per_task_max={max(received.values())} mean={sum(received.values()) / TASKS:.2f} "
        f"first_task_after_restore_s={first_task_after}"
    )

    # THEN every task's effect happened exactly once, and nothing reached the DLQ
    duplicates = Effect.objects.values("task_id").annotate(n=Count("id")).filter(n__gt=1).count()
    assert (in_dlq, _effects(), duplicates) == (0, TASKS, 0)
    # AND no message was received more than twice (once before the pause, once after), none during the pause
    assert max(received.values()) <= 3
    assert outage_messages <= WORKERS * 2 * 2, "a paused worker must not receive"
    # AND each worker logged the pause and the resume once, and no task failed on the outage: a refused
    # connection fails nothing; a black hole fails only the tasks waiting on it at the cut (their time limit),
    # at most two per pool child (the one running, and the next on its hung connection)
    for worker, _env in stack["workers"]:
        log = worker.log()
        assert log.count("paused receiving") == 1, log[-3000:]
        assert log.count("resumed receiving") == 1, log[-3000:]
        if OUTAGE_MODE == "cut":
            assert "Traceback" not in log
        assert log.count("raised unexpected") <= (0 if OUTAGE_MODE == "cut" else 2 * 2)
        assert worker.alive()
    # AND while cut, the health check said the dependency was down, and stayed healthy (ECS keeps the task)
    for result in health_during:
        assert result.returncode == 0, result.stderr
        assert "dependency down: database" in result.stdout
