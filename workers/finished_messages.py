"""Receipt handles the worker is done with (acked, rejected, handed back): the visibility heartbeat skips them."""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable

# A heartbeat tick works on a snapshot at most one interval old; a handle is unique to one receive, so after
# this long nobody can ask about it again.
KEEP_SECONDS = 900.0


class FinishedMessages:
    """A set of receipt handles, with a lock that orders "finish" against a heartbeat's extension.

    The heartbeat holds `lock` while it filters its batch and sends it; the channel marks a handle under the
    same lock before it hands the message back. Either the mark comes first (the tick skips the handle) or the
    extension does (and the hand-back's visibility 0 lands after it): never an extension after a hand-back.
    """

    def __init__(self, *, keep_seconds: float = KEEP_SECONDS, clock: Callable[[], float] = time.monotonic):
        self.lock = threading.RLock()
        self._handles: OrderedDict[str, float] = OrderedDict()
        self._keep, self._clock = keep_seconds, clock

    def finish(self, receipt_handle: str | None) -> None:
        if not receipt_handle:
            return
        with self.lock:
            now = self._clock()
            self._handles[receipt_handle] = now
            self._handles.move_to_end(receipt_handle)
            while self._handles and now - next(iter(self._handles.values())) > self._keep:
                self._handles.popitem(last=False)

    def unfinished(self, receipt_handles: Iterable[str]) -> list[str]:
        """The handles not finished yet; call it holding `lock` to keep the answer true while you act on it."""
        with self.lock:
            return [h for h in receipt_handles if h not in self._handles]

    def __contains__(self, receipt_handle: str) -> bool:
        with self.lock:
            return receipt_handle in self._handles


# One per worker process: the channel (event loop) marks, the heartbeat thread reads.
finished_messages = FinishedMessages()
