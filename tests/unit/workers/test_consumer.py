"""Unit tests of workers/consumer.py through Celery's own task handler (the hooks it calls are the contract)."""

from __future__ import annotations

import logging
from unittest.mock import Mock

import pytest
from celery import signals
from celery.contrib.testing.mocks import TaskMessage

from workers.consumer import KEPT, Consumer

CELERYS_FALSE_LINES = ("Received and deleted unknown message", "ignored and discarded")


@pytest.fixture
def handler():
    """Celery's on_task_received (Consumer.create_task_handler) bound to the project's Consumer."""
    from workers.celery_app import app

    consumer = Consumer.__new__(Consumer)  # only what create_task_handler and the hooks read
    consumer.app, consumer.strategies, consumer.on_task_message = app, {}, set()
    consumer.call_soon_ack, consumer.connection_errors, consumer.event_dispatcher = Mock(), (), None
    return consumer.create_task_handler()


def _raw_message(headers, payload):
    message = Mock(headers=headers, content_type="application/json", delivery_info={"routing_key": "default"})
    message.decode.return_value = payload
    message.properties = {}
    return message


def _logged(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records]


def test_contract_an_unregistered_task_is_rejected_and_logged_as_kept_once(handler, caplog):
    # GIVEN a Celery message naming a task no worker has
    message = TaskMessage("no.such.task", id="t-1")
    message.properties = {}
    unknown = []

    def spy(**kwargs):
        unknown.append(kwargs["id"])

    signals.task_unknown.connect(spy, weak=False)
    try:
        # WHEN Celery's handler receives it
        with caplog.at_level(logging.INFO):
            handler(message)
    finally:
        signals.task_unknown.disconnect(spy)
    # THEN it is rejected (kept for the redrive policy), one true line names it, Celery's false one is absent
    message.reject_log_error.assert_called_once()
    message.ack.assert_not_called()
    [line] = [m for m in _logged(caplog) if KEPT in m]
    assert "no.such.task[t-1]" in line
    assert not [m for m in _logged(caplog) for false in CELERYS_FALSE_LINES if false in m]
    # AND Celery's signal still fires
    assert unknown == ["t-1"]


@pytest.mark.parametrize(
    "headers,payload",
    [({}, {"hello": "world"}), (None, None)],
    ids=["no task header (protocol 1 path)", "no headers at all"],
)
def test_contract_a_non_celery_message_is_rejected_and_logged_as_kept_once(handler, caplog, headers, payload):
    # GIVEN a message that is not a Celery task
    message = _raw_message(headers, payload)
    # WHEN Celery's handler receives it
    with caplog.at_level(logging.INFO):
        handler(message)
    # THEN it is rejected with one true line, and no line says it was deleted
    message.reject_log_error.assert_called_once()
    message.ack.assert_not_called()
    assert len([m for m in _logged(caplog) if KEPT in m]) == 1
    assert not [m for m in _logged(caplog) for false in CELERYS_FALSE_LINES if false in m]


def test_an_invalid_task_message_is_logged_as_kept(caplog):
    # GIVEN Celery's hook for an invalid task message (a bad eta/expires value, for one)
    consumer = Consumer.__new__(Consumer)
    consumer.connection_errors = ()
    message = _raw_message({"task": "jobs.echo"}, None)
    # WHEN called THEN the message is rejected and the line is true
    consumer.on_invalid_task(None, message, ValueError("invalid ETA value 'tomorrow'"))
    message.reject_log_error.assert_called_once()
    [line] = [m for m in _logged(caplog) if KEPT in m]
    assert "invalid ETA value" in line
