"""Contract: every private kombu name workers/transport/ relies on (kombu 5.7.0), so an upgrade that moves one
fails here, loudly, instead of silently turning the transport back into kombu's own."""

from __future__ import annotations

import inspect

from kombu.asynchronous import http as kombu_http
from kombu.asynchronous.aws.connection import AsyncConnection
from kombu.asynchronous.aws.sqs.connection import AsyncSQSConnection
from kombu.asynchronous.http.curl import CurlClient
from kombu.transport import SQS
from kombu.transport.virtual import base as virtual

from workers.transport import Channel, QoS


def params(function) -> list[str]:
    return list(inspect.signature(function).parameters)


def source(function) -> str:
    return inspect.getsource(function)


def test_the_channel_methods_we_override_keep_their_signatures():
    # GIVEN kombu's SQS channel; WHEN we read the methods our channel overrides THEN they take what we pass on
    assert params(SQS.Channel._put) == ["self", "queue", "message", "kwargs"]
    assert params(SQS.Channel._message_to_python) == ["self", "message", "queue_name", "q_url"]
    assert params(SQS.Channel._on_messages_ready) == ["self", "queue", "qname", "messages"]
    assert params(SQS.Channel._schedule_queue) == ["self", "queue"]
    assert params(SQS.Channel._get_bulk_async) == ["self", "queue", "callback"]
    assert params(SQS.Channel._get_async) == ["self", "queue", "count", "callback"]
    assert params(SQS.Channel._loop1) == ["self", "queue", "messages_fetched"]
    assert params(SQS.Channel.asynsqs) == ["self", "queue"]
    assert params(SQS.Channel.basic_ack) == ["self", "delivery_tag", "multiple"]
    assert params(SQS.Channel.basic_reject) == ["self", "delivery_tag", "requeue"]
    assert params(virtual.Channel.basic_ack) == ["self", "delivery_tag", "multiple"]
    assert params(SQS.QoS.ack) == ["self", "delivery_tag"]
    assert params(SQS.QoS.reject) == ["self", "delivery_tag", "requeue"]
    assert params(SQS.Channel._new_boto_client) == [
        "self",
        "service",
        "region",
        "access_key_id",
        "secret_access_key",
        "session_token",
        "config",
    ]
    # (kombu makes every client there, each in a boto3.Session of its own: workers/transport/boto_loader.py)
    assert "self._new_boto_client(" in source(SQS.Channel.new_sqs_client)
    assert "boto3.Session(" in source(SQS.Channel._new_boto_client)
    # AND our overrides are the ones kombu calls
    overridden = ("_put", "_message_to_python", "_on_messages_ready", "_schedule_queue", "asynsqs", "basic_ack")
    for name in (*overridden, "_new_boto_client"):
        assert getattr(Channel, name) is not getattr(SQS.Channel, name), name
    assert Channel.QoS is QoS and issubclass(QoS, SQS.QoS)


def test_the_receive_loop_is_schedule_get_bulk_async_then_loop1():
    # GIVEN kombu's receive loop per queue, which the pacer parks and resumes
    schedule = source(SQS.Channel._schedule_queue)
    # THEN _schedule_queue receives through _get_bulk_async with _loop1 as its callback, only for active queues
    assert "queue in self._active_queues" in schedule
    assert "self._get_bulk_async(" in schedule and "self._loop1" in schedule
    # AND _loop1 polls again at once after a receive that fetched something, else after polling_interval
    loop1 = source(SQS.Channel._loop1)
    assert "if messages_fetched:" in loop1
    assert "self.hub.call_soon(self._schedule_queue, queue)" in loop1
    assert "polling_interval" in loop1
    # AND the count _on_messages_ready returns is what _loop1 gets (the receive answer passes through it)
    assert "transform(" in source(SQS.Channel._get_async) and "self._on_messages_ready" in source(
        SQS.Channel._get_async
    )
    # AND the first poll of a consumer is scheduled on the hub
    assert "self.hub.call_soon(self._schedule_queue, queue)" in source(SQS.Channel.basic_consume)
    # AND the receive asks for kombu's estimate of free slots
    assert "self.qos.can_consume_max_estimate()" in source(SQS.Channel._get_message_estimate)
    assert SQS.SQS_MAX_MESSAGES == 10


def test_the_qos_counts_slots_as_the_pacer_reads_them():
    # GIVEN kombu's virtual QoS THEN it has the names the pacer and the acks read
    for name in ("can_consume_max_estimate", "prefetch_count", "get"):
        assert hasattr(SQS.QoS, name), name
    # AND get() finds a delivered message by its tag (the forecast reads its queue before the ack)
    assert "return self._delivered[delivery_tag]" in source(virtual.QoS.get)


def test_a_restored_message_comes_back_through_put_marked_redelivered():
    # GIVEN kombu's restore (a lost pool child, a requeue, shutdown) THEN it is a _put with `redelivered`, which
    # the channel turns into a hand-back
    restore = source(virtual.Channel._restore)
    assert "message['redelivered'] = True" in restore
    assert "self._put(queue, message)" in restore


def test_a_received_message_carries_its_sqs_message_and_queue_in_delivery_info():
    # GIVEN kombu's envelope of a received message THEN the acks and the heartbeat find the receipt handle there
    envelope = source(SQS.Channel._envelope_payload)
    assert "'sqs_message'" in envelope and "'sqs_queue'" in envelope


def test_the_async_client_looks_its_answer_handler_up_on_the_instance():
    # GIVEN kombu's async SQS client THEN workers/receive_failures.py can wrap _on_list_ready per instance
    assert params(AsyncSQSConnection._on_list_ready) == ["self", "parent", "markers", "operation", "response"]
    assert "self._on_list_ready" in source(AsyncSQSConnection.get_list)


def test_the_async_client_receives_with_a_count_a_wait_and_a_callback():
    # GIVEN kombu's async receive THEN a receive ahead can ask for its own count and a short wait
    assert params(AsyncSQSConnection.receive_message) == [
        "self",
        "queue",
        "queue_url",
        "number_messages",
        "visibility_timeout",
        "attributes",
        "wait_time_seconds",
        "callback",
    ]
    assert "self._get_from_sqs(" in source(SQS.Channel._get_async)
    assert "connection.receive_message(" in source(SQS.Channel._get_from_sqs)


def test_the_curl_client_takes_curls_timer_through_set_timeout_and_is_cached_on_the_hub():
    # GIVEN kombu's pycurl client THEN curl's timer callback is _set_timeout(msecs), which workers/transport/
    # curl_timer.py overrides, and _timeout_check is what it runs
    assert "pycurl.M_TIMERFUNCTION, self._set_timeout" in source(CurlClient.__init__)
    assert params(CurlClient._set_timeout) == ["self", "msecs"]
    assert "self._closed" in source(CurlClient.close) and callable(CurlClient._timeout_check)
    # AND the event loop's client is cached on the hub, where every async SQS connection finds it
    assert "hub._current_http_client" in source(kombu_http.get_client)
    assert "http_client or get_client()" in source(AsyncConnection.__init__)
