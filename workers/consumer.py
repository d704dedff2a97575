"""The worker's Consumer: a message whose body cannot be decoded goes to the DLQ instead of being deleted."""

from __future__ import annotations

import logging

from celery.worker.consumer import Consumer as CeleryConsumer

logger = logging.getLogger(__name__)


class Consumer(CeleryConsumer):
    """Celery acks (deletes) an undecodable message "so it doesn't enter a loop". On SQS the redrive
    policy already ends the loop after maxReceiveCount receives, so reject it instead: it is kept, in
    the DLQ, where an operator can see it."""

    def on_decode_error(self, message, exc):
        logger.error(
            "cannot decode a message (%s: %s; content type %r, headers %r): rejected, the queue's redrive "
            "policy moves it to the DLQ",
            type(exc).__name__,
            exc,
            message.content_type,
            message.headers,
        )
        message.reject_log_error(logger, self.connection_errors)
