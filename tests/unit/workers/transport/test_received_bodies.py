"""Unit tests of workers/transport/received_bodies.py: each received body is decoded once, kombu's way, for the ETA
hop's plan and for Celery, and what reaches Celery is what kombu's own decoding gives."""

from __future__ import annotations

import base64
import copy
import json
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from kombu.transport import SQS as kombu_sqs
from kombu.transport.SQS import Channel as KombuChannel

from core.envelope import encode_sqs_body
from workers import eta_hop


def _envelope(*, eta: datetime | None = None) -> dict:
    headers = {"task": "jobs.echo", "id": str(uuid.uuid4()), "eta": eta and eta.isoformat(), "expires": None}
    inner = base64.b64encode(json.dumps([[], {"job_id": 1}, {}]).encode()).decode()
    return {
        "body": inner,
        "content-encoding": "utf-8",
        "content-type": "application/json",
        "headers": headers,
        "properties": {"delivery_info": {"routing_key": "default"}, "body_encoding": "base64"},
    }


BODIES = {
    "kombu envelope, base64": encode_sqs_body(_envelope()),
    "kombu envelope, plain JSON": json.dumps(_envelope()),
    "a foreign producer's JSON": json.dumps({"order": 7, "note": "not celery"}),
    "a JSON list": json.dumps([1, 2, 3]),
    "plain text": "hello, not base64 and not JSON",
    "base64 of text": base64.b64encode(b"just text").decode(),
    "base64 of bytes that are not UTF-8": base64.b64encode(b"\xff\xfe\x00").decode(),
    "an empty body": "",
}


def _message(body: str, receipt: str) -> dict:
    return {
        "Body": body,
        "ReceiptHandle": receipt,
        "MessageId": str(uuid.uuid4()),
        "Attributes": {"ApproximateReceiveCount": "1"},
    }


@pytest.fixture
def channel(make_channel):
    channel, _receives = make_channel()
    delivered: list[dict] = []
    channel.connection._callbacks["default"] = delivered.append
    channel.delivered = delivered
    return channel


@pytest.fixture
def counted_loads(monkeypatch):
    """Every JSON decode of a body: kombu's (in its SQS channel) and the ETA hop's."""
    calls: list[str] = []

    def counting(real, where):
        def loads(text, *args, **kwargs):
            calls.append(where)
            return real(text, *args, **kwargs)

        return loads

    monkeypatch.setattr(kombu_sqs, "loads", counting(kombu_sqs.loads, "kombu"))
    monkeypatch.setattr(eta_hop, "loads", counting(eta_hop.loads, "eta hop"))
    return calls


def test_each_received_body_is_decoded_once_for_the_hop_plan_and_celery(channel, counted_loads):
    # GIVEN three task messages received from `default`, none due far ahead
    received = {"Messages": [_message(encode_sqs_body(_envelope()), f"r{i}") for i in range(3)]}
    # WHEN the channel gets the receive's answer
    count = channel._on_messages_ready("url", "default", received)
    # THEN all three reach Celery, and each body was JSON-decoded once (twice per message before: hop plan, kombu)
    assert count == 3 and len(channel.delivered) == 3
    assert len(counted_loads) == 3


@pytest.mark.parametrize("name", list(BODIES))
def test_what_reaches_celery_is_what_kombus_own_decoding_gives(channel, name):
    # GIVEN a received body of any shape
    message = _message(BODIES[name], "r1")
    expected = KombuChannel._message_to_python(channel, copy.deepcopy(message), "default", "url")
    # WHEN it goes through the channel's receive
    channel._on_messages_ready("url", "default", {"Messages": [copy.deepcopy(message)]})
    # THEN Celery gets the payload kombu's _message_to_python gives for it (delivery_info and tag included)
    assert channel.delivered == [expected]


def test_a_far_eta_still_hops_with_the_body_decoded_once(channel, counted_loads, monkeypatch):
    # GIVEN one message due in an hour and one due now
    sent: list = []
    monkeypatch.setattr(
        channel.eta_hops, "_sender", lambda: type("S", (), {"submit": lambda self, **kw: sent.append(kw)})()
    )
    far = _message(encode_sqs_body(_envelope(eta=datetime.now(UTC) + timedelta(hours=1))), "far")
    now = _message(encode_sqs_body(_envelope()), "now")
    # WHEN both are received
    channel._on_messages_ready("url", "default", {"Messages": [far, now]})
    # THEN the far one hops, the other reaches Celery, and each body was decoded once
    assert [hop.message["ReceiptHandle"] for hop in sent[0]["hops"]] == ["far"]
    assert [m["properties"]["delivery_tag"] for m in channel.delivered] == ["now"]
    assert len(counted_loads) == 2
    # AND nothing decoded is kept once the receive is handed over
    assert channel.received_bodies.pending() == 0


def test_a_message_nobody_consumes_leaves_nothing_decoded_behind(channel):
    # GIVEN no consumer on the queue any more (kombu releases the messages instead)
    channel.connection._callbacks.pop("default")
    channel._release_messages = lambda *args: None
    # WHEN a receive's answer arrives THEN nothing decoded is kept
    channel._on_messages_ready("url", "default", {"Messages": [_message(encode_sqs_body(_envelope()), "r1")]})
    assert channel.received_bodies.pending() == 0


def test_a_body_that_cannot_be_decoded_fails_as_kombu_fails_and_leaves_nothing_behind(channel):
    # GIVEN a malformed answer: a message whose Body is not text (a broken foreign client or proxy)
    message = _message("x", "r1")
    message["Body"] = None
    with pytest.raises(Exception) as kombus:
        KombuChannel._message_to_python(channel, copy.deepcopy(message), "default", "url")
    # WHEN it goes through the channel's receive
    with pytest.raises(Exception) as ours:
        channel._on_messages_ready("url", "default", {"Messages": [message]})
    # THEN it fails as kombu's own decoding fails, as it did before this change, and nothing decoded stays
    assert type(ours.value) is type(kombus.value)
    assert channel.received_bodies.pending() == 0 and channel.delivered == []


def test_a_message_delivered_twice_in_one_answer_reaches_celery_twice_as_kombu_would_give_it(channel):
    # GIVEN one answer holding the same SQS message twice (at-least-once delivery: a copy beside the original)
    message = _message(encode_sqs_body(_envelope()), "r1")
    expected = KombuChannel._message_to_python(channel, copy.deepcopy(message), "default", "url")
    # WHEN the channel hands the answer over
    count = channel._on_messages_ready("url", "default", {"Messages": [message, copy.deepcopy(message)]})
    # THEN Celery gets both, each what kombu gives (its duplicate guard, not the transport, decides), and nothing stays
    assert count == 2 and channel.delivered == [expected, expected]
    assert channel.received_bodies.pending() == 0


def test_an_answer_handed_over_while_another_is_leaves_each_its_own_bodies(channel):
    # GIVEN a consumer that, on the first message of one answer, makes the channel hand over a second answer
    # (a callback that receives again synchronously: re-entrant)
    first = [_message(encode_sqs_body(_envelope()), f"a{i}") for i in range(2)]
    second = [_message(encode_sqs_body(_envelope()), f"b{i}") for i in range(2)]
    delivered = channel.delivered
    expected = {
        m["ReceiptHandle"]: KombuChannel._message_to_python(channel, copy.deepcopy(m), "default", "url")
        for m in first + second
    }

    def consume(payload):
        delivered.append(payload)
        if len(delivered) == 1:
            channel._on_messages_ready("url", "default", {"Messages": second})

    channel.connection._callbacks["default"] = consume
    # WHEN the first answer arrives
    channel._on_messages_ready("url", "default", {"Messages": first})
    # THEN every message of both reached Celery once, each with its own payload, and nothing decoded stays
    assert sorted(p["properties"]["delivery_tag"] for p in delivered) == ["a0", "a1", "b0", "b1"]
    assert all(p == expected[p["properties"]["delivery_tag"]] for p in delivered)
    assert channel.received_bodies.pending() == 0
