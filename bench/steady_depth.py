"""A producer that holds a queue at a low, steady depth while a consumer drains it: the emulator rescans the
queue on every receive, so a deep queue measures moto's scan; a shallow one measures the round trips."""

from __future__ import annotations

import copy
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

from core.sqs_batches import SQS_BATCH

# How often the producer looks at the depth: well under one round trip of the consumer it keeps fed.
POLL_SECONDS = 0.005


def envelope_bodies(template: dict[str, Any], n: int) -> list[str]:
    """n SQS bodies of the template's Celery envelope, each with a task id of its own."""
    from core.envelope import encode_sqs_body

    bodies = []
    for _ in range(n):
        envelope = copy.deepcopy(template)
        task_id = str(uuid.uuid4())
        envelope["headers"]["id"] = task_id
        envelope["properties"]["correlation_id"] = task_id
        bodies.append(encode_sqs_body(envelope))
    return bodies


def top_up(visible: int, depth: int, remaining: int) -> int:
    """How many messages to send now: enough to bring `visible` back to `depth`, never past `remaining`, at most
    one batch."""
    return max(0, min(depth - visible, remaining, SQS_BATCH))


class SteadyProducer:
    """Sends `bodies` to `url` (the emulator directly: not the delayed endpoint, not counted), keeping the visible
    depth at `depth` until all are sent or `timeout` runs out. A thread; `stop()` ends it early."""

    def __init__(self, sqs, url: str, bodies: list[str], *, depth: int, timeout: float, visible: Callable[[], int]):
        if depth < 1:
            raise ValueError(f"the steady depth must be at least 1, got {depth}")
        self.sqs, self.url, self.bodies, self.depth, self.timeout = sqs, url, bodies, depth, timeout
        self.visible = visible
        self.sent = 0
        self.max_visible_seen = 0
        self.error: BaseException | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="steady-producer", daemon=True)

    def start(self) -> SteadyProducer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    def wait_filled(self, timeout: float = 60) -> None:
        """Until the first `depth` messages (or all, if fewer) are in the queue."""
        deadline = time.monotonic() + timeout
        while self.sent < min(self.depth, len(self.bodies)) and time.monotonic() < deadline and not self.error:
            time.sleep(POLL_SECONDS)
        if self.error:
            raise self.error

    def _run(self) -> None:
        deadline = time.monotonic() + self.timeout
        try:
            while self.sent < len(self.bodies) and not self._stop.is_set() and time.monotonic() < deadline:
                visible = self.visible()
                self.max_visible_seen = max(self.max_visible_seen, visible)
                n = top_up(visible, self.depth, len(self.bodies) - self.sent)
                if not n:
                    time.sleep(POLL_SECONDS)
                    continue
                chunk = self.bodies[self.sent : self.sent + n]
                entries = [{"Id": str(i), "MessageBody": body} for i, body in enumerate(chunk)]
                response = self.sqs.send_message_batch(QueueUrl=self.url, Entries=entries)
                if response.get("Failed"):
                    raise RuntimeError(f"the steady producer's send failed: {response['Failed']}")
                self.sent += n
        except BaseException as exc:  # reported to the benchmark's thread by wait_filled() / check()
            self.error = exc

    def check(self) -> None:
        if self.error:
            raise self.error
