"""Acks: the receipt handle is finished at once (the heartbeat never extends it again) and the SQS delete goes
into a batch sent from a thread (workers/delete_batches.py), not a blocking DeleteMessage on the event loop."""

from __future__ import annotations

from collections.abc import Callable

from workers.delete_batches import DEFAULT_KEEP_SECONDS, DeleteBatches, PendingDelete
from workers.delete_health import DeleteFailures, unhealthy_after


class BatchedDeletes:
    """The channel's delete batches, started by the first ack when the window is above 0 and an event loop
    runs (a worker); otherwise `delete()` answers False and the channel deletes as kombu does."""

    def __init__(self, *, client_for: Callable[[str | None], object], window: float, queue_limits: dict):
        self._client_for, self.window, self._limits = client_for, window, queue_limits
        self.batches: DeleteBatches | None = None

    def start(self) -> DeleteBatches | None:
        if self.batches is None and self.window > 0:
            limits = self._limits
            longest = max((q["visibility_timeout"] for q in limits.values()), default=DEFAULT_KEEP_SECONDS)
            self.batches = DeleteBatches(
                client_for=self._client_for,
                window=self.window,
                # A receipt handle is worth retrying while its message may still be in flight: at most one
                # visibility timeout after the ack (the heartbeat stops extending it at the ack).
                keep_for=lambda queue: limits.get(queue, {}).get("visibility_timeout", longest),
                failures=DeleteFailures(unhealthy_after=unhealthy_after()),
            )
        return self.batches

    def delete(self, *, queue: str | None, delivery_info: dict) -> bool:
        """Queue the delete of an acked message; False when it is not batched (no window, or no SQS message)."""
        batches = self.start()
        sqs_message = delivery_info.get("sqs_message") or {}
        if batches is None or "ReceiptHandle" not in sqs_message or "sqs_queue" not in delivery_info:
            return False
        batches.add(
            PendingDelete(queue=queue, url=delivery_info["sqs_queue"], receipt_handle=sqs_message["ReceiptHandle"])
        )
        return True

    def close(self) -> None:
        """Before the channel goes: acked means deleted."""
        if self.batches is not None:
            self.batches.close()
