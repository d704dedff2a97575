"""Acked SQS messages deleted in batches, off the event loop: one DeleteMessageBatch for up to 10 acks."""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from botocore.exceptions import BotoCoreError, ClientError

logger = logging.getLogger(__name__)

SQS_BATCH = 10
STOP_TIMEOUT_SECONDS = 15  # close() waits this long for the last batches (a DeleteMessageBatch or two)


@dataclass(frozen=True)
class PendingDelete:
    queue: str | None  # the kombu queue name, for the channel's per-queue client
    url: str
    receipt_handle: str


class DeleteBatches:
    """Takes acked messages from the event loop and deletes them from a thread of its own, with
    DeleteMessageBatch per queue URL: a batch goes out when it holds 10 messages or `window` seconds after its
    first one, and close() sends whatever is left before it returns.

    The event loop never waits for a delete (kombu's DeleteMessage per ack blocks it for a round trip). Until
    its batch goes out a message is still in SQS: a worker killed in that window has the task run again
    after the visibility timeout, exactly as if it had died just before the ack (tasks are at least once,
    and idempotent where it matters). A failed delete is logged, never raised: the message comes back after
    its visibility timeout, which the same rule covers.
    """

    def __init__(self, *, client_for: Callable[[str | None], object], window: float):
        self.client_for, self.window = client_for, window
        self._inbox: queue.Queue[PendingDelete | None] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self.deleted = 0  # for tests and logs
        self.failed = 0

    def add(self, item: PendingDelete) -> None:
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="sqs-delete-batches", daemon=True)
                self._thread.start()
        self._inbox.put(item)

    def close(self) -> None:
        """Send every pending delete, then stop the thread."""
        with self._lock:
            thread, self._thread = self._thread, None
        if thread is not None:
            self._inbox.put(None)
            thread.join(STOP_TIMEOUT_SECONDS)
            if thread.is_alive():
                logger.warning("SQS deletes still pending after %s s at shutdown", STOP_TIMEOUT_SECONDS)

    def _run(self) -> None:
        stopping = False
        while not stopping:
            first = self._inbox.get()
            if first is None:
                break
            batches: dict[str, list[PendingDelete]] = {first.url: [first]}
            deadline = time.monotonic() + self.window
            while (left := deadline - time.monotonic()) > 0:
                try:
                    item = self._inbox.get(timeout=left)
                except queue.Empty:
                    break
                if item is None:
                    stopping = True
                    break
                batch = batches.setdefault(item.url, [])
                batch.append(item)
                if len(batch) >= SQS_BATCH:
                    self._delete(item.url, batches.pop(item.url))
            for url, batch in batches.items():
                self._delete(url, batch)

    def _delete(self, url: str, batch: list[PendingDelete]) -> None:
        try:
            response = self.client_for(batch[0].queue).delete_message_batch(
                QueueUrl=url,
                Entries=[{"Id": str(i), "ReceiptHandle": item.receipt_handle} for i, item in enumerate(batch)],
            )
        except (ClientError, BotoCoreError, OSError) as exc:
            self.failed += len(batch)
            logger.warning(
                "DeleteMessageBatch of %d acked message(s) on %s failed (%r): they run again after their "
                "visibility timeout",
                len(batch),
                url,
                exc,
            )
            return
        failures = response.get("Failed") or []
        self.deleted += len(batch) - len(failures)
        self.failed += len(failures)
        for failure in failures:
            logger.warning(
                "Deleting an acked message on %s failed (%s: %s): it runs again after its visibility timeout",
                url,
                failure.get("Code"),
                failure.get("Message"),
            )
