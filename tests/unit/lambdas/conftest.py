"""Fixtures of the DLQ Lambda tests: moto's in-process SQS holding the test topology's queues and DLQs, filled
with REAL Celery envelopes published by the project's own producer (the Celery app and its SQS transport)."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from django.conf import settings
from hypothesis.configuration import set_hypothesis_home_dir
from moto import mock_aws

from core.envelope import decode_sqs_body
from core.topology import Topology
from workers.celery_config import LOCAL_ACCOUNT_ID, BrokerEnv, transport_options

REGION = "us-east-1"
CLAIM_CHECK_BUCKET = "claim-check-lambdas"
JOB_KWARGS = {"job_id": 1, "message": "x"}

# Hypothesis keeps its example database and caches outside the repository (default: ./.hypothesis).
if not os.environ.get("HYPOTHESIS_STORAGE_DIRECTORY"):
    set_hypothesis_home_dir(Path(tempfile.gettempdir()) / "hypothesis-celery-sqs-lambdas")


@dataclass
class SqsWorld:
    """The test topology's queues in moto, and helpers to put real task messages into their DLQs."""

    client: Any
    topology: Topology
    urls: dict[str, str]  # queue key -> source queue URL
    dlq_urls: dict[str, str]  # queue key -> DLQ URL
    app: Any

    def publish(self, task_name: str, queue: str = "default", kwargs: dict | None = None, **options) -> str:
        """Publish with the project's producer; the task id."""
        kwargs = dict(JOB_KWARGS) if kwargs is None else kwargs
        return self.app.send_task(task_name, kwargs=kwargs, queue=queue, **options).id

    def move_to_dlq(self, queue: str = "default") -> int:
        """Move every visible raw body of `queue` into its DLQ (what SQS's redrive does); how many moved."""
        moved = 0
        while True:
            messages = self.client.receive_message(
                QueueUrl=self.urls[queue], MaxNumberOfMessages=10, WaitTimeSeconds=0
            ).get("Messages", [])
            if not messages:
                return moved
            for message in messages:
                self.client.send_message(QueueUrl=self.dlq_urls[queue], MessageBody=message["Body"])
                self.client.delete_message(QueueUrl=self.urls[queue], ReceiptHandle=message["ReceiptHandle"])
                moved += 1

    def dead_letter(self, task_name: str, queue: str = "default", kwargs: dict | None = None, **options) -> str:
        """Publish one real task message and move it into the queue's DLQ; its task id."""
        task_id = self.publish(task_name, queue, kwargs, **options)
        assert self.move_to_dlq(queue) == 1
        return task_id

    def dead_letter_many(self, task_name: str, n: int, queue: str = "default", **options) -> list[str]:
        ids = [self.publish(task_name, queue, **options) for _ in range(n)]
        assert self.move_to_dlq(queue) == n
        return ids

    def put_raw(self, body: str, queue: str = "default") -> None:
        """A body that no Celery producer made, straight into the DLQ."""
        self.client.send_message(QueueUrl=self.dlq_urls[queue], MessageBody=body)

    def counts(self, url: str) -> tuple[int, int]:
        """(visible, in flight) of a queue."""
        attrs = self.client.get_queue_attributes(
            QueueUrl=url,
            AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
        )["Attributes"]
        return int(attrs["ApproximateNumberOfMessages"]), int(attrs["ApproximateNumberOfMessagesNotVisible"])

    def dlq_counts(self, queue: str = "default") -> tuple[int, int]:
        return self.counts(self.dlq_urls[queue])

    def source_counts(self, queue: str = "default") -> tuple[int, int]:
        return self.counts(self.urls[queue])

    def drain(self, url: str) -> list[dict]:
        """Receive every visible message, then make them all visible again (a peek)."""
        seen: dict[str, dict] = {}
        while True:
            messages = self.client.receive_message(
                QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=0, VisibilityTimeout=60
            ).get("Messages", [])
            fresh = [m for m in messages if m["MessageId"] not in seen]
            if not fresh:
                break
            seen.update((m["MessageId"], m) for m in fresh)
        for m in seen.values():
            self.client.change_message_visibility(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"], VisibilityTimeout=0)
        return list(seen.values())

    def empty(self) -> None:
        """Delete every visible message of every queue and DLQ (moto allows one PurgeQueue a minute)."""
        for url in [*self.urls.values(), *self.dlq_urls.values()]:
            for message in self.drain(url):
                self.client.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])

    def headers_in(self, url: str) -> list[dict]:
        """The Celery headers of every message in a queue (left visible)."""
        return [decode_sqs_body(m["Body"]).headers for m in self.drain(url)]


@pytest.fixture
def sqs_world(monkeypatch) -> Iterable[SqsWorld]:
    """moto's in-process SQS with the test topology's queues and DLQs; the Celery app publishing to it."""
    from workers.celery_app import app

    topology: Topology = settings.QUEUE_TOPOLOGY
    with mock_aws():
        client = boto3.client("sqs", region_name=REGION)
        urls = {key: client.create_queue(QueueName=q.sqs_name())["QueueUrl"] for key, q in topology.queues.items()}
        dlq_urls = {
            key: client.create_queue(QueueName=q.dlq_sqs_name())["QueueUrl"] for key, q in topology.queues.items()
        }
        boto3.client("s3", region_name=REGION).create_bucket(Bucket=CLAIM_CHECK_BUCKET)  # large bodies' claim check
        broker = BrokerEnv(account_id=LOCAL_ACCOUNT_ID, region=REGION, claim_check_bucket=CLAIM_CHECK_BUCKET)
        options = transport_options(topology, broker)
        monkeypatch.setitem(app.conf, "broker_url", "sqs://")
        monkeypatch.setitem(app.conf, "broker_transport_options", options)
        monkeypatch.setattr(app, "_pool", None)
        monkeypatch.setattr(app.amqp, "_producer_pool", None)
        # monkeypatch restores the app's own broker config and pools afterwards
        yield SqsWorld(client=client, topology=topology, urls=urls, dlq_urls=dlq_urls, app=app)


@pytest.fixture
def lambda_env(monkeypatch):
    """The Lambdas' environment: moto's default endpoints, no queue prefix, Powertools named."""
    from lambdas.dlq_alert import handler as alert_module
    from lambdas.dlq_replay import handler as replay_module

    for name in (
        "SQS_ENDPOINT_URL",
        "SNS_ENDPOINT_URL",
        "SQS_QUEUE_PREFIX",
        "DLQ_MAX_REPLAYS",
        "ALERT_TOPIC_ARN",
        "DEPLOYED_SERVICE",
    ):
        monkeypatch.delenv(name, raising=False)  # the test settings point SQS_ENDPOINT_URL at a free port
    monkeypatch.setenv("POWERTOOLS_METRICS_NAMESPACE", "CelerySqsTest")
    monkeypatch.setenv("POWERTOOLS_SERVICE_NAME", "celery-sqs-test")
    # Metrics() read the namespace when the modules were imported (default "CelerySqs")
    for module in (alert_module, replay_module):
        monkeypatch.setattr(module.metrics, "namespace", "CelerySqsTest")
        module.metrics.clear_metrics()


@pytest.fixture
def fast_lambda_sqs(lambda_env, monkeypatch):
    """The Lambdas' own SQS client (lambdas.config.sqs_client), wrapped in FastSqs: no 1 s wait at the end of
    each run. Tests of the plain client's behaviour do not use this."""
    from lambdas import config

    real = config.sqs_client
    monkeypatch.setattr(config, "sqs_client", lambda: FastSqs(real()))


@pytest.fixture
def replay_lambda(sqs_world, lambda_env):
    """The replay Lambda's handler, against moto with the test topology's queues."""
    from lambdas.dlq_replay.handler import handler

    return handler


@pytest.fixture
def alert_lambda(sqs_world, lambda_env):
    """The alert Lambda's handler, against moto with the test topology's queues."""
    from lambdas.dlq_alert.handler import handler

    return handler


def emf_lines(stdout: str) -> list[dict]:
    """The CloudWatch embedded-metric-format records printed by Powertools."""
    records = []
    for line in stdout.splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict) and "_aws" in record:
            records.append(record)
    return records


# --- SQS client proxies: the code under test gets these instead of the boto3 client ---------------------


@dataclass
class FastSqs:
    """Delegates to a boto3 SQS client, but receives without long polling: moto really waits WaitTimeSeconds
    on an empty queue, and every run ends on one. The asked-for waits are recorded."""

    client: Any
    waits: list = field(default_factory=list)

    def __getattr__(self, name):
        return getattr(self.client, name)

    def receive_message(self, **kwargs):
        self.waits.append(kwargs.get("WaitTimeSeconds"))
        return self.client.receive_message(**{**kwargs, "WaitTimeSeconds": 0})


def task_id_of(body: str) -> str | None:
    return decode_sqs_body(body).task_id


@dataclass
class PartialSendSqs(FastSqs):
    """SendMessageBatch that sends only the entries whose task id is not in `failing`; the rest Failed."""

    failing: frozenset = frozenset()

    def send_message_batch(self, *, QueueUrl, Entries):  # noqa: N803 (boto3's parameter names)
        ok = [e for e in Entries if task_id_of(e["MessageBody"]) not in self.failing]
        bad = [e for e in Entries if task_id_of(e["MessageBody"]) in self.failing]
        response = self.client.send_message_batch(QueueUrl=QueueUrl, Entries=ok) if ok else {"Successful": []}
        return {
            "Successful": response.get("Successful", []),
            "Failed": [
                {"Id": e["Id"], "SenderFault": False, "Code": "InternalError", "Message": "simulated"} for e in bad
            ],
        }


@dataclass
class PartialDeleteSqs(FastSqs):
    """DeleteMessageBatch that deletes nothing whose receipt handle is in `keep` and reports those Failed."""

    keep: set = field(default_factory=set)

    def delete_message_batch(self, *, QueueUrl, Entries):  # noqa: N803
        ok = [e for e in Entries if e["ReceiptHandle"] not in self.keep]
        bad = [e for e in Entries if e["ReceiptHandle"] in self.keep]
        response = self.client.delete_message_batch(QueueUrl=QueueUrl, Entries=ok) if ok else {"Successful": []}
        return {
            "Successful": response.get("Successful", []),
            "Failed": [{"Id": e["Id"], "SenderFault": False, "Code": "InternalError", "Message": "nope"} for e in bad],
        }


@dataclass
class RaisingSendSqs(FastSqs):
    """SendMessageBatch raises ClientError (e.g. the source queue was deleted); records the calls."""

    send_calls: int = 0
    delete_calls: int = 0

    def send_message_batch(self, **kwargs):
        self.send_calls += 1
        raise ClientError(
            {"Error": {"Code": "AWS.SimpleQueueService.NonExistentQueue", "Message": "gone"}}, "SendMessageBatch"
        )

    def delete_message_batch(self, **kwargs):
        self.delete_calls += 1
        return self.client.delete_message_batch(**kwargs)


class FakeClock:
    """A clock only `sleep` moves; sleeps are recorded."""

    def __init__(self, start: float):
        self.now = start
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


class FakeLambdaContext:
    """What Powertools' inject_lambda_context reads from the Lambda context."""

    function_name = "celery-sqs-test-dlq"
    function_version = "$LATEST"
    memory_limit_in_mb = 256
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:celery-sqs-test-dlq"
    aws_request_id = "00000000-0000-0000-0000-000000000001"
    log_group_name = "/aws/lambda/celery-sqs-test-dlq"
    log_stream_name = "stream"

    def __init__(self, remaining_ms: int = 300_000):
        self.remaining_ms = remaining_ms

    def get_remaining_time_in_millis(self) -> int:
        return self.remaining_ms
