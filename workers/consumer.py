"""The worker's Consumer: a message it cannot decode or route is rejected into the DLQ, and its log says so."""

from __future__ import annotations

import logging

from celery import signals
from celery.exceptions import NotRegistered
from celery.utils.objects import Bunch
from celery.worker.consumer import Consumer as CeleryConsumer
from kombu.utils.encoding import safe_repr

logger = logging.getLogger(__name__)

# What happens to a rejected message on a queue with a redrive policy (kombu's basic_reject keeps it then).
KEPT = "kept: the redrive policy moves it to the DLQ after maxReceiveCount receives"


def _describe(message) -> str:
    return (
        f"content type {message.content_type!r}, headers {safe_repr(message.headers)}, "
        f"delivery info {safe_repr(message.delivery_info)}"
    )


class Consumer(CeleryConsumer):
    """Celery acks (deletes) an undecodable message "so it doesn't enter a loop". On SQS the redrive
    policy already ends the loop after maxReceiveCount receives, so reject it instead: it is kept, in
    the DLQ, where an operator can see it.

    For a message that is not a Celery task, or names a task no worker has, Celery rejects too but logs
    "Received and deleted unknown message" / "has been ignored and discarded": false with a redrive
    policy. These log one true line per receive instead, and otherwise do what Celery does."""

    def on_decode_error(self, message, exc):
        logger.error(
            "cannot decode a message (%s: %s; %s): rejected, %s",
            type(exc).__name__,
            exc,
            _describe(message),
            KEPT,
        )
        message.reject_log_error(logger, self.connection_errors)

    def on_unknown_message(self, body, message):
        logger.warning("Received a message that is not a Celery task (%s): %s", _describe(message), KEPT)
        message.reject_log_error(logger, self.connection_errors)
        signals.task_rejected.send(sender=self, message=message, exc=None)

    def on_unknown_task(self, body, message, exc):
        headers = message.headers or {}
        name, task_id = headers.get("task"), headers.get("id")
        logger.error(
            "Received unregistered task %s[%s] (is its module imported by this worker?): %s",
            name,
            task_id,
            KEPT,
        )
        message.reject_log_error(logger, self.connection_errors)
        # As Celery does: a result backend (if any) shows the task failed here, and the signal is sent.
        request = Bunch(
            name=name,
            chord=None,
            root_id=headers.get("root_id"),
            correlation_id=message.properties.get("correlation_id"),
            reply_to=message.properties.get("reply_to"),
            errbacks=None,
        )
        if task_id:
            self.app.backend.mark_as_failure(task_id, NotRegistered(name), request=request)
        signals.task_unknown.send(sender=self, message=message, exc=exc, name=name, id=task_id)

    def on_invalid_task(self, body, message, exc):
        logger.error("Received an invalid task message (%s; %s): %s", exc, _describe(message), KEPT)
        message.reject_log_error(logger, self.connection_errors)
        signals.task_rejected.send(sender=self, message=message, exc=exc)
