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

    The heartbeat holds `lock` while it filters its batch and sends it; the channel marks a handle under the
    same lock before it hands the message back. Either the mark comes first (the tick skips the handle) or the
    extension does (and the hand-back's visibility 0 lands after it): never an extension after a hand-back.
    """

    def __init__(self, *, keep_seconds: float = KEEP_SECONDS, clock: Callable[[], float] = time.monotonic):
        self.lock = threading.RLock()
        self._handles: OrderedDict[int, float] = OrderedDict()
        self._keep, self._clock = keep_seconds, clock

    def finish(self, receipt_handle: str | None) -> None:
        if not receipt_handle:
            return
        key = hash(receipt_handle)
        with self.lock:
            now = self._clock()
            self._handles[key] = now
            self._handles.move_to_end(key)
            while self._handles and (
                len(self._handles) > MAX_ENTRIES or now - next(iter(self._handles.values())) > self._keep
            ):
                self._handles.popitem(last=False)

    def unfinished(self, receipt_handles: Iterable[str]) -> list[str]:
        """The handles not finished yet; call it holding `lock` to keep the answer true while you act on it."""
        with self.lock:
            return [h for h in receipt_handles if hash(h) not in self._handles]

    def __contains__(self, receipt_handle: str) -> bool:
        with self.lock:
            return hash(receipt_handle) in self._handles


# One per worker process: the channel (event loop) marks, the heartbeat thread reads.
finished_messages = FinishedMessages()
