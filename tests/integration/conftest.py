"""Integration fixtures: a moto server, the topology's queues, and real `celery worker` subprocesses, all started
and stopped by the local-stack harness (devstack/stack.py)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from django.conf import settings
from django.db import connection

from devstack import processes
from devstack.processes import REPO_ROOT
from devstack.queues import queue_depth, sqs_client
from devstack.stack import LocalStack, Proc, Processes, local_stack
from tests.integration.browser import live_api, staff_user  # noqa: F401 (fixtures for the browser tests)

WORKER_READY = " ready."  # what `celery worker` logs once it consumes

pytestmark = pytest.mark.integration


@pytest.fixture(scope="session")
def local_stack_session(tmp_path_factory) -> Iterator[LocalStack]:
    """The emulator on the free port the test settings chose, for the whole session (each test gets fresh queues
    on it from the `queues` fixture: a reset, not a new emulator)."""
    port = int(settings.SQS_ENDPOINT_URL.rsplit(":", 1)[1])
    with local_stack(tmp_path_factory.mktemp("stack"), sqs_port=port, grace=5) as stack:
        yield stack


@pytest.fixture(scope="session")
def sqs_endpoint(local_stack_session) -> str:
    return local_stack_session.endpoint


@dataclass
class Queues:
    """The test topology's queues on the moto server, with helpers to look at them."""

    endpoint: str
    urls: dict[str, str]
    dlq_urls: dict[str, str]

    def depth(self, key: str) -> dict[str, int]:
        return queue_depth(self.urls[key], endpoint_url=self.endpoint)

    def dlq_depth(self, key: str) -> dict[str, int]:
        return queue_depth(self.dlq_urls[key], endpoint_url=self.endpoint)

    def total(self, key: str) -> int:
        return sum(self.depth(key).values())

    def drained(self, key: str, timeout: float = 5.0) -> bool:
        """The queue empties within `timeout`: an acked message is deleted in a batch up to
        WORKER_DELETE_BATCH_SECONDS after its task ends (workers/delete_batches.py)."""
        processes.wait_for(lambda: self.total(key) == 0, timeout=timeout, interval=0.1, what=f"{key} to drain")
        return True

    def send_raw(self, key: str, body: str) -> None:
        sqs_client(self.endpoint).send_message(QueueUrl=self.urls[key], MessageBody=body)

    def receive_dlq(self, key: str) -> list[dict]:
        response = sqs_client(self.endpoint).receive_message(
            QueueUrl=self.dlq_urls[key],
            MaxNumberOfMessages=10,
            WaitTimeSeconds=1,
            MessageSystemAttributeNames=["ApproximateReceiveCount"],
        )
        return response.get("Messages", [])


@pytest.fixture
def queues(local_stack_session, sqs_endpoint) -> Queues:
    """Fresh queues (with DLQs and redrive policies) for each test."""
    topology = settings.QUEUE_TOPOLOGY
    urls = local_stack_session.fresh_queues(topology, endpoint_url=sqs_endpoint)
    client = sqs_client(sqs_endpoint)
    dlq_urls = {key: client.get_queue_url(QueueName=q.dlq)["QueueUrl"] for key, q in topology.queues.items()}
    return Queues(endpoint=sqs_endpoint, urls=urls, dlq_urls=dlq_urls)


def database_env() -> dict[str, str]:
    """Point a subprocess at the test database this session created."""
    db = connection.settings_dict
    if db["ENGINE"].endswith("sqlite3"):
        return {"SQLITE_PATH": str(db["NAME"]), "DATABASE_URL": ""}
    user = db["USER"] or "postgres"
    auth = f"{user}:{db['PASSWORD']}" if db["PASSWORD"] else user
    return {"DATABASE_URL": f"postgres://{auth}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"}


@pytest.fixture
def start_process(request, tmp_path):
    """Start a project process against the test database and moto; killed (by PID) after the test.

    Teardown SIGKILLs the process group: a graceful stop costs seconds per process and is not what most tests
    test (those that test it send SIGTERM themselves). Mark a test `graceful_stop` to be stopped with SIGTERM
    and a grace period instead. A killed worker's long poll may live on in moto, but on the queues of this
    test: the next test's `queues` fixture resets moto, and a poll holds the queue object it started on."""
    graceful = request.node.get_closest_marker("graceful_stop") is not None
    group = Processes(tmp_path, grace=10 if graceful else 5, first=signal.SIGTERM if graceful else signal.SIGKILL)

    def start(
        name: str, argv: list[str], *, env: dict[str, str] | None = None, ready: str | None = None, timeout: float = 60
    ) -> Proc:
        n = len(group.started)
        full_env = {
            "DJANGO_SETTINGS_MODULE": "api.settings.test",
            "PYTHONUNBUFFERED": "1",
            # Liveness files of this test's own, not the shared default in /tmp (parallel test workers).
            "WORKER_LIVENESS_FILE": str(tmp_path / f"{name}-{n}.worker-liveness"),
            "BEAT_LIVENESS_FILE": str(tmp_path / f"{name}-{n}.beat-liveness"),
            # Celery's Django fixup runs Django's system checks at every worker and beat start: 0.3 of a worker's
            # 1.6 CPU-s start-up, about 60 starts a run. The checks themselves are the unit suite's
            # (tests/unit/api/test_system_checks.py); `make run` and the benchmarks start workers with them.
            "CELERY_SKIP_CHECKS": "1",
            **database_env(),
            **(env or {}),
        }
        return group.start(name, argv, env=full_env, ready=ready, timeout=timeout, interval=0.2)

    yield start
    group.stop_all()
    for handle in group.started:  # shown by pytest only when the test failed
        print(f"----- {handle.name} log ({handle.log_path}) -----\n{handle.log()[-6000:]}")


@pytest.fixture
def start_worker(transactional_db, queues, start_process):
    """Start a real `celery worker` consuming every topology queue."""

    def start(*, env: dict[str, str] | None = None, concurrency: int = 2, wait: bool = True) -> Proc:
        # The same command the image runs on ECS, with the venv first on PATH. On the test topology, WORKER_QUEUES
        # given (every queue, as its default would be) spares bin/start-worker a Python start-up to read it.
        worker_env = {"PATH": processes.venv_path(), "WORKER_CONCURRENCY": str(concurrency), **(env or {})}
        if "QUEUE_TOPOLOGY" not in worker_env:
            worker_env.setdefault("WORKER_QUEUES", ",".join(settings.QUEUE_TOPOLOGY.queues))
        ready = WORKER_READY if wait else None
        return start_process("worker", [str(REPO_ROOT / "bin" / "start-worker")], env=worker_env, ready=ready)

    return start


def wait_until_ready(worker: Proc, timeout: float = 60) -> float:
    """Wait for a worker started with `wait=False` to log that it is ready; the wall-clock time it was seen."""
    processes.wait_for(
        lambda: worker.log_path.exists() and WORKER_READY in worker.log(),
        timeout=timeout, interval=0.2, what=f"{worker.name} to be ready",
    )
    return time.time()


def post_job(client, **body):
    return client.post("/api/jobs", data=json.dumps(body), content_type="application/json")


def wait_for_job(job_id: int, states: set[str], timeout: float = 60):
    from api.jobs.models import Job

    return processes.wait_for(
        lambda: (job := Job.objects.get(pk=job_id)).state in states and job,
        timeout=timeout,
        interval=0.2,
        what=f"job {job_id} to reach {states}",
    )


def worker_health(env: dict[str, str]) -> subprocess.CompletedProcess:
    """`python -m workers.healthcheck worker` (the ECS health check) with a worker's environment."""
    return subprocess.run(
        [sys.executable, "-m", "workers.healthcheck", "worker"],
        env={**env, "PATH": ""},
        capture_output=True,
        text=True,
        timeout=30,
    )


@pytest.fixture
def unreachable_endpoint() -> str:
    """An SQS endpoint where nothing listens."""
    return f"http://127.0.0.1:{processes.free_port()}"
