"""Acked SQS messages deleted in batches: one DeleteMessageBatch for up to 10 acks, at most `window` s later."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from botocore.exceptions import BotoCoreError, ClientError

logger = logging.getLogger(__name__)

SQS_BATCH = 10


@dataclass(frozen=True)
class PendingDelete:
    queue: str | None  # the kombu queue name, for the channel's per-queue client
    url: str
    receipt_handle: str


class DeleteBatches:
    """Collects acked messages per queue URL and deletes them with DeleteMessageBatch.

    A batch goes out when it holds 10 messages, or `window` seconds after its first message, or when the
    channel closes. Until then a message is still in SQS: a worker killed in that window has its task run
    again after the visibility timeout, exactly as if it had died just before the ack (tasks are at least
    once, and idempotent where it matters). A failed delete is logged, never raised: the message comes
    back after its visibility timeout, which the same at-least-once rule covers.
    """

    def __init__(self, *, client_for: Callable[[str | None], object], call_later: Callable, window: float):
        self.client_for, self.call_later, self.window = client_for, call_later, window
        self.pending: dict[str, list[PendingDelete]] = {}
        self._flush_scheduled = False
        self.deleted = 0  # for tests and logs
        self.failed = 0

    def add(self, item: PendingDelete) -> None:
        batch = self.pending.setdefault(item.url, [])
        batch.append(item)
        if len(batch) >= SQS_BATCH:
            self.flush(item.url)
        elif not self._flush_scheduled:
            self._flush_scheduled = True
            self.call_later(self.window, self._on_timer)

    def _on_timer(self) -> None:
        self._flush_scheduled = False
        self.flush_all()

    def flush_all(self) -> None:
        for url in list(self.pending):
            self.flush(url)

    def flush(self, url: str) -> None:
        batch = self.pending.pop(url, [])
        for start in range(0, len(batch), SQS_BATCH):
            self._delete(url, batch[start : start + SQS_BATCH])

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
