"""Unit tests of the transport (workers/transport/): a real kombu Connection with our transport, SQS in moto."""

from __future__ import annotations

import base64
import json
import time
from datetime import UTC, datetime, timedelta

import boto3
import pytest
from kombu import Connection, Producer
from moto import mock_aws
from moto.sqs.models import sqs_backends

from core.topology import DEFAULT_TOPOLOGY_PATH, load_topology
from workers.celery_config import BrokerEnv, transport_options
from workers.publish_guards import DelayTooLong, PayloadTooLarge
from workers.transport import Channel, Transport

ACCOUNT = "123456789012"
REGION = "us-east-1"


@pytest.fixture(scope="module")
def topology():
    return load_topology(DEFAULT_TOPOLOGY_PATH, profile="")


@pytest.fixture
def sqs(topology, monkeypatch):
    """moto's in-process SQS with every topology queue (and DLQ) created."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    with mock_aws():
        client = boto3.client("sqs", region_name=REGION)
        urls = {}
        for key, spec in topology.queues.items():
            urls[key] = client.create_queue(QueueName=spec.name)["QueueUrl"]
            client.create_queue(QueueName=spec.dlq)
        yield client, urls


@pytest.fixture
def connection(sqs, topology):
    options = transport_options(topology, BrokerEnv(account_id=ACCOUNT, region=REGION))
    conn = Connection("sqs://", transport="workers.transport:Transport", transport_options=options)
    yield conn
    conn.release()


@pytest.fixture
def producer(connection):
    return Producer(connection.default_channel)


def _publish(producer: Producer, body, queue: str = "default", **kwargs) -> None:
    producer.publish(body, routing_key=queue, exchange="", serializer="json", **kwargs)


def _counts(client, url: str) -> tuple[int, int]:
    attrs = client.get_queue_attributes(
        QueueUrl=url,
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesDelayed"],
    )["Attributes"]
    return int(attrs["ApproximateNumberOfMessages"]), int(attrs["ApproximateNumberOfMessagesDelayed"])


def _stored(topology, key: str):
    """moto's stored messages of a topology queue."""
    return list(sqs_backends[ACCOUNT][REGION].queues[topology.queue(key).name]._messages)


def _decode(sqs_body: str) -> dict:
    """The kombu message dict carried in an SQS body (base64 of its JSON)."""
    return json.loads(base64.b64decode(sqs_body))


def test_connection_uses_guarded_transport(connection):
    # GIVEN a Connection naming our transport
    # WHEN its channel is opened
    channel = connection.default_channel
    # THEN it is the guarded channel of our transport
    assert isinstance(connection.transport, Transport)
    assert isinstance(channel, Channel)


def test_small_message_arrives(sqs, producer):
    # GIVEN the queues in moto
    client, urls = sqs
    # WHEN a small message is published to `default`
    _publish(producer, {"hello": "world"}, headers={"task": "jobs.echo"})
    # THEN it can be received at once, unchanged
    messages = client.receive_message(QueueUrl=urls["default"], MaxNumberOfMessages=10)["Messages"]
    assert len(messages) == 1
    message = _decode(messages[0]["Body"])
    assert json.loads(base64.b64decode(message["body"])) == {"hello": "world"}
    assert message["headers"] == {"task": "jobs.echo"}
    assert "DelaySeconds" not in message["properties"]
    # AND nothing went to the other queues
    assert _counts(client, urls["high_priority"]) == (0, 0)


def test_eta_becomes_delay_seconds(sqs, producer, topology):
    # GIVEN an ETA 5 s ahead, as Celery writes it for countdown=5
    client, urls = sqs
    eta = (datetime.now(UTC) + timedelta(seconds=5)).isoformat()
    # WHEN published
    _publish(producer, {"n": 1}, headers={"eta": eta, "task": "jobs.echo"})
    # THEN SQS holds it: not receivable now, counted as delayed
    assert client.receive_message(QueueUrl=urls["default"]).get("Messages", []) == []
    assert _counts(client, urls["default"]) == (0, 1)
    # AND it was sent with DelaySeconds 5 (ceil of the remaining ~4.99 s)
    [stored] = _stored(topology, "default")
    assert round((stored.delayed_until - stored.sent_timestamp) / 1000) == 5
    # AND the worker will not hold it again: the ETA header in the stored body is None
    body = _decode(stored.body)
    assert body["headers"]["eta"] is None
    assert body["headers"]["task"] == "jobs.echo"
    assert body["properties"]["DelaySeconds"] == 5


def test_naive_eta_is_read_as_utc(sqs, producer, topology):
    # GIVEN a naive ETA 5 s ahead in UTC
    eta = (datetime.now(UTC) + timedelta(seconds=5)).replace(tzinfo=None).isoformat()
    # WHEN published
    _publish(producer, {"n": 1}, queue="high_priority", headers={"eta": eta})
    # THEN it is delayed ~5 s, not by the local UTC offset
    [stored] = _stored(topology, "high_priority")
    assert round((stored.delayed_until - stored.sent_timestamp) / 1000) == 5


def test_past_eta_is_sent_without_delay(sqs, producer):
    # GIVEN an ETA already passed
    client, urls = sqs
    eta = (datetime.now(UTC) - timedelta(seconds=30)).isoformat()
    # WHEN published
    _publish(producer, {"n": 1}, headers={"eta": eta})
    # THEN it is receivable at once
    assert len(client.receive_message(QueueUrl=urls["default"])["Messages"]) == 1


def test_explicit_delay_seconds_property(sqs, producer, topology):
    # GIVEN kombu's own delay_seconds property (snake case) of 3 s
    client, urls = sqs
    # WHEN published
    _publish(producer, {"n": 1}, delay_seconds=3)
    # THEN SQS delays it 3 s
    assert _counts(client, urls["default"]) == (0, 1)
    [stored] = _stored(topology, "default")
    assert round((stored.delayed_until - stored.sent_timestamp) / 1000) == 3


def test_eta_over_900_travels_as_900_s_and_keeps_its_eta_for_the_hops(sqs, producer, topology):
    # GIVEN an ETA 1000 s ahead, longer than SQS holds a message
    eta = (datetime.now(UTC) + timedelta(seconds=1000)).isoformat()
    # WHEN published
    _publish(producer, {"n": 1}, headers={"eta": eta, "task": "jobs.echo"})
    # THEN SQS holds the first 900 s, and the ETA header stays as it was, for the worker to hop it on
    [stored] = _stored(topology, "default")
    assert round((stored.delayed_until - stored.sent_timestamp) / 1000) == 900
    assert _decode(stored.body)["headers"]["eta"] == eta


def test_explicit_delay_over_900_gets_an_eta_header(sqs, producer, topology):
    # GIVEN DelaySeconds=1000 as a property, with no ETA header (kombu alone would clamp it to 900)
    before = datetime.now(UTC)
    # WHEN published
    _publish(producer, {"n": 1}, DelaySeconds=1000)
    # THEN SQS holds 900 s and an ETA header 1000 s ahead tells the worker the rest
    [stored] = _stored(topology, "default")
    assert round((stored.delayed_until - stored.sent_timestamp) / 1000) == 900
    eta = datetime.fromisoformat(_decode(stored.body)["headers"]["eta"])
    assert timedelta(seconds=999) < eta - before < timedelta(seconds=1002)


def test_delay_over_the_retention_bound_refused_and_nothing_sent(sqs, producer, topology):
    # GIVEN an ETA one second past the default queue's bound (its 4 days' retention less 900 s)
    client, urls = sqs
    bound = topology.queue("default").retention_seconds - 900
    eta = (datetime.now(UTC) + timedelta(seconds=bound + 2)).isoformat()
    # WHEN published
    with pytest.raises(DelayTooLong) as excinfo:
        _publish(producer, {"n": 1}, headers={"eta": eta})
    # THEN the refusal names the queue and the bound
    assert "'default'" in str(excinfo.value)
    assert f"({bound} s: its message retention" in str(excinfo.value)
    # AND the queue stays empty
    assert _counts(client, urls["default"]) == (0, 0)


def test_oversized_body_refused_and_nothing_sent(sqs, producer):
    # GIVEN a ~600 KB payload for a queue without a claim check (it takes 1048576 bytes, SQS's maximum)
    client, urls = sqs
    # WHEN published
    with pytest.raises(PayloadTooLarge) as excinfo:
        _publish(producer, {"blob": "x" * 600_000}, queue="high_priority")
    # THEN the refusal names the queue, the encoded size and the limit
    message = str(excinfo.value)
    assert "'high_priority'" in message
    assert "1048576 bytes" in message
    encoded = int(message.split("the encoded message is ")[1].split(" bytes")[0])
    assert encoded > 600_000 * 1.7  # two base64 passes
    # AND nothing reached SQS
    assert _counts(client, urls["high_priority"]) == (0, 0)


def test_body_that_fits_only_before_encoding_is_refused(sqs, producer):
    # GIVEN a 590 KB payload: under 1 MiB as JSON, over it after kombu's two base64 passes
    client, urls = sqs
    # WHEN published THEN the guard measures the final SQS body and refuses it
    with pytest.raises(PayloadTooLarge):
        _publish(producer, {"blob": "x" * 590_000}, queue="high_priority")
    assert _counts(client, urls["high_priority"]) == (0, 0)


def test_queue_outside_topology_is_not_guarded_here(connection):
    # GIVEN a queue name with no limits in the transport options
    channel = connection.default_channel
    message = {"headers": {"eta": (datetime.now(UTC) + timedelta(seconds=5000)).isoformat()}}
    # WHEN the guards run for it THEN they leave it alone (kombu's predefined_queues check refuses it)
    assert channel.apply_publish_guards("not-a-topology-queue", message) is None
    assert message["headers"]["eta"] is not None


def test_celery_countdown_travels_as_delay_seconds(sqs, connection, settings):
    # GIVEN the project's Celery app and a connection to moto through our transport
    # (the app's routes come from the test topology; queue keys match the fixture's queues)
    from workers.celery_app import app

    client, urls = sqs
    # WHEN a task is sent with countdown=5
    asked_at = time.time()
    result = app.send_task("jobs.echo", kwargs={"job_id": 1, "message": "hi"}, countdown=5, connection=connection)
    sent_at = time.time()
    # THEN it lands in `default`, delayed by SQS and not receivable yet
    assert _counts(client, urls["default"]) == (0, 1)
    stored = sqs_backends[ACCOUNT][REGION].queues["default"]._messages[0]
    # due no earlier than the countdown asked, and at most the second DelaySeconds rounds up to later (the delay
    # is what is left of Celery's ETA when the guard runs: 4 s if sending took a second on a loaded machine)
    assert asked_at + 5 - 0.01 <= stored.delayed_until / 1000 <= sent_at + 5 + 1
    # AND the task message carries no ETA for the worker to hold
    headers = _decode(stored.body)["headers"]
    assert headers["task"] == "jobs.echo"
    assert headers["id"] == result.id
    assert headers["eta"] is None


def test_celery_countdown_over_900_travels_with_its_eta(sqs, connection):
    # GIVEN the Celery app
    from workers.celery_app import app

    # WHEN a task is sent with countdown=1000
    app.send_task("jobs.echo", kwargs={"job_id": 1, "message": "hi"}, countdown=1000, connection=connection)
    # THEN SQS holds it 900 s and Celery's ETA header stays for the worker's hop
    stored = sqs_backends[ACCOUNT][REGION].queues["default"]._messages[0]
    assert round((stored.delayed_until - stored.sent_timestamp) / 1000) == 900
    assert _decode(stored.body)["headers"]["eta"] is not None


def test_celery_countdown_over_the_retention_bound_refused(sqs, connection):
    # GIVEN the Celery app
    from workers.celery_app import app

    client, urls = sqs
    # WHEN a task is sent with a countdown of 5 days (default keeps messages 4)
    # THEN DelayTooLong reaches the caller and nothing is sent
    with pytest.raises(DelayTooLong):
        app.send_task("jobs.echo", kwargs={"job_id": 1, "message": "hi"}, countdown=5 * 86_400, connection=connection)
    assert _counts(client, urls["default"]) == (0, 0)


def test_snake_case_delay_over_the_bound_refused_when_camel_case_is_none(sqs, producer):
    # GIVEN delay_seconds of 5 days with DelaySeconds explicitly None (kombu: "not supplied under this spelling")
    client, urls = sqs
    # WHEN published THEN the guard refuses it and nothing is sent
    with pytest.raises(DelayTooLong):
        _publish(producer, {"n": 1}, DelaySeconds=None, delay_seconds=5 * 86_400)
    assert _counts(client, urls["default"]) == (0, 0)
