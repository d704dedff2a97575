"""A ReceiveMessage answered with an error (throttled, AccessDenied, ...) is a failed poll, never an exception
that ends the worker or its receive loop; a hand-back SQS refuses never ends the worker either."""

from __future__ import annotations

import logging

import pytest
from botocore.stub import Stubber
from kombu.asynchronous import Hub, get_event_loop, set_event_loop
from kombu.asynchronous.aws.sqs.connection import AsyncSQSConnection

from workers.receive_failures import FailedReceive, guard_receives

THROTTLED = b'{"__type":"com.amazonaws.sqs#RequestThrottled","message":"Rate exceeded"}'


class _Response:
    """What kombu's pycurl client hands to AsyncSQSConnection._on_list_ready."""

    def __init__(self, status: int, body: bytes):
        self.status, self.reason, self._body = status, "Bad Request", body

    def read(self) -> bytes:
        return self._body


@pytest.fixture(autouse=True)
def event_loop():
    """kombu's async client takes its curl client from the current event loop."""
    previous, hub = get_event_loop(), Hub()
    set_event_loop(hub)
    yield hub
    hub.close()
    set_event_loop(previous)


def _connection(make_channel) -> AsyncSQSConnection:
    channel, _ = make_channel()
    return AsyncSQSConnection(sqs_connection=channel.sqs(queue="default"), region="us-east-1")


def test_contract_kombus_async_receive_raises_on_a_throttled_answer(make_channel):
    # GIVEN kombu's own async connection, unguarded
    connection = _connection(make_channel)
    # WHEN a ReceiveMessage is answered 400 RequestThrottled
    # THEN kombu 5.7 raises a bare Exception (an upgrade that stops raising makes the guard unneeded: look again)
    with pytest.raises(Exception, match="HTTP 400"):
        connection._on_list_ready(None, [], "ReceiveMessage", _Response(400, THROTTLED))


def test_contract_get_list_looks_its_answer_handler_up_on_the_instance(make_channel):
    # GIVEN a guarded connection whose request is captured instead of sent
    connection = guard_receives(_connection(make_channel))
    sent = []
    connection.make_request = lambda *args, callback=None, **kwargs: sent.append(callback)
    answers = []

    # WHEN a receive is made and its answer is a throttling error
    connection.get_list("ReceiveMessage", {}, [], "/queue", callback=answers.append)
    sent[0](_Response(400, THROTTLED))

    # THEN the caller's callback gets a FailedReceive naming the status and the error, and nothing raised
    [answer] = answers
    assert isinstance(answer, FailedReceive)
    assert "400" in str(answer) and "RequestThrottled" in str(answer)


def test_guarding_twice_wraps_once(make_channel):
    connection = _connection(make_channel)
    assert guard_receives(guard_receives(connection))._on_list_ready is guard_receives(connection)._on_list_ready


def test_the_channels_async_client_is_guarded(make_channel):
    # GIVEN the project's channel  WHEN it makes its async client for a queue
    channel, _ = make_channel()
    connection = channel.asynsqs(queue="default")
    # THEN a failed receive arrives as a FailedReceive
    assert isinstance(connection._on_list_ready(None, [], "ReceiveMessage", _Response(400, THROTTLED)), FailedReceive)


def test_a_failed_receive_is_a_failed_poll_logged_once(make_channel, caplog):
    # GIVEN the channel
    channel, _ = make_channel()
    failed = FailedReceive("Request HTTP Error HTTP 400 Bad Request (RequestThrottled)")

    # WHEN two receives in a row fail
    with caplog.at_level(logging.WARNING):
        first = channel._on_messages_ready("url", "default", failed)
        second = channel._on_messages_ready("url", "default", failed)

    # THEN neither raises, no message is taken, and one warning names the reason
    assert (first, second) == (0, 0)
    warnings = [r.getMessage() for r in caplog.records if "receive on default failed" in r.getMessage()]
    assert len(warnings) == 1 and "RequestThrottled" in warnings[0]


def test_a_hand_back_sqs_refuses_is_logged_not_raised(make_channel, caplog):
    # GIVEN a message whose receipt handle SQS no longer accepts (a worker paused past the visibility timeout)
    channel, _ = make_channel()
    client = channel.sqs(queue="default")
    with Stubber(client) as stub, caplog.at_level(logging.WARNING):
        stub.add_client_error("change_message_visibility", "ReceiptHandleIsInvalid", "The receipt handle is invalid")
        # WHEN the worker hands it back (a requeue, a lost child, shutdown)
        channel.hand_back("default", {"properties": {"delivery_tag": "stale-handle"}})
    # THEN nothing raised, and the warning says what happens to it
    assert any(
        "could not hand back" in r.getMessage() and "ReceiptHandleIsInvalid" in r.getMessage() for r in caplog.records
    )
