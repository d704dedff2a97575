"""A ReceiveMessage answered with an error is a failed poll, never an exception in the worker's event loop.

kombu 5.7's async SQS client (AsyncSQSConnection._on_list_ready) turns a timeout or a 5xx into `[]`, but raises a
bare Exception for any other status: a throttled receive (HTTP 400 RequestThrottled), AccessDenied, a KMS error.
Raised from a readable curl handle it ends the worker ("Unrecoverable error"); raised from the hub's timer it ends
the queue's receive loop and the worker, alive, never receives again. Here every such answer becomes a
FailedReceive, which the channel treats like kombu's `[]`: a warning, and the next poll after polling_interval."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

GUARDED = "_receive_failures_guarded"


@dataclass(frozen=True)
class FailedReceive:
    """What a failed ReceiveMessage answered, in place of its messages."""

    error: str

    def __str__(self) -> str:
        return self.error


def guard_receives(connection: Any) -> Any:
    """Make `connection` (kombu's AsyncSQSConnection) answer a failed receive with a FailedReceive, once."""
    if getattr(connection, GUARDED, False):
        return connection
    on_list_ready = connection._on_list_ready  # kombu private: get_list() looks it up on the instance per call

    def guarded(parent, markers, operation, response):
        try:
            return on_list_ready(parent, markers, operation, response)
        except Exception as exc:  # kombu raises a bare Exception naming the status and the body
            return FailedReceive(str(exc)[:500])

    connection._on_list_ready = guarded
    setattr(connection, GUARDED, True)
    return connection
