"""Summarise a DLQ without consuming it: depth, oldest message age, top task names, sample task ids."""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field

from core.envelope import EnvelopeError, decode_sqs_body
from core.queue_urls import queue_url
from core.sqs_batches import SQS_BATCH, make_visible, message_counts, receive_fresh
from core.topology import Topology

PEEK_HOLD_SECONDS = 30  # while sampling; every sampled message is made visible again right after


@dataclass
class DlqSummary:
    queue: str
    dlq: str
    visible: int
    in_flight: int
    sampled: int = 0
    oldest_age_seconds: float | None = None  # of the sampled messages (SentTimestamp is kept by the redrive)
    undecodable: int = 0
    top_tasks: list[tuple[str, int]] = field(default_factory=list)
    sample_task_ids: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {**self.__dict__, "top_tasks": [list(t) for t in self.top_tasks]}


def peek(sqs, url: str, *, limit: int) -> list[dict]:
    """Receive up to `limit` messages, then make them all visible again at once."""
    held: list[dict] = []
    seen: set[str] = set()
    try:
        while len(held) < limit:
            count = min(SQS_BATCH, limit - len(held))
            fresh = receive_fresh(sqs, url, count=count, hold_seconds=PEEK_HOLD_SECONDS, seen=seen)
            if not fresh:
                break
            held.extend(fresh)
    finally:
        make_visible(sqs, url, held)
    return held


def summarise_dlq(sqs, topology: Topology, key: str, *, prefix: str = "", sample: int = 50, now=None) -> DlqSummary:
    spec = topology.queue(key)
    dlq = spec.dlq_sqs_name(prefix)
    url = queue_url(sqs, dlq, prefix=prefix)
    counts = message_counts(sqs, url)
    summary = DlqSummary(queue=key, dlq=dlq, visible=counts["visible"], in_flight=counts["in_flight"])
    if summary.visible == 0:
        return summary
    messages = peek(sqs, url, limit=sample)
    now = time.time() if now is None else now
    names: Counter = Counter()
    for message in messages:
        sent = int(message.get("Attributes", {}).get("SentTimestamp", now * 1000)) / 1000
        age = max(0.0, now - sent)
        summary.oldest_age_seconds = max(summary.oldest_age_seconds or 0.0, age)
        try:
            envelope = decode_sqs_body(message["Body"])
        except EnvelopeError:
            summary.undecodable += 1
            continue
        names[envelope.task_name or "?"] += 1
        if len(summary.sample_task_ids) < 5 and envelope.task_id:
            summary.sample_task_ids.append(envelope.task_id)
    summary.sampled = len(messages)
    summary.top_tasks = names.most_common(5)
    return summary


def format_age(seconds: float | None) -> str:
    """An age for people: seconds, minutes or hours; n/a when unknown."""
    if seconds is None:
        return "n/a"
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def lambda_replay_hint(function_prefix: str) -> str:
    return (
        f"aws lambda invoke --function-name {function_prefix}-dlqReplay --cli-binary-format raw-in-base64-out "
        '--payload \'{"queue": "<queue>"}\' report.json'
    )


def format_alert(summaries: list[DlqSummary], *, service: str, replay_hint: str) -> tuple[str, str]:
    """A subject (<= 100 characters, SNS's limit) and a plain-text body a person can act on."""
    waiting = [s for s in summaries if s.visible or s.in_flight]
    total = sum(s.visible + s.in_flight for s in summaries)
    subject = f"[{service}] {total} message(s) in {len(waiting)} dead-letter queue(s)"[:100]
    lines = []
    for s in summaries:
        lines.append(f"{s.dlq} (queue {s.queue}): {s.visible} visible, {s.in_flight} in flight")
        if s.sampled:
            lines.append(f"  oldest of {s.sampled} sampled: {format_age(s.oldest_age_seconds)} old")
            for name, count in s.top_tasks:
                lines.append(f"  {count:>4} x {name}")
            if s.undecodable:
                lines.append(f"  {s.undecodable:>4} x not a Celery message")
            if s.sample_task_ids:
                lines.append(f"  sample task ids: {', '.join(s.sample_task_ids)}")
    lines += ["", "Replay (a dry run unless told otherwise):", f"  {replay_hint}"]
    return subject, "\n".join(lines)
