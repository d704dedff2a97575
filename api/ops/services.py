"""Ops services: the queues' numbers and a DLQ replay, both wired from the settings (the emulator or AWS)."""

from __future__ import annotations

import logging
import time
from datetime import datetime, timedelta

from django.conf import settings
from django.db import DatabaseError
from django.db.models import Count, Q
from django.utils import timezone

from api.jobs.models import Job
from api.ops import aws
from api.ops.queue_stats import QueuesSnapshot, queue_stats
from api.ops.read_budget import within
from core.dlq.replay import STOP_WHEN_SECONDS_LEFT, ReplayReport, replay_dlq
from core.dlq.request import parse_replay_request

logger = logging.getLogger(__name__)

EXPIRED_WINDOW_MINUTES = 15  # the "recent" expirations on the queues page and in manage.py queues


def _endpoint(url: str | None, service: str) -> str:
    return url or f"AWS {service} ({settings.SQS_BROKER.region})"


def _read_queues() -> QueuesSnapshot:
    return queue_stats(
        sqs=aws.sqs_client(),
        cloudwatch=aws.cloudwatch_client(),
        topology=settings.QUEUE_TOPOLOGY,
        prefix=settings.SQS_BROKER.queue_prefix,
        window_minutes=settings.OPS_THROUGHPUT_MINUTES,
        endpoints={
            "sqs": _endpoint(settings.SQS_ENDPOINT_URL, "SQS"),
            "cloudwatch": _endpoint(settings.CLOUDWATCH_ENDPOINT_URL, "CloudWatch"),
        },
    )


def queues_snapshot(*, budget_seconds: float | None = None) -> QueuesSnapshot:
    """Every queue's numbers. With a budget, the AWS reads run on a reader thread and raise ReadTimeout when they
    take longer (a web request must answer); the database part stays on the caller's thread and connection."""
    snapshot = _read_queues() if budget_seconds is None else within(_read_queues, seconds=budget_seconds, key="queues")
    _add_expired_counts(snapshot)
    return snapshot


def expired_counts(*, since: datetime) -> dict[str, tuple[int, int]]:
    """{queue key: (expirations since `since`, all expirations)} from the workers' discard records."""
    from workers.models import DiscardedMessage, DiscardReason

    rows = (
        DiscardedMessage.objects.filter(reason=DiscardReason.EXPIRED)
        .values("queue")
        .annotate(recent=Count("id", filter=Q(at__gte=since)), total=Count("id"))
    )
    return {row["queue"]: (row["recent"], row["total"]) for row in rows}


def _add_expired_counts(snapshot: QueuesSnapshot) -> None:
    """Each queue's expirations in the last EXPIRED_WINDOW_MINUTES and in all (None when the database fails)."""
    try:
        counts = expired_counts(since=timezone.now() - timedelta(minutes=EXPIRED_WINDOW_MINUTES))
    except DatabaseError as exc:
        logger.warning("expired counts unavailable: %r", exc)
        return
    for q in snapshot.queues:
        q.expired_recent, q.expired_total = counts.get(q.key, (0, 0))


def jobs_latest(*, limit: int) -> list[dict]:
    fields = ("id", "kind", "queue", "state", "attempts", "created_at", "updated_at", "error")
    return [
        {
            **row,
            "created_at": row["created_at"].isoformat(),
            "updated_at": row["updated_at"].isoformat(),
            "error": row["error"][:200],
        }
        for row in Job.objects.order_by("-id").values(*fields)[:limit]
    ]


def dlq_replay_run(*, payload: dict, max_seconds: float | None = None) -> ReplayReport:
    """The replay Lambda's own validation and replay code on a payload; raises ReplayRequestError (nothing
    received) for a bad one. After max_seconds it stops as the Lambda does near its timeout (report.stopped)."""
    request = parse_replay_request(payload, settings.QUEUE_TOPOLOGY)
    # replay_dlq stops when fewer than STOP_WHEN_SECONDS_LEFT remain: that margin is on top of max_seconds.
    deadline = None if max_seconds is None else time.monotonic() + max_seconds + STOP_WHEN_SECONDS_LEFT
    return replay_dlq(
        request,
        sqs=aws.sqs_client(),
        topology=settings.QUEUE_TOPOLOGY,
        prefix=settings.SQS_BROKER.queue_prefix,
        max_replays=settings.DLQ_MAX_REPLAYS,
        time_left=(lambda: float("inf")) if deadline is None else (lambda: deadline - time.monotonic()),
    )
