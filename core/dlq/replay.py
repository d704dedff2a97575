"""Move chosen messages from a queue's DLQ back to the queue, in batches of up to 10 and 1 MiB, losing none."""

from __future__ import annotations

import contextlib
import copy
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from core.dlq.request import ReplayRequest
from core.envelope import CeleryEnvelope, EnvelopeError, decode_sqs_body, encode_sqs_body, header_time
from core.queue_urls import queue_url
from core.sqs_batches import SQS_BATCH, batches_within, make_visible, receive_fresh
from core.topology import Topology

REPLAY_COUNT_HEADER = "x-dlq-replays"  # how often this message was replayed; Celery ignores it
# Received messages stay invisible this long while the run decides; all not moved are made visible again
# when it ends. Longer than the Lambda timeout, so a crashed run's messages come back on their own.
HOLD_SECONDS = 360
STOP_WHEN_SECONDS_LEFT = 20


@dataclass
class ReplayReport:
    """What a replay did: every message it received is counted in exactly one of the outcome fields."""

    queue: str
    dlq: str
    dry_run: bool
    received: int = 0
    matched: int = 0  # passed the filters and the replay limit (moved, would move, or failed)
    moved: int = 0
    skipped: int = 0  # did not match the filters; left in the DLQ
    undecodable: int = 0  # not a Celery envelope; left in the DLQ
    over_limit: list[dict[str, Any]] = field(default_factory=list)  # replayed too often; left in the DLQ
    failed: list[dict[str, Any]] = field(default_factory=list)  # send failed; left in the DLQ
    not_deleted: list[dict[str, Any]] = field(default_factory=list)  # sent, but still in the DLQ too
    by_task: Counter = field(default_factory=Counter)  # matched, by task name
    stopped: str = ""
    # (task id, task name, SentTimestamp in ms) of every matched message, for the ops page's preview groups
    # (api/ops/preview.py); left out of as_dict() so the Lambda's answer stays small whatever the DLQ holds.
    matched_ids: list[tuple[str | None, str, int]] = field(default_factory=list, repr=False)

    def as_dict(self) -> dict[str, Any]:
        return {
            "queue": self.queue,
            "dlq": self.dlq,
            "dry_run": self.dry_run,
            "received": self.received,
            "matched": self.matched,
            "moved": self.moved,
            "skipped": self.skipped,
            "undecodable": self.undecodable,
            "over_limit": self.over_limit,
            "failed": self.failed,
            "not_deleted": self.not_deleted,
            "by_task": dict(self.by_task.most_common()),
            "stopped": self.stopped,
        }


class RateLimiter:
    """At most `rate` messages per second, averaged from the first send."""

    def __init__(self, rate: float, clock: Callable[[], float], sleep: Callable[[float], None]):
        self.rate, self.clock, self.sleep = rate, clock, sleep
        self.started: float | None = None
        self.count = 0

    def wait_needed(self) -> float:
        """Seconds until the next send is allowed."""
        if self.started is None:
            return 0.0
        return max(0.0, self.started + self.count / self.rate - self.clock())

    def acquire(self, n: int) -> None:
        if self.started is None:
            self.started = self.clock()
        wait = self.wait_needed()
        if wait > 0:
            self.sleep(wait)
        self.count += n


def replay_count(envelope: CeleryEnvelope) -> int:
    value = envelope.headers.get(REPLAY_COUNT_HEADER) or 0
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def matches(request: ReplayRequest, envelope: CeleryEnvelope, age_seconds: float) -> bool:
    if request.task_names is not None and envelope.task_name not in request.task_names:
        return False
    if request.task_ids is not None and envelope.task_id not in request.task_ids:
        return False
    if request.min_age_seconds is not None and age_seconds < request.min_age_seconds:
        return False
    return request.max_age_seconds is None or age_seconds <= request.max_age_seconds


def transformed_body(envelope: CeleryEnvelope, *, reset_retries: bool, now: datetime) -> str:
    """The envelope to send back: same task id and args, replay counter + 1, expired `expires` dropped."""
    raw = copy.deepcopy(envelope.raw)
    headers = raw["headers"]
    if reset_retries:
        headers["retries"] = 0
    expires = headers.get("expires")
    if expires:
        try:
            when = header_time(expires)
        except (TypeError, ValueError):
            when = None
        if when is not None and when <= now:
            headers["expires"] = None  # else the worker would revoke it on arrival
    headers[REPLAY_COUNT_HEADER] = replay_count(envelope) + 1
    return encode_sqs_body(raw)


class _Replay:
    """One run of a replay request against one DLQ."""

    def __init__(self, request, *, sqs, source_url, dlq_url, report, max_replays, clock, sleep, time_left):
        self.request, self.sqs = request, sqs
        self.source_url, self.dlq_url = source_url, dlq_url
        self.report, self.max_replays, self.time_left = report, max_replays, time_left
        self.limiter = RateLimiter(float(request.rate_per_second), clock, sleep)
        self.clock = clock
        self.release: list[dict] = []  # received, not moved: made visible again at the end
        self.seen: set[str] = set()  # the prefetch thread adds to it; only receives read it, one at a time
        self.out_of_time = False
        self._prefetched: Future[list[dict]] | None = None
        self._pool: ThreadPoolExecutor | None = None

    def run(self) -> None:
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="dlq-replay-receive")
        try:
            while self.report.received < self.request.max_messages:
                if self.out_of_time or self.time_left() < STOP_WHEN_SECONDS_LEFT:
                    self.report.stopped = "time budget nearly spent"
                    return
                messages = self._next_batch()
                if not messages:
                    self.report.stopped = "no more messages in the DLQ"
                    return
                self._handle(messages)
            self.report.stopped = f"max_messages ({self.request.max_messages}) received"
        finally:
            self._release_prefetched()
            self._pool.shutdown(wait=True)
            self._release_all()

    def _wanted(self) -> int:
        return min(SQS_BATCH, self.request.max_messages - self.report.received)

    def _receive(self, count: int) -> list[dict]:
        return receive_fresh(self.sqs, self.dlq_url, count=count, hold_seconds=HOLD_SECONDS, seen=self.seen)

    def _next_batch(self) -> list[dict]:
        """The receive already in flight (started while the last batch was sent), else a receive now."""
        if self._prefetched is not None:
            prefetched, self._prefetched = self._prefetched, None
            return prefetched.result()
        return self._receive(self._wanted())

    def _prefetch(self) -> None:
        """Start the next batch's receive while this one is sent and deleted: each round trip then overlaps
        another (issue L item 4). Started after the rate limiter's wait, so the wait only counts time that passed."""
        if self._prefetched is None and self._wanted() > 0:
            self._prefetched = self._pool.submit(self._receive, self._wanted())

    def _release_prefetched(self) -> None:
        """A receive still in flight when the run ends: its messages were never handled; they go back at once."""
        if self._prefetched is None:
            return
        prefetched, self._prefetched = self._prefetched, None
        # A receive that failed received nothing: nothing to put back, and the run's own outcome stands.
        with contextlib.suppress(Exception):
            self.release.extend(prefetched.result())

    def _handle(self, messages: list[dict]) -> None:
        now = datetime.fromtimestamp(self.clock(), UTC)
        to_send: list[tuple[dict, CeleryEnvelope, str]] = []
        for message in messages:
            self.report.received += 1
            try:
                envelope = decode_sqs_body(message["Body"])
            except EnvelopeError:
                self.report.undecodable += 1
                self.release.append(message)
                continue
            sent_ms = int(message.get("Attributes", {}).get("SentTimestamp", now.timestamp() * 1000))
            if not matches(self.request, envelope, now.timestamp() - sent_ms / 1000):
                self.report.skipped += 1
                self.release.append(message)
                continue
            replays = replay_count(envelope)
            if replays >= self.max_replays:
                self.report.over_limit.append(
                    {"task_id": envelope.task_id, "task": envelope.task_name, "replays": replays}
                )
                self.release.append(message)
                continue
            self.report.matched += 1
            self.report.by_task[envelope.task_name or "?"] += 1
            self.report.matched_ids.append((envelope.task_id, envelope.task_name or "?", sent_ms))
            if self.request.dry_run:
                self.release.append(message)
            else:
                body = transformed_body(envelope, reset_retries=self.request.reset_retries, now=now)
                to_send.append((message, envelope, body))
        # SendMessageBatch refuses more than 1 MiB in all (BatchRequestTooLong): ten 400 KiB messages go in five.
        for batch in batches_within(to_send, size_of=lambda item: len(item[2].encode("utf-8"))):
            if self.out_of_time:
                self.release.extend(message for message, _, _ in batch)
            else:
                self._move(batch)

    def _move(self, batch: list[tuple[dict, CeleryEnvelope, str]]) -> None:
        """SendMessageBatch to the source queue; delete from the DLQ only what was sent."""
        if self.limiter.wait_needed() > self.time_left() - STOP_WHEN_SECONDS_LEFT:
            # Waiting for the rate limit would outlast the function: leave these for the next run.
            self.release.extend(message for message, _, _ in batch)
            self.out_of_time = True
            return
        self.limiter.acquire(len(batch))
        self._prefetch()
        entries = [{"Id": str(i), "MessageBody": body} for i, (_, _, body) in enumerate(batch)]
        try:
            response = self.sqs.send_message_batch(QueueUrl=self.source_url, Entries=entries)
        except (ClientError, BotoCoreError) as exc:
            for message, envelope, _ in batch:
                self._failed(message, envelope, f"{type(exc).__name__}: {exc}")
            return
        sent = {entry["Id"] for entry in response.get("Successful", [])}
        for failure in response.get("Failed", []):
            message, envelope, _ = batch[int(failure["Id"])]
            self._failed(message, envelope, f"{failure.get('Code')}: {failure.get('Message', '')}")
        delivered = [(str(i), item) for i, item in enumerate(batch) if str(i) in sent]
        if delivered:
            self._delete(delivered)

    def _delete(self, delivered: list[tuple[str, tuple[dict, CeleryEnvelope, str]]]) -> None:
        by_id = dict(delivered)
        entries = [{"Id": i, "ReceiptHandle": item[0]["ReceiptHandle"]} for i, item in delivered]
        try:
            response = self.sqs.delete_message_batch(QueueUrl=self.dlq_url, Entries=entries)
            failures = {f["Id"]: f"{f.get('Code')}: {f.get('Message', '')}" for f in response.get("Failed", [])}
        except (ClientError, BotoCoreError) as exc:
            failures = {i: f"{type(exc).__name__}: {exc}" for i in by_id}
        self.report.moved += len(by_id)
        for i, error in failures.items():
            # Sent and still in the DLQ: at-least-once, the same task id may run twice.
            _, envelope, _ = by_id[i]
            self.report.not_deleted.append({"task_id": envelope.task_id, "task": envelope.task_name, "error": error})

    def _failed(self, message: dict, envelope: CeleryEnvelope, error: str) -> None:
        self.report.failed.append({"task_id": envelope.task_id, "task": envelope.task_name, "error": error})
        self.release.append(message)

    def _release_all(self) -> None:
        make_visible(self.sqs, self.dlq_url, self.release)
        self.release = []


def replay_dlq(
    request: ReplayRequest,
    *,
    sqs,
    topology: Topology,
    prefix: str = "",
    max_replays: int = 3,
    clock: Callable[[], float] = time.time,
    sleep: Callable[[float], None] = time.sleep,
    time_left: Callable[[], float] = lambda: float("inf"),
) -> ReplayReport:
    """Replay (or, in a dry run, only report) the messages of `request.queue`'s DLQ."""
    spec = topology.queue(request.queue)
    source_url = queue_url(sqs, spec.sqs_name(prefix), prefix=prefix)
    dlq_url = queue_url(sqs, spec.dlq_sqs_name(prefix), prefix=prefix)
    report = ReplayReport(queue=request.queue, dlq=spec.dlq_sqs_name(prefix), dry_run=request.dry_run)
    _Replay(
        request,
        sqs=sqs,
        source_url=source_url,
        dlq_url=dlq_url,
        report=report,
        max_replays=max_replays,
        clock=clock,
        sleep=sleep,
        time_left=time_left,
    ).run()
    return report
