"""Shared by the channel tests: a real kombu channel of the project's transport on moto, with a recording loop."""

from __future__ import annotations

import boto3
import pytest
from kombu import Connection
from moto import mock_aws

from core.topology import DEFAULT_TOPOLOGY_PATH, load_topology
from workers.celery_config import BrokerEnv, transport_options

ACCOUNT = "123456789012"
REGION = "us-east-1"


class RecordingHub:
    """Stands in for kombu's event loop: remembers what was scheduled, runs it when told."""

    def __init__(self):
        self.soon: list[tuple] = []
        self.later: list[tuple] = []
        self.now = 0.0  # a virtual clock: advance() runs the timers due by then
        self._due: list[tuple[float, tuple]] = []

    def call_soon(self, callback, *args):
        self.soon.append((callback, args))

    def call_later(self, delay, callback, *args):
        entry = (delay, callback, args)
        self.later.append(entry)
        self._due.append((self.now + delay, entry))

    def run_soon(self) -> None:
        pending, self.soon = self.soon, []
        for callback, args in pending:
            callback(*args)

    def run_later(self) -> None:
        pending, self.later, self._due = self.later, [], []
        for _delay, callback, args in pending:
            callback(*args)

    def advance(self, seconds: float) -> None:
        """Move the clock on, running each timer as it falls due and what it calls soon (bounded: 1000 rounds)."""
        self.now += seconds
        for _ in range(1000):
            self.run_soon()
            due = sorted((t for t in self._due if t[0] <= self.now + 1e-9), key=lambda t: t[0])
            if not due:
                return
            at, entry = due[0]
            self._due.remove((at, entry))
            self.later = [e for e in self.later if e is not entry]
            entry[1](*entry[2])
        raise AssertionError("the event loop never settles")

    def fire(self, name: str) -> None:
        """Run the timers scheduled for callback `name` (leaving them scheduled), as if their delay ran out."""
        for _delay, callback, args in [t for t in self.later if t[1].__name__ == name]:
            callback(*args)


@pytest.fixture
def make_channel(monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    topology = load_topology(DEFAULT_TOPOLOGY_PATH, profile="")
    connections = []
    with mock_aws():
        client = boto3.client("sqs", region_name=REGION)
        for spec in topology.queues.values():
            client.create_queue(QueueName=spec.name)

        def make(
            *,
            fetch_when_slot_frees: bool = True,
            delete_batch_seconds: float = 0.1,
            prefetch: int = 1,
            receive_ahead: bool = True,
        ):
            options = transport_options(
                topology,
                BrokerEnv(account_id=ACCOUNT, region=REGION),
                fetch_when_slot_frees=fetch_when_slot_frees,
                delete_batch_seconds=delete_batch_seconds,
                receive_ahead=receive_ahead,
            )
            conn = Connection("sqs://", transport="workers.transport:Transport", transport_options=options)
            connections.append(conn)
            channel = conn.default_channel
            channel.basic_qos(prefetch_count=prefetch)
            channel.hub = RecordingHub()
            receives: list[str] = []
            # The asynchronous receive needs a real event loop: record it instead of sending it.
            channel._get_bulk_async = lambda queue, callback=None: receives.append(queue)
            return channel, receives

        make.client = client
        yield make
        for conn in connections:
            conn.release()
