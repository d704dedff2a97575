"""The visibility heartbeat: while a task runs, keep its SQS message invisible to other workers."""

from __future__ import annotations

import logging
import threading
from collections import defaultdict
from collections.abc import Callable, Iterable

from botocore.exceptions import BotoCoreError, ClientError

from core.topology import Topology
from workers.finished_messages import FinishedMessages, finished_messages

logger = logging.getLogger(__name__)


def _snapshot(requests: Callable[[], Iterable]) -> list:
    # The worker's sets change while we read them from this thread: retry a torn read.
    for _ in range(5):
        try:
            return list(requests())
        except RuntimeError:
            continue
    return []


def heartbeat_interval(topology: Topology) -> int:
    """Seconds between ticks: the shortest visibility_heartbeat_seconds of the topology (0: no heartbeat)."""
    beats = [
        spec.visibility_heartbeat_seconds for spec in topology.queues.values() if spec.visibility_heartbeat_seconds
    ]
    return min(beats) if beats else 0


class VisibilityHeartbeat:
    """Every `interval` seconds, ChangeMessageVisibilityBatch for each message the worker holds (running or
    reserved) on a heartbeat queue, to that queue's visibility timeout.

    A thread of its own, not the worker's event loop: Celery's soft shutdown blocks that loop in a sleep,
    and a task's message must stay invisible while the task runs through the shutdown window. It stops
    with the consumer, and dies with the process: then each message returns one visibility timeout after
    its last extension, however long its task would have run.

    It never extends a message the worker is done with (acked, rejected, handed back: `finished`), even one
    finished between reading the held set and sending the batch (workers/finished_messages.py).
    """

    def __init__(
        self, *, sqs, topology: Topology, held: Callable[[], Iterable], finished: FinishedMessages = finished_messages
    ):
        self.sqs, self.held, self.finished = sqs, held, finished
        self.timeouts = {
            key: spec.visibility_timeout for key, spec in topology.queues.items() if spec.visibility_heartbeat_seconds
        }
        self.interval = heartbeat_interval(topology)
        self._stop: threading.Event | None = None
        self.extended = 0  # messages extended so far (for tests and logs)

    def start(self) -> None:
        if not self.interval or self._stop is not None:
            return
        # One event per thread: a consumer restarted quickly must not revive a thread told to stop.
        self._stop = threading.Event()
        threading.Thread(target=self._run, args=(self._stop,), name="visibility-heartbeat", daemon=True).start()

    def stop(self) -> None:
        if self._stop is not None:
            self._stop.set()
            self._stop = None

    def _run(self, stop: threading.Event) -> None:
        while not stop.wait(self.interval):
            try:
                self.tick()
            except Exception:  # never let the heartbeat die while tasks run; the next tick tries again
                logger.exception("visibility heartbeat failed")

    def tick(self) -> None:
        batches: dict[str, list[dict]] = defaultdict(list)
        for request in _snapshot(self.held):
            info = getattr(getattr(request, "message", None), "delivery_info", None) or {}
            timeout = self.timeouts.get(info.get("routing_key"))
            sqs_message, url = info.get("sqs_message"), info.get("sqs_queue")
            if timeout is None or not sqs_message or not url:
                continue
            batches[url].append({"ReceiptHandle": sqs_message["ReceiptHandle"], "VisibilityTimeout": timeout})
        for url, entries in batches.items():
            for start in range(0, len(entries), 10):
                # Under the lock: a hand-back marked now waits until this extension is answered, so its
                # visibility 0 lands after it; one marked before is skipped here.
                with self.finished.lock:
                    part = entries[start : start + 10]
                    live = set(self.finished.unfinished(e["ReceiptHandle"] for e in part))
                    chunk = [{"Id": str(i), **e} for i, e in enumerate(e for e in part if e["ReceiptHandle"] in live)]
                    if not chunk:
                        continue
                    try:
                        response = self.sqs.change_message_visibility_batch(QueueUrl=url, Entries=chunk)
                    except (ClientError, BotoCoreError) as exc:
                        logger.warning(
                            "could not extend the visibility of %d message(s) on %s: %s", len(chunk), url, exc
                        )
                        continue
                # A failed entry is usually a message acked meanwhile: nothing to extend.
                self.extended += len(response.get("Successful", []))
