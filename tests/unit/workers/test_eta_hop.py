"""Unit tests of workers/eta_hop.py and the channel's hook, on moto; and the Celery ETA path the hop exists for."""

from __future__ import annotations

import base64
import json
import logging
import time
import uuid
from datetime import UTC, datetime, timedelta
from unittest.mock import Mock

import pytest
from celery.contrib.testing.mocks import TaskMessage
from moto.sqs.models import sqs_backends

from core.envelope import encode_sqs_body
from core.topology import DEFAULT_TOPOLOGY_PATH, load_topology
from tests.unit.workers.conftest import ACCOUNT, REGION
from workers import eta_hop

NOW = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)


def _body(*, eta: datetime | None = None, expires: datetime | None = None, task: str = "jobs.echo") -> str:
    """An SQS body as the project's (or a stock) producer sends it: base64 of a kombu envelope."""
    task_id = str(uuid.uuid4())
    headers = {"task": task, "id": task_id, "eta": eta and eta.isoformat(), "expires": expires and expires.isoformat()}
    inner = base64.b64encode(json.dumps([[], {"job_id": 1}, {}]).encode()).decode()
    return encode_sqs_body(
        {
            "body": inner,
            "content-encoding": "utf-8",
            "content-type": "application/json",
            "headers": headers,
            "properties": {"delivery_info": {"routing_key": "default"}, "body_encoding": "base64"},
        }
    )


def _message(body: str, receipt: str = "r") -> dict:
    return {"Body": body, "ReceiptHandle": receipt, "MessageId": str(uuid.uuid4())}


# --- which messages hop ---------------------------------------------------------------------------


def test_hold_bound_is_a_quarter_of_the_visibility_timeout_at_most_5_s():
    # GIVEN the test topology's 5 s and the production 90 s visibility timeouts
    # WHEN the hold bound is asked THEN the short one holds 1.25 s, the long one 5 s
    assert eta_hop.hold_seconds(5) == 1.25
    assert eta_hop.hold_seconds(90) == 5.0


def test_plan_takes_no_eta_and_a_near_eta_and_hops_a_far_one():
    # GIVEN messages without an ETA, due within the hold bound, and due in 2000 s
    none, near, far = (
        _message(_body()),
        _message(_body(eta=NOW + timedelta(seconds=1))),
        _message(_body(eta=NOW + timedelta(seconds=2000))),
    )
    # WHEN planned with a 1.25 s hold bound
    take, hops = eta_hop.plan([none, near, far], now=NOW, hold=1.25)
    # THEN the worker takes the first two; the far one hops for SQS's maximum, and says when it is due
    assert take == [none, near]
    [hop] = hops
    assert (hop.message, hop.delay, hop.due, hop.task) == (far, 900, NOW + timedelta(seconds=2000), "jobs.echo")


def test_the_last_leg_is_the_time_left_rounded_up():
    # GIVEN a message due in 100.2 s
    [hop] = eta_hop.plan([_message(_body(eta=NOW + timedelta(seconds=100.2)))], now=NOW, hold=1.25)[1]
    # THEN it hops for 101 s: never earlier than its ETA
    assert hop.delay == 101


def test_headers_typed_by_kombus_json_are_read_as_celery_reads_them():
    # GIVEN a producer that put a datetime ETA and a UUID id in the headers (kombu's JSON types them)
    from kombu.utils.json import dumps

    task_id = uuid.uuid4()
    envelope = {"headers": {"task": "jobs.echo", "id": task_id, "eta": NOW + timedelta(seconds=2000)}, "body": ""}
    message = _message(base64.b64encode(dumps(envelope).encode()).decode())
    # WHEN planned THEN it hops, due at that datetime, under that id
    [hop] = eta_hop.plan([message], now=NOW, hold=1.25)[1]
    assert (hop.due, hop.task_id) == (NOW + timedelta(seconds=2000), task_id)


def test_an_expired_message_is_taken_whatever_its_eta():
    # GIVEN a message due in an hour that expired a minute ago
    expired = _message(_body(eta=NOW + timedelta(hours=1), expires=NOW - timedelta(minutes=1)))
    # WHEN planned THEN the worker takes it (Celery discards it now, and the discard is recorded)
    assert eta_hop.plan([expired], now=NOW, hold=1.25) == ([expired], [])


@pytest.mark.parametrize(
    "body",
    ["%%% not base64 %%%", base64.b64encode(b"[1, 2]").decode(), base64.b64encode(b'{"headers": 3}').decode(), ""],
)
def test_a_body_that_is_no_envelope_is_left_to_celery(body):
    # GIVEN a body that is not a kombu envelope WHEN planned THEN the worker takes it (Celery rejects it)
    message = _message(body)
    assert eta_hop.plan([message], now=NOW, hold=1.25) == ([message], [])


def test_an_unparseable_eta_is_left_to_celery():
    # GIVEN an envelope whose eta is not a time
    body = encode_sqs_body({"headers": {"task": "jobs.echo", "id": "x", "eta": "tomorrow"}, "body": ""})
    message = _message(body)
    # WHEN planned THEN the worker takes it: Celery refuses it with its own error
    assert eta_hop.plan([message], now=NOW, hold=1.25) == ([message], [])


# --- sending: batches, failures -------------------------------------------------------------------


class FakeSQS:
    """Records the batch calls; `fail_send` raises, `failed_ids` are answered as failed entries."""

    def __init__(self, *, fail_send: Exception | None = None, failed_ids: tuple[str, ...] = ()):
        self.fail_send, self.failed_ids = fail_send, failed_ids
        self.sent: list[list[dict]] = []
        self.deleted: list[list[dict]] = []

    def send_message_batch(self, *, QueueUrl, Entries):  # noqa: N803 (boto3's names)
        if self.fail_send:
            raise self.fail_send
        self.sent.append(Entries)
        return {
            "Successful": [{"Id": e["Id"]} for e in Entries if e["Id"] not in self.failed_ids],
            "Failed": [{"Id": i, "Code": "InternalError", "Message": "boom"} for i in self.failed_ids],
        }

    def delete_message_batch(self, *, QueueUrl, Entries):  # noqa: N803
        self.deleted.append(Entries)
        return {"Successful": [{"Id": e["Id"]} for e in Entries], "Failed": []}


def _hops(count: int, *, body_bytes: int = 0) -> list[eta_hop.Hop]:
    padding = "x" * body_bytes
    return [
        eta_hop.Hop(
            message=_message(_body(eta=NOW + timedelta(seconds=2000)) + padding, receipt=f"r{i}"),
            task="jobs.echo",
            task_id=f"id{i}",
            due=NOW + timedelta(seconds=2000),
            delay=900,
        )
        for i in range(count)
    ]


def test_a_failed_send_deletes_nothing_and_raises_nothing(caplog):
    # GIVEN an endpoint that times out
    client = FakeSQS(fail_send=TimeoutError("read timeout"))
    # WHEN two messages hop
    hopped = eta_hop.send_hops(client, queue="default", queue_url="u", hops=_hops(2))
    # THEN none hopped, no received copy was deleted (they come back after the visibility timeout), and it is logged
    assert hopped == 0 and client.deleted == []
    assert "eta hop failed on queue default" in caplog.text


def test_only_the_copies_that_were_sent_are_deleted(caplog):
    # GIVEN SQS refuses the second entry of a batch
    client = FakeSQS(failed_ids=("1",))
    # WHEN three messages hop
    hopped = eta_hop.send_hops(client, queue="default", queue_url="u", hops=_hops(3))
    # THEN the first and third are deleted, the second stays (it comes back), and its failure is named
    assert hopped == 2
    assert [e["ReceiptHandle"] for e in client.deleted[0]] == ["r0", "r2"]
    assert "id1" in caplog.text and "InternalError" in caplog.text


def test_hops_go_in_batches_of_ten_and_at_most_1_mib():
    # GIVEN 12 small hops, then 3 hops of 400 KB each
    client = FakeSQS()
    eta_hop.send_hops(client, queue="default", queue_url="u", hops=_hops(12))
    big = FakeSQS()
    eta_hop.send_hops(big, queue="default", queue_url="u", hops=_hops(3, body_bytes=400_000))
    # THEN 10 + 2 entries; the big ones two and one (a SendMessageBatch carries at most 1 MiB)
    assert [len(batch) for batch in client.sent] == [10, 2]
    assert [len(batch) for batch in big.sent] == [2, 1]


# --- the channel's hook, on moto --------------------------------------------------------------------


@pytest.fixture
def hop_channel(make_channel):
    """A channel consuming `default` whose callback records what reaches Celery."""
    channel, _receives = make_channel()
    delivered: list[dict] = []
    channel.connection._callbacks["default"] = delivered.append
    return channel, delivered


def test_a_far_eta_hops_unchanged_and_only_the_rest_reaches_celery(hop_channel, make_channel, caplog):
    # GIVEN a message due in 2000 s (with message attributes, e.g. a claim-check pointer) and one without ETA,
    # both received from `default`
    channel, delivered = hop_channel
    client = make_channel.client
    url = client.get_queue_url(QueueName="default")["QueueUrl"]
    far = _body(eta=datetime.now(UTC) + timedelta(seconds=2000))
    attributes = {
        "pointer": {"DataType": "String", "StringValue": "s3://bucket/key"},
        "raw": {"DataType": "Binary", "BinaryValue": b"\x00\x01"},
    }
    client.send_message(QueueUrl=url, MessageBody=far, MessageAttributes=attributes)
    client.send_message(QueueUrl=url, MessageBody=_body())
    received = client.receive_message(QueueUrl=url, MaxNumberOfMessages=10, MessageAttributeNames=["All"])
    # The async client answers in the JSON protocol: a BinaryValue arrives as base64 text.
    for message in received["Messages"]:
        for value in (message.get("MessageAttributes") or {}).values():
            if "BinaryValue" in value:
                value["BinaryValue"] = base64.b64encode(value["BinaryValue"]).decode()

    # WHEN the channel gets them from its receive
    with caplog.at_level(logging.INFO, logger="workers.eta_hop"):
        count = channel._on_messages_ready(url, "default", received)
        channel.eta_hops.close()  # the hop goes from a thread of its own: wait for it

    # THEN only the message without ETA reached Celery, and the loop polls again at once (2 received)
    assert count == 2
    assert [json.loads(base64.b64decode(m["body"]))[1] for m in delivered] == [{"job_id": 1}]
    # AND the far one is back in SQS, delayed 900 s, with the same body and attributes; its received copy is gone
    stored = list(sqs_backends[ACCOUNT][REGION].queues["default"]._messages)
    [hopped] = [m for m in stored if m.body == far]
    assert round((hopped.delayed_until - hopped.sent_timestamp) / 1000) == 900
    assert hopped.message_attributes["pointer"] == {"DataType": "String", "StringValue": "s3://bucket/key"}
    assert hopped.message_attributes["raw"] == {"DataType": "Binary", "BinaryValue": b"\x00\x01"}
    assert len(stored) == 2  # the hopped copy and the one Celery holds; the far one's received copy was deleted
    # AND the hop is logged with the prefix the soak counts
    assert [r.getMessage() for r in caplog.records if r.getMessage().startswith("eta hop: jobs.echo[")]


def test_a_failure_to_plan_gives_celery_every_message_as_received(hop_channel, make_channel, monkeypatch):
    # GIVEN a planning bug
    channel, delivered = hop_channel
    monkeypatch.setattr(eta_hop, "plan", Mock(side_effect=RuntimeError("bug")))
    received = {"Messages": [_message(_body(eta=datetime.now(UTC) + timedelta(hours=1)))]}
    # WHEN a receive arrives THEN the worker keeps going and Celery gets the message (the old behaviour)
    assert channel._on_messages_ready("url", "default", received) == 1
    assert len(delivered) == 1


def test_the_hop_thread_outlives_a_failure_and_sends_the_next_hops():
    # GIVEN a sender whose first client lookup fails
    client = FakeSQS()
    lookups = iter([RuntimeError("no client"), client])

    def client_for(_queue):
        answer = next(lookups)
        if isinstance(answer, Exception):
            raise answer
        return answer

    sender = eta_hop.HopSender(client_for=client_for)
    # WHEN two receives hop
    sender.submit(queue="default", queue_url="u", hops=_hops(1))
    sender.submit(queue="default", queue_url="u", hops=_hops(2))
    sender.close()
    # THEN the second went out: the thread did not die with the first
    assert sender.hopped == 2 and [len(batch) for batch in client.sent] == [2]


# --- contract: the Celery internal the hop exists for --------------------------------------------


def test_contract_celerys_strategy_holds_a_future_eta_in_its_timer_unacked():
    # GIVEN Celery's default strategy for a project task, on a stand-in consumer
    import api.jobs.tasks  # noqa: F401  (registers the project's tasks)
    import api.newsletter.tasks  # noqa: F401
    from workers.celery_app import app

    task = app.tasks["jobs.echo"]
    consumer = Mock(disable_rate_limits=True, event_dispatcher=None, task_buckets={})
    consumer.controller.state.revoked = set()
    handle = task.start_strategy(app, consumer)
    eta = datetime.now(UTC) + timedelta(seconds=60)
    message = TaskMessage("jobs.echo", kwargs={"job_id": 1, "message": "m"}, eta=eta.isoformat())
    message.delivery_info, message.properties = {"routing_key": "default"}, {}
    ack = Mock()

    # WHEN the message arrives
    handle(message, None, ack, Mock(), [])

    # THEN Celery holds it in the consumer's timer until its ETA (outside prefetch and any visibility
    # extension): neither run nor acked. If an upgrade changes this, revisit workers/eta_hop.py.
    consumer.timer.call_at.assert_called_once()
    (when, callback, (request,)), _ = consumer.timer.call_at.call_args
    assert callback is consumer.apply_eta_task and request.id == message.headers["id"]
    assert 55 < when - time.monotonic() <= 60  # kombu's timer runs on the monotonic clock
    consumer.on_task_request.assert_not_called()
    ack.assert_not_called()


def test_contract_kombus_receive_callback_takes_the_raw_sqs_answer():
    # The hook overrides kombu's Channel._on_messages_ready(queue_url, queue_name, messages), where messages is
    # the ReceiveMessage answer ({"Messages": [...]}) and each message is delivered to _callbacks[queue_name].
    import inspect

    from kombu.transport.SQS import Channel as KombuChannel

    assert list(inspect.signature(KombuChannel._on_messages_ready).parameters) == ["self", "queue", "qname", "messages"]
    source = inspect.getsource(KombuChannel._get_async)
    assert "transform(\n                self._on_messages_ready, callback, q_url, queue\n" in source


def test_the_default_topology_holds_nothing_longer_than_its_visibility():
    # GIVEN every queue of the production topology
    topology = load_topology(DEFAULT_TOPOLOGY_PATH, profile="")
    # THEN the hold bound is well inside each visibility timeout
    for spec in topology.queues.values():
        assert eta_hop.hold_seconds(spec.visibility_timeout) <= spec.visibility_timeout / 4
