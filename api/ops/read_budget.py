"""A time budget for the ops pages' AWS reads: a hung SQS or CloudWatch endpoint costs a page its numbers, never its
answer (gunicorn kills a worker that takes 30 s, and the browser would get nothing at all)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from typing import TypeVar

T = TypeVar("T")

_pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="ops-read")
_pending: dict[object, Future] = {}
_lock = threading.Lock()


class ReadTimeout(Exception):
    """The read did not answer within its budget; it goes on in the background, and the next call joins it."""


def within(read: Callable[[], T], *, seconds: float, key: object = None) -> T:
    """read() on a reader thread, waiting at most `seconds`. A read of the same key still running (a hung endpoint)
    is joined rather than started again, so refreshes never pile up threads waiting on the same endpoint."""
    key = read if key is None else key
    with _lock:
        future = _pending.get(key)
        if future is None or future.done():
            future = _pending[key] = _pool.submit(read)
    try:
        return future.result(timeout=seconds)
    except FutureTimeout:
        raise ReadTimeout(
            f"SQS/CloudWatch did not answer within {seconds:g} s (the read goes on; the next refresh joins it)"
        ) from None
