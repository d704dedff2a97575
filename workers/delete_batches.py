"""Acked SQS messages deleted in batches, off the event loop: one DeleteMessageBatch for up to 10 acks."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from botocore.exceptions import ClientError

from workers.delete_health import DeleteFailures

logger = logging.getLogger(__name__)

SQS_BATCH = 10
# A batch goes out `window` seconds after its last ack, but never later than this after its first: the longest an
# acked message waits for its DeleteMessageBatch (plus that request), so a killed worker runs at most this long's
# acked tasks again. At a steady trickle of acks the batch fills to 10 first (10 tasks/s or more).
MAX_HOLD_SECONDS = 1.0
STOP_TIMEOUT_SECONDS = 15  # close() waits this long for the last batches (a DeleteMessageBatch or two)
DEFAULT_KEEP_SECONDS = 30.0  # retry a delete this long after its ack when its queue's visibility is unknown
MAX_BACKOFF_SECONDS = 10.0
# Entry failures no retry can fix: the handle is stale (the message is back in the queue or gone).
STALE_HANDLE_CODES = ("ReceiptHandleIsInvalid", "InvalidParameterValue")
DENIED_CODES = ("AccessDenied", "AccessDeniedException")  # the query-compatible code, and the JSON __type


@dataclass(frozen=True)
class PendingDelete:
    queue: str | None  # the kombu queue name, for the channel's per-queue client
    url: str
    receipt_handle: str
    acked_at: float = field(default_factory=time.monotonic, compare=False)


@dataclass
class _Retry:
    item: PendingDelete
    attempts: int
    due: float


def _error_code(exc: BaseException) -> str:
    if isinstance(exc, ClientError):
        return str(exc.response.get("Error", {}).get("Code", ""))
    return type(exc).__name__


class _Inbox:
    """Acks handed from the event loop to the delete thread. A put wakes the thread only when it waits for a first ack,
    when enough have come to fill a batch, or to stop: a thread gathering a batch wakes at its window's end and takes
    what came meanwhile, instead of once per ack (a wake-up per ack cost the worker's main process a GIL hand-off and a
    context switch per task)."""

    def __init__(self) -> None:
        self._items: list[PendingDelete] = []
        self._stop = False
        self._wake_at = 1  # the count of waiting acks that wakes the thread
        self._cond = threading.Condition(threading.Lock())

    def put(self, item: PendingDelete) -> None:
        with self._cond:
            self._items.append(item)
            if len(self._items) >= self._wake_at:
                self._cond.notify()

    def put_stop(self) -> None:
        with self._cond:
            self._stop = True
            self._cond.notify()

    def take(self, *, wake_at: int, timeout: float | None) -> tuple[list[PendingDelete], bool]:
        """Wait until `wake_at` acks wait, a stop, or `timeout`; then (every ack waiting, whether to stop)."""
        with self._cond:
            self._wake_at = max(1, wake_at)
            self._cond.wait_for(lambda: self._stop or len(self._items) >= self._wake_at, timeout)
            items, self._items = self._items, []
            stop, self._stop = self._stop, False
            return items, stop


class DeleteBatches:
    """Takes acked messages from the event loop and deletes them from a thread of its own, with
    DeleteMessageBatch per queue URL: a batch goes out when it holds 10 messages, when no ack came for `window`
    seconds, or `max_hold` seconds after its first ack, whichever first; close() sends whatever is left before it
    returns. (A window counted from the first ack sent ~4 messages a request at 35 tasks/s: each request costs
    the worker ~3 ms of CPU, and SQS bills it like a batch of 10.)

    The event loop never waits for a delete (kombu's DeleteMessage per ack blocks it for a round trip). Until
    its batch goes out a message is still in SQS: a worker killed in that window has the task run again
    after the visibility timeout, exactly as if it had died just before the ack (tasks are at least once,
    and idempotent where it matters).

    A failed delete, whatever the exception, is kept and sent again with backoff while its message may
    still be in flight (`keep_for(queue)` seconds after the ack, the queue's visibility timeout: after that
    the receipt handle is worth nothing, the message is back and runs again). The thread survives any
    exception, and add() restarts it if it died anyway. A streak of failures is reported to `failures`
    (workers/delete_health.py: health check and ERROR log).
    """

    def __init__(
        self,
        *,
        client_for: Callable[[str | None], object],
        window: float,
        max_hold: float = MAX_HOLD_SECONDS,
        keep_for: Callable[[str | None], float] = lambda queue: DEFAULT_KEEP_SECONDS,
        backoff: float = 1.0,
        failures: DeleteFailures | None = None,
    ):
        self.client_for, self.window, self.keep_for, self.backoff = client_for, window, keep_for, backoff
        self.max_hold = max(max_hold, window)
        self.failures = failures or DeleteFailures()
        self._inbox = _Inbox()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._retries: list[_Retry] = []  # only the delete thread touches these two
        self._holding: list[PendingDelete] = []  # taken from the inbox, not yet sent: a dying thread's leftovers
        self._given_up_in_streak = 0
        self.deleted = 0  # for tests and logs
        self.failed = 0  # given up: never deleted, they run again after their visibility timeout
        self.retried = 0
        self.restarts = 0
        self.wakeups = 0  # times the thread woke to take acks or to send

    @property
    def pending(self) -> int:
        """Acked messages whose delete failed and waits for another try."""
        return len(self._retries)

    def add(self, item: PendingDelete) -> None:
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                if self._thread is not None:
                    self.restarts += 1
                    logger.error("the SQS delete thread had stopped; restarting it")
                self._thread = threading.Thread(target=self._run, name="sqs-delete-batches", daemon=True)
                self._thread.start()
        self._inbox.put(item)

    def close(self) -> None:
        """Send every pending delete (one last try for those waiting to be retried), then stop the thread."""
        with self._lock:
            thread, self._thread = self._thread, None
        if thread is not None:
            self._inbox.put_stop()
            thread.join(STOP_TIMEOUT_SECONDS)
            if thread.is_alive():
                logger.warning("SQS deletes still pending after %s s at shutdown", STOP_TIMEOUT_SECONDS)

    def _run(self) -> None:
        # A thread restarted after a death sends what its predecessor held first.
        held, self._holding = self._holding, []
        self._retries.extend(_Retry(item, 0, 0.0) for item in held)
        while True:
            try:
                if not self._cycle():
                    return
            except Exception:  # a bug of ours: keep what was held, and the thread
                logger.exception("the SQS delete thread failed; it carries on")
                held, self._holding = self._holding, []
                self._retries.extend(_Retry(item, 1, time.monotonic() + self.backoff) for item in held)

    def _cycle(self) -> bool:
        """Gather acks until a quiet window or the cap (or wait for the next retry), send them; False once told to
        stop."""
        taken, stopping = self._inbox.take(wake_at=1, timeout=self._until_next_retry())
        self.wakeups += 1
        batches: dict[str, list[PendingDelete]] = {}
        if taken:
            cap = time.monotonic() + self.max_hold
            while True:
                self._holding.extend(taken)
                for item in taken:
                    batch = batches.setdefault(item.url, [])
                    batch.append(item)
                    if len(batch) >= SQS_BATCH:
                        self._send(item.url, batches.pop(item.url), attempts=0)
                if stopping:
                    break
                # A quiet window after the newest ack, never past the cap; woken early only to fill a batch.
                deadline = min(cap, max(item.acked_at for item in taken) + self.window)
                if (left := deadline - time.monotonic()) <= 0:
                    break
                fullest = max((len(batch) for batch in batches.values()), default=0)
                taken, stopping = self._inbox.take(wake_at=SQS_BATCH - fullest, timeout=left)
                self.wakeups += 1
                if not taken and not stopping:
                    break
        for url, batch in batches.items():
            self._send(url, batch, attempts=0)
        self._send_retries(everything=stopping)
        if stopping:
            for retry in self._retries:  # the last try failed too
                self._give_up(retry.item)
            self._retries = []
        return not stopping

    def _until_next_retry(self) -> float | None:
        if not self._retries:
            return None
        return max(0.0, min(r.due for r in self._retries) - time.monotonic())

    def _send_retries(self, *, everything: bool) -> None:
        now = time.monotonic()
        due = [r for r in self._retries if everything or r.due <= now]
        if not due:
            return
        sending = {id(r) for r in due}
        self._retries = [r for r in self._retries if id(r) not in sending]
        by_url: dict[tuple[str, int], list[PendingDelete]] = {}
        for retry in due:
            by_url.setdefault((retry.item.url, retry.attempts), []).append(retry.item)
        for (url, attempts), items in by_url.items():
            self.retried += len(items)
            for start in range(0, len(items), SQS_BATCH):
                self._send(url, items[start : start + SQS_BATCH], attempts=attempts)

    def _send(self, url: str, batch: list[PendingDelete], *, attempts: int) -> None:
        try:
            response = self.client_for(batch[0].queue).delete_message_batch(
                QueueUrl=url,
                Entries=[{"Id": str(i), "ReceiptHandle": item.receipt_handle} for i, item in enumerate(batch)],
            )
        except Exception as exc:  # noqa: BLE001 (whatever it is, the deletes are kept and retried)
            self._release(batch)
            self._failed(url, batch, attempts=attempts, error=repr(exc), denied=_error_code(exc) in DENIED_CODES)
            return
        self._release(batch)
        failures = response.get("Failed") or []
        failed_ids = {str(f.get("Id")) for f in failures}
        retry = []
        for failure in failures:
            item = batch[int(failure.get("Id"))]
            if failure.get("Code") in STALE_HANDLE_CODES:
                self.failed += 1
                logger.warning(
                    "Deleting an acked message on %s failed (%s: %s): it runs again after its visibility timeout",
                    url,
                    failure.get("Code"),
                    failure.get("Message"),
                )
            else:
                retry.append(item)
        if retry:
            codes = sorted({str(f.get("Code")) for f in failures if f.get("Code") not in STALE_HANDLE_CODES})
            denied = bool(set(codes) & set(DENIED_CODES))
            self._failed(url, retry, attempts=attempts, error=", ".join(codes), denied=denied)
        elif not self._retries:
            self._given_up_in_streak = 0
            self.failures.recovered()
        # Counted last: a reader that sees the count also sees the health it left (the tests wait on it).
        self.deleted += len(batch) - len(failed_ids)

    def _release(self, batch: list[PendingDelete]) -> None:
        sent = {id(item) for item in batch}
        self._holding = [item for item in self._holding if id(item) not in sent]

    def _failed(self, url: str, batch: list[PendingDelete], *, attempts: int, error: str, denied: bool) -> None:
        now = time.monotonic()
        attempts += 1
        kept = 0
        first_of_streak = self.failures.since is None
        for item in batch:
            if now - item.acked_at >= self.keep_for(item.queue):
                self._give_up(item)
            else:
                due = now + min(self.backoff * 2 ** (attempts - 1), MAX_BACKOFF_SECONDS)
                self._retries.append(_Retry(item, attempts, due))
                kept += 1
        # One WARNING when a streak starts; a streak that lasts is the ERROR of workers/delete_health.py.
        log = logger.warning if first_of_streak else logger.info
        log(
            "DeleteMessageBatch of %d acked message(s) on %s failed (%s): %d kept to retry, the rest run again "
            "after their visibility timeout",
            len(batch),
            url,
            error,
            kept,
        )
        self.failures.failed(undeleted=len(self._retries) + self._given_up_in_streak, error=error, denied=denied)

    def _give_up(self, item: PendingDelete) -> None:
        self.failed += 1
        self._given_up_in_streak += 1
        log = logger.info if self.failures.unhealthy else logger.warning
        log(
            "gave up deleting an acked message on %s (%.0f s after its ack): it runs again after its visibility "
            "timeout",
            item.url,
            time.monotonic() - item.acked_at,
        )
