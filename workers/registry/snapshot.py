"""What a registry row says about a worker: who it is (fixed at start) and what it runs now (taken each tick)."""

from __future__ import annotations

import importlib.metadata
import os
import socket
import tomllib
import uuid
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import celery

from workers.registry.tally import TaskTally

PROJECT = "celery-sqs-reference"


def project_version() -> str:
    try:
        return importlib.metadata.version(PROJECT)
    except importlib.metadata.PackageNotFoundError:  # run from a checkout (the image copies the tree)
        pyproject = Path(__file__).resolve().parents[2] / "pyproject.toml"
        try:
            return tomllib.loads(pyproject.read_text())["project"]["version"]
        except (OSError, KeyError, tomllib.TOMLDecodeError):
            return "unknown"


def _utc(epoch: float) -> datetime:
    return datetime.fromtimestamp(epoch, UTC)


@dataclass(frozen=True)
class WorkerIdentity:
    nodename: str
    queues: tuple[str, ...]
    concurrency: int
    prefetch: int
    host: str = field(default_factory=socket.gethostname)
    pid: int = field(default_factory=os.getpid)
    worker_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    version: str = field(default_factory=lambda: f"{PROJECT} {project_version()} / celery {celery.__version__}")
    started_at: datetime = field(default_factory=lambda: datetime.now(UTC))

    @classmethod
    def of_consumer(cls, consumer) -> WorkerIdentity:
        """From Celery's Consumer: its node name, the queues it consumes, its pool size and prefetch count."""
        queues = tuple(sorted(consumer.app.amqp.queues.consume_from or consumer.app.amqp.queues))
        concurrency = int(getattr(consumer.controller, "concurrency", 0) or 0)
        return cls(
            nodename=consumer.hostname,
            queues=queues,
            concurrency=concurrency,
            prefetch=int(consumer.initial_prefetch_count or 0),
        )


@dataclass(frozen=True)
class WorkerSnapshot:
    identity: WorkerIdentity
    last_poll_at: datetime
    running: list[dict] = field(default_factory=list)  # [{"task_id", "name", "since"}], oldest first
    counts: dict = field(default_factory=dict)
    stopped_at: datetime | None = None

    def as_row(self) -> dict:
        return {
            **asdict(self.identity),
            "queues": list(self.identity.queues),
            "last_poll_at": self.last_poll_at,
            "running": self.running,
            "counts": self.counts,
            "stopped_at": self.stopped_at,
        }


def active_requests() -> list:
    """Celery's `state.active_requests` (a WeakSet the event loop changes), read from the writer thread:
    `list()` of its underlying set is one C call under the GIL, where iterating the WeakSet is Python code
    that fails if the set changes meanwhile."""
    from celery.worker import state

    return [request for ref in list(state.active_requests.data) if (request := ref()) is not None]


def running_tasks(requests) -> list[dict]:
    """The tasks a pool process has accepted, oldest first."""
    running = [
        {"task_id": request.id, "name": request.name, "since": _utc(request.time_start).isoformat()}
        for request in list(requests)
        if request.time_start is not None
    ]
    return sorted(running, key=lambda task: task["since"])


def take_snapshot(identity: WorkerIdentity, tally: TaskTally, *, tick: float, requests=None) -> WorkerSnapshot:
    """Taken by the writer thread: the tasks running now, a sum over at most 900 buckets, the last tick."""
    if requests is None:
        requests = active_requests()
    return WorkerSnapshot(
        identity=identity, last_poll_at=_utc(tick), running=running_tasks(requests), counts=tally.counts()
    )
