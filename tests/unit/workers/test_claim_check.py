"""Unit tests of workers/claim_check.py through the project's SQS channel: a real kombu Connection, moto SQS and S3."""

from __future__ import annotations

import base64
import inspect
import json
import logging
from datetime import UTC, datetime, timedelta

import boto3
import pytest
from kombu import Connection, Producer
from kombu.exceptions import DecodeError
from kombu.transport import SQS
from moto import mock_aws

from core.envelope import decode_sqs_body, encode_sqs_body
from core.topology import DEFAULT_TOPOLOGY_PATH, load_topology
from devstack import processes
from workers import eta_hop
from workers.celery_config import BrokerEnv, transport_options
from workers.claim_check import HEADER, ClaimCheckOptions, ClaimChecks, Pointer, S3Bodies
from workers.publish_guards import PayloadTooLarge

ACCOUNT = "123456789012"
REGION = "us-east-1"
BUCKET = "claim-check-test"
MIB = 1_048_576


@pytest.fixture(scope="module")
def topology():
    return load_topology(DEFAULT_TOPOLOGY_PATH, profile="")


@pytest.fixture
def aws(topology, monkeypatch):
    """moto's SQS with every topology queue, and the claim-check bucket in its S3."""
    for name, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    with mock_aws():
        sqs = boto3.client("sqs", region_name=REGION)
        urls = {key: sqs.create_queue(QueueName=spec.name)["QueueUrl"] for key, spec in topology.queues.items()}
        s3 = boto3.client("s3", region_name=REGION)
        s3.create_bucket(Bucket=BUCKET)
        yield sqs, s3, urls


@pytest.fixture
def connection(aws, topology):
    broker = BrokerEnv(account_id=ACCOUNT, region=REGION, claim_check_bucket=BUCKET)
    options = {**transport_options(topology, broker), "delete_batch_seconds": 0}
    conn = Connection("sqs://", transport="workers.transport:Transport", transport_options=options)
    yield conn
    conn.release()


def _publish(connection, body, queue: str = "default", **headers) -> None:
    producer = Producer(connection.default_channel)
    producer.publish(body, routing_key=queue, exchange="", serializer="json", headers={"task": "jobs.echo", **headers})


def _objects(s3) -> list[str]:
    return [item["Key"] for item in s3.list_objects_v2(Bucket=BUCKET).get("Contents", [])]


def _raw_body(sqs, url: str) -> str:
    [message] = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, VisibilityTimeout=0)["Messages"]
    return message["Body"]


def test_a_body_over_the_limit_goes_to_s3_and_the_message_keeps_its_headers(aws, connection):
    # GIVEN `default` (1 MiB messages, claim check up to 16 MiB) and a 1.5 MB payload
    sqs, s3, urls = aws
    payload = {"blob": "b" * 1_500_000}

    # WHEN it is published
    _publish(connection, payload, id="task-1")

    # THEN the body is one S3 object holding the task's JSON, named after the queue and the task id
    [key] = _objects(s3)
    assert key.startswith("default/") and "/task-1/" in key
    stored = s3.get_object(Bucket=BUCKET, Key=key)["Body"].read()
    assert json.loads(stored) == payload
    # AND the SQS message is small, with kombu's headers and a pointer saying where, how big, which SHA-256
    body = _raw_body(sqs, urls["default"])
    assert len(body) < 4_096
    envelope = decode_sqs_body(body)
    assert envelope.task_name == "jobs.echo" and envelope.task_id == "task-1"
    assert envelope.body is None
    assert envelope.claim_check["key"] == key and envelope.claim_check["size"] == len(stored)


def test_a_body_under_the_limit_stays_in_the_message(aws, connection):
    # GIVEN a 500 KB payload: under 1 MiB once encoded
    sqs, s3, urls = aws
    # WHEN it is published THEN S3 is not used
    _publish(connection, {"blob": "s" * 500_000})
    assert _objects(s3) == []
    assert HEADER not in decode_sqs_body(_raw_body(sqs, urls["default"])).headers


def test_the_worker_side_gets_the_body_back_and_deletes_the_object_on_ack(aws, connection):
    # GIVEN a claim-checked message
    _sqs, s3, _urls = aws
    payload = {"blob": "r" * 2_000_000}
    _publish(connection, payload)
    assert len(_objects(s3)) == 1

    # WHEN kombu receives it (the channel's receive path)
    message = connection.SimpleQueue("default").get(timeout=1)

    # THEN the payload is the original body, the headers are kombu's
    assert message.payload == payload
    assert message.headers["task"] == "jobs.echo"
    # AND once acked, the object is deleted (from a thread of its own)
    message.ack()
    processes.wait_for(lambda: not _objects(s3), timeout=5, what="the object to be deleted")


def test_a_missing_object_is_an_error_naming_task_id_and_key_and_the_body_cannot_be_decoded(aws, connection, caplog):
    # GIVEN a claim-checked message whose object is gone
    _sqs, s3, _urls = aws
    _publish(connection, {"blob": "m" * 2_000_000}, id="task-9")
    [key] = _objects(s3)
    s3.delete_object(Bucket=BUCKET, Key=key)

    # WHEN kombu receives it
    # THEN the body it is given is no JSON: decoding fails, as Celery's does, and the worker rejects it
    # (workers/consumer.py) instead of running the task without its arguments
    with caplog.at_level(logging.ERROR, logger="workers.claim_check"), pytest.raises(DecodeError):
        connection.SimpleQueue("default").get(timeout=1)
    # AND an ERROR names the task, its id, the key and S3's answer
    [record] = [r for r in caplog.records if r.name == "workers.claim_check"]
    text = record.getMessage()
    assert "task jobs.echo id task-9" in text and key in text and "NoSuchKey" in text


def test_an_object_changed_in_s3_is_refused(aws, connection, caplog):
    # GIVEN a claim-checked message whose object was overwritten
    _sqs, s3, _urls = aws
    _publish(connection, {"blob": "o" * 2_000_000})
    [key] = _objects(s3)
    s3.put_object(Bucket=BUCKET, Key=key, Body=b'{"blob": "other"}')
    # WHEN it is received THEN the SHA-256 check refuses it: an ERROR, and a body that does not decode
    with caplog.at_level(logging.ERROR, logger="workers.claim_check"), pytest.raises(DecodeError):
        connection.SimpleQueue("default").get(timeout=1)
    assert "another SHA-256" in caplog.text


def test_a_retry_does_not_keep_its_originals_pointer(aws, connection):
    # GIVEN a message that carries another message's pointer (Celery copies custom headers into a retry)
    sqs, s3, urls = aws
    stale = Pointer(bucket=BUCKET, key="default/old", size=3, sha256="0" * 64).as_header()
    # WHEN it is published with a small body of its own
    _publish(connection, {"small": True}, **{HEADER: stale})
    # THEN it goes without the pointer: the worker must not swap its body for the original's
    assert HEADER not in decode_sqs_body(_raw_body(sqs, urls["default"])).headers
    # AND with a large body of its own it gets a new pointer to a new object
    _publish(connection, {"blob": "n" * 1_500_000}, **{HEADER: stale})
    [key] = _objects(s3)
    bodies = [
        decode_sqs_body(m["Body"])
        for m in sqs.receive_message(QueueUrl=urls["default"], MaxNumberOfMessages=10)["Messages"]
    ]
    assert [e.claim_check["key"] for e in bodies if e.claim_check] == [key]


def test_a_body_over_the_ceiling_is_refused_and_nothing_is_stored(aws, connection, topology):
    # GIVEN a payload over `default`'s claim_check_max_bytes
    sqs, s3, urls = aws
    ceiling = topology.queue("default").claim_check_max_bytes
    # WHEN published THEN it is refused naming the ceiling, and nothing reaches S3 or SQS
    with pytest.raises(PayloadTooLarge, match=f"claim_check_max_bytes of {ceiling} bytes"):
        _publish(connection, {"blob": "c" * (ceiling + 1)})
    assert _objects(s3) == []
    assert sqs.receive_message(QueueUrl=urls["default"]).get("Messages") is None


def test_a_queue_without_a_claim_check_still_refuses_what_is_over_its_limit(aws, connection):
    # GIVEN `high_priority` (1 MiB, no claim check)
    _sqs, s3, _urls = aws
    # WHEN a 2 MB payload is published THEN it is refused, as before, and S3 is not used
    with pytest.raises(PayloadTooLarge, match="1048576 bytes"):
        _publish(connection, {"blob": "h" * 2_000_000}, queue="high_priority")
    assert _objects(s3) == []


def test_without_a_bucket_a_claim_check_is_refused_clearly():
    # GIVEN claim-check options with a ceiling and no bucket (CLAIM_CHECK_BUCKET unset)
    checks = ClaimChecks(ClaimCheckOptions(bucket=None, endpoint_url=None, region=None, ceilings={"default": 4 * MIB}))
    # WHEN a body should go to S3 THEN the refusal names the variable
    with pytest.raises(PayloadTooLarge, match="CLAIM_CHECK_BUCKET is unset"):
        checks.check_in("default", {"body": "", "headers": {}})


def test_a_failed_delete_is_logged_and_left_to_the_lifecycle_rule(caplog):
    # GIVEN an S3 client that cannot delete
    class Failing:
        def delete_object(self, **_kwargs):
            raise OSError("endpoint down")

    options = ClaimCheckOptions(bucket=BUCKET, endpoint_url=None, region=None, ceilings={})
    checks = ClaimChecks(options, bodies=S3Bodies(BUCKET, client=Failing()))
    pointer = Pointer(bucket=BUCKET, key="k", size=1, sha256="0")
    # WHEN a claim-checked message is acked
    with caplog.at_level(logging.WARNING, logger="workers.claim_check"):
        checks.acked({HEADER: pointer.as_header()})
        checks.close()
    # THEN a warning names the key; nothing is raised into the ack
    assert "could not delete s3://claim-check-test/k" in caplog.text


def test_the_placeholder_body_is_not_json():
    # GIVEN a kombu message dict checked in
    stored = {}

    class Recording:
        bucket = BUCKET

        def put(self, key, data, *, content_type):
            stored[key] = data

    body = base64.b64encode(b'{"a": 1}').decode()
    message = {"body": body, "headers": {"id": "t"}, "properties": {"body_encoding": "base64"}}
    from workers.claim_check import check_in

    check_in(message, queue="default", bodies=Recording(), ceiling=MIB)
    # THEN the message body left behind decodes to text a JSON decoder refuses (an old worker rejects it)
    with pytest.raises(json.JSONDecodeError):
        json.loads(base64.b64decode(message["body"]))
    assert list(stored.values()) == [b'{"a": 1}']


# --- contracts with kombu: fail loudly if an upgrade changes what the hooks rely on ----------------------


def test_contract_kombu_builds_every_received_payload_in_message_to_python():
    # The receive hook overrides Channel._message_to_python(message, queue_name, q_url): kombu 5.7 calls it for
    # every received message on the async path (_on_messages_ready) and the sync one (_messages_to_python).
    assert list(inspect.signature(SQS.Channel._message_to_python).parameters) == [
        "self",
        "message",
        "queue_name",
        "q_url",
    ]
    assert "self._message_to_python(" in inspect.getsource(SQS.Channel._on_messages_ready)
    assert "self._message_to_python(" in inspect.getsource(SQS.Channel._messages_to_python)


def test_contract_kombu_puts_the_task_body_base64_encoded_in_the_message_dict(aws, connection):
    # check_in reads message["body"] as base64 when properties.body_encoding says so (kombu's virtual channel).
    sqs, _s3, urls = aws
    _publish(connection, {"x": 1})
    raw = json.loads(base64.b64decode(_raw_body(sqs, urls["default"])))
    assert raw["properties"]["body_encoding"] == "base64"
    assert json.loads(base64.b64decode(raw["body"])) == {"x": 1}


def test_a_far_eta_hop_resends_the_pointer_not_the_body(aws, connection):
    # GIVEN a claim-checked message as SQS delivers it, due in an hour (a hop re-sends what it received)
    sqs, s3, urls = aws
    _publish(connection, {"blob": "e" * 1_500_000}, id="task-eta")
    [message] = sqs.receive_message(QueueUrl=urls["default"], MaxNumberOfMessages=10)["Messages"]
    envelope = decode_sqs_body(message["Body"]).raw
    due = datetime.now(UTC) + timedelta(hours=1)
    message["Body"] = encode_sqs_body({**envelope, "headers": {**envelope["headers"], "eta": due.isoformat()}})

    # WHEN the channel's receive path plans hops (workers/eta_hop.py runs before the claim check's fetch)
    take, hops = eta_hop.plan([message], now=datetime.now(UTC), hold=5)

    # THEN it hops as received: a small body with the pointer, the object left for the hopped copy
    assert take == [] and [hop.task_id for hop in hops] == ["task-eta"]
    assert len(hops[0].message["Body"]) < 4_096
    assert decode_sqs_body(hops[0].message["Body"]).claim_check["key"] == _objects(s3)[0]
