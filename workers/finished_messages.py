"""Receipt handles the worker is done with (acked, rejected, handed back): the visibility heartbeat skips them."""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable

# A tick's snapshot is older than the tick itself by at most its calls (3 attempts of 35 s each in the worst
# case); a handle is unique to one receive, so after this long nobody asks about it again.
KEEP_SECONDS = 300.0
MAX_ENTRIES = 100_000  # a worker acking 300 messages/s for KEEP_SECONDS; about 10 MB at most


class FinishedMessages:
    """A set of receipt handles (kept as their 64-bit hashes: a handle is hundreds of bytes), with a lock that
    orders "finish" against a heartbeat's extension.

    The heartbeat holds `lock` while it filters its batch and sends it. A hand-back marks its handle under the
    same lock (`after_extensions=True`) before its visibility-0 call: either the mark comes first (the tick
    skips the handle) or the extension does (and visibility 0 lands after it), never an extension after a
    hand-back. An ack or a reject marks without waiting for an extension in flight (the event loop must not
    wait on a heartbeat call): such an extension was decided before the ack, and the delete wins anyway.
    """

    def __init__(self, *, keep_seconds: float = KEEP_SECONDS, clock: Callable[[], float] = time.monotonic):
        self.lock = threading.RLock()  # orders hand-backs after extensions in flight
        self._data = threading.Lock()  # guards _handles
        self._handles: OrderedDict[int, float] = OrderedDict()
        self._keep, self._clock = keep_seconds, clock

    def finish(self, receipt_handle: str | None, *, after_extensions: bool = False) -> None:
        if not receipt_handle:
            return
        if after_extensions:
            with self.lock:
                self.finish(receipt_handle)
            return
        key = hash(receipt_handle)
        with self._data:
            now = self._clock()
            self._handles[key] = now
            self._handles.move_to_end(key)
            while self._handles and (
                len(self._handles) > MAX_ENTRIES or now - next(iter(self._handles.values())) > self._keep
            ):
                self._handles.popitem(last=False)

    def unfinished(self, receipt_handles: Iterable[str]) -> list[str]:
        """The handles not finished yet; call it holding `lock` to keep the answer true for hand-backs while you
        act on it."""
        with self._data:
            return [h for h in receipt_handles if hash(h) not in self._handles]

    def __contains__(self, receipt_handle: str) -> bool:
        with self._data:
            return hash(receipt_handle) in self._handles


# One per worker process: the channel (event loop) marks, the heartbeat thread reads.
finished_messages = FinishedMessages()
