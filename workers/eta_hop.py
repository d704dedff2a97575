"""The ETA hop: a received message due later than a worker may hold it goes back into SQS with DelaySeconds."""

from __future__ import annotations

import base64
import binascii
import json
import logging
import math
import queue
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from kombu.utils.json import loads

from core.envelope import header_time
from core.sqs_batches import batches_within
from core.topology import SQS_MAX_DELAY_SECONDS

logger = logging.getLogger(__name__)

# A worker holds a received message until its ETA only when the ETA is this close: well inside the visibility
# timeout, so SQS never hands the held message out again (Celery's timer holds it outside the heartbeat).
HOLD_MAX_SECONDS = 5.0
HOLD_VISIBILITY_FRACTION = 0.25
STOP_TIMEOUT_SECONDS = 15  # close() waits this long for hops still being sent


def hold_seconds(visibility_timeout: float) -> float:
    """How far ahead an ETA may be for the worker to hold the message instead of hopping it."""
    return min(HOLD_MAX_SECONDS, visibility_timeout * HOLD_VISIBILITY_FRACTION)


def envelope_headers(body: str) -> dict[str, Any] | None:
    """The headers of the kombu envelope in an SQS body (base64 of its JSON, or the JSON itself), reading no
    further: the task's own body stays encoded. None for anything else (Celery deals with that)."""
    try:
        text = base64.b64decode(body, validate=True)
    except (binascii.Error, ValueError):
        text = body
    try:
        envelope = loads(
            text
        )  # kombu's JSON: a raw producer's datetime or UUID header arrives typed, as Celery sees it
    except (ValueError, TypeError, UnicodeDecodeError):
        return None
    headers = envelope.get("headers") if isinstance(envelope, dict) else None
    return headers if isinstance(headers, dict) else None


@dataclass(frozen=True)
class Hop:
    """A received message to send back with `delay` seconds; it is due at `due`."""

    message: dict[str, Any]  # the SQS message as received (Body, ReceiptHandle, MessageAttributes, ...)
    task: str | None
    task_id: str | None
    due: datetime
    delay: int


def _header_time(headers: dict[str, Any], key: str) -> datetime | None:
    value = headers.get(key)
    if not value:
        return None
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    try:
        return header_time(value)
    except (TypeError, ValueError):
        return None  # Celery refuses it with its own error


def plan(
    messages: Iterable[dict[str, Any]],
    *,
    now: datetime,
    hold: float,
    headers_of: Callable[[dict[str, Any]], dict[str, Any] | None] | None = None,
) -> tuple[list[dict], list[Hop]]:
    """Split received messages into those the worker takes (no ETA, or due within `hold` seconds) and hops.
    `headers_of`: a message's envelope headers, if the caller decoded its body already (else envelope_headers).

    An expired message is taken whatever its ETA: Celery discards it now, and the discard is recorded."""
    take: list[dict] = []
    hops: list[Hop] = []
    for message in messages:
        headers = headers_of(message) if headers_of else envelope_headers(message.get("Body") or "")
        due = _header_time(headers, "eta") if headers else None
        remaining = (due - now).total_seconds() if due else 0.0
        expires = _header_time(headers, "expires") if headers else None
        if remaining <= hold or (expires is not None and expires <= now):
            take.append(message)
            continue
        delay = min(math.ceil(remaining), SQS_MAX_DELAY_SECONDS)
        hops.append(Hop(message=message, task=headers.get("task"), task_id=headers.get("id"), due=due, delay=delay))
    return take, hops


def _send_attributes(received: dict[str, Any]) -> dict[str, Any]:
    """Message attributes as SendMessage takes them: a received BinaryValue is base64 text, boto3 wants bytes."""
    attributes = {}
    for name, value in received.items():
        sent = {"DataType": value["DataType"]}
        if "StringValue" in value:
            sent["StringValue"] = value["StringValue"]
        if "BinaryValue" in value:
            binary = value["BinaryValue"]
            sent["BinaryValue"] = base64.b64decode(binary) if isinstance(binary, str) else binary
        attributes[name] = sent
    return attributes


def _size(hop: Hop) -> int:
    attributes = hop.message.get("MessageAttributes") or {}
    return len(hop.message["Body"].encode("utf-8")) + len(json.dumps(attributes, default=str))


def send_hops(client, *, queue: str, queue_url: str, hops: list[Hop]) -> int:
    """Send each hop's message back (body and attributes unchanged, DelaySeconds set), then delete the received
    copies that were sent; returns how many hopped. Never raises: what was not sent is not deleted and comes
    back after its visibility timeout; a copy sent but not deleted is a duplicate, which idempotency absorbs."""
    hopped = 0
    # up to 10 hops per SendMessageBatch and no more than SQS's 1 MiB per batch (a single large one alone)
    for batch in batches_within(hops, size_of=_size):
        entries = []
        for index, hop in enumerate(batch):
            entry = {"Id": str(index), "MessageBody": hop.message["Body"], "DelaySeconds": hop.delay}
            if hop.message.get("MessageAttributes"):
                entry["MessageAttributes"] = _send_attributes(hop.message["MessageAttributes"])
            entries.append(entry)
        try:
            answer = client.send_message_batch(QueueUrl=queue_url, Entries=entries)
        except Exception as exc:  # any failure: nothing is deleted, the received copies come back
            logger.warning(
                "eta hop failed on queue %s: sending %d message(s) back: %r; they come back after the "
                "visibility timeout",
                queue,
                len(batch),
                exc,
            )
            continue
        for failed in answer.get("Failed") or []:
            hop = batch[int(failed["Id"])]
            logger.warning(
                "eta hop failed on queue %s: %s[%s] not sent back (%s: %s); it comes back after the visibility timeout",
                queue,
                hop.task,
                hop.task_id,
                failed.get("Code"),
                failed.get("Message"),
            )
        sent = [batch[int(ok["Id"])] for ok in answer.get("Successful") or []]
        for hop in sent:
            logger.info(
                "eta hop: %s[%s] due %s, sent back to queue %s with DelaySeconds=%d",
                hop.task,
                hop.task_id,
                hop.due.isoformat(),
                queue,
                hop.delay,
            )
        hopped += len(sent)
        _delete_received(client, queue=queue, queue_url=queue_url, hops=sent)
    return hopped


def _delete_received(client, *, queue: str, queue_url: str, hops: list[Hop]) -> None:
    if not hops:
        return
    entries = [{"Id": str(i), "ReceiptHandle": hop.message["ReceiptHandle"]} for i, hop in enumerate(hops)]
    try:
        answer = client.delete_message_batch(QueueUrl=queue_url, Entries=entries)
        failed = [hops[int(f["Id"])] for f in answer.get("Failed") or []]
    except Exception as exc:  # the sent copies stand; these become duplicates
        logger.warning("eta hop on queue %s: deleting %d received copies failed: %r", queue, len(hops), exc)
        failed = hops
    for hop in failed:
        logger.warning(
            "eta hop on queue %s: %s[%s] was sent back but its received copy was not deleted: it will run twice "
            "unless the task is idempotent",
            queue,
            hop.task,
            hop.task_id,
        )


@dataclass(frozen=True)
class _Job:
    queue: str
    queue_url: str
    hops: list[Hop]


class HopSender:
    """Sends hops from a thread of its own, so the worker's event loop never waits on SQS for them (a hung
    endpoint would stall it for the client's whole timeout). Until its hop is sent a message is simply in
    flight: a worker that dies first loses nothing, the message comes back after its visibility timeout."""

    def __init__(self, *, client_for: Callable[[str], object]):
        self.client_for = client_for
        self._inbox: queue.Queue[_Job | None] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self.hopped = 0  # for tests and logs

    def submit(self, *, queue: str, queue_url: str, hops: list[Hop]) -> None:
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="sqs-eta-hops", daemon=True)
                self._thread.start()
        self._inbox.put(_Job(queue=queue, queue_url=queue_url, hops=hops))

    def close(self) -> None:
        """Send every hop submitted so far, then stop the thread."""
        with self._lock:
            thread, self._thread = self._thread, None
        if thread is not None:
            self._inbox.put(None)
            thread.join(STOP_TIMEOUT_SECONDS)
            if thread.is_alive():
                logger.warning("eta hops still being sent after %s s at shutdown", STOP_TIMEOUT_SECONDS)

    def _run(self) -> None:
        while (job := self._inbox.get()) is not None:
            try:
                client = self.client_for(job.queue)
                self.hopped += send_hops(client, queue=job.queue, queue_url=job.queue_url, hops=job.hops)
            except Exception:  # the thread must outlive any failure; the messages come back
                logger.exception("eta hop on queue %s failed; the message(s) come back", job.queue)
