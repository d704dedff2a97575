"""moto's ReceiveMessage made atomic across the emulator's request threads, as SQS's is.

moto's server answers each request on a thread of its own, and its receive checks a message's visibility, then
marks it received, with nothing between two receives of one queue: two at once can both take one message (a
duplicate delivery that SQS itself makes only rarely), or one fails with "Set changed size during iteration" (a
500 to the client). A worker with two receives in flight, or two workers, met both here. Receives, deletes and
visibility changes now run one at a time; a long poll gives the lock up while it waits for messages.
"""

from __future__ import annotations

import threading
from typing import Any

from moto.sqs.models import Queue, SQSBackend

_lock = threading.RLock()
_PATCHED = ("receive_message", "delete_message", "change_message_visibility")


def install() -> None:
    """Patch moto's SQS backend in this process; idempotent."""
    if getattr(SQSBackend.receive_message, "_receive_lock", False):
        return
    for name in _PATCHED:
        setattr(SQSBackend, name, _serialised(getattr(SQSBackend, name)))
    wait = Queue.wait_for_messages

    def wait_for_messages(self: Queue, timeout: int) -> None:
        # Called inside receive_message, which holds the lock once: give it up while waiting for a send.
        released = _release_if_held()
        try:
            wait(self, timeout)
        finally:
            if released:
                _lock.acquire()

    Queue.wait_for_messages = wait_for_messages  # type: ignore[method-assign]


def _serialised(method):
    def serialised(self: SQSBackend, *args: Any, **kwargs: Any) -> Any:
        with _lock:
            return method(self, *args, **kwargs)

    serialised._receive_lock = True  # type: ignore[attr-defined]
    serialised.__name__ = method.__name__
    return serialised


def _release_if_held() -> bool:
    try:
        _lock.release()
    except RuntimeError:  # not held by this thread
        return False
    return True
