"""The numbers of every topology queue, for the queues page, its JSON and `manage.py queues`.

Counts come from SQS GetQueueAttributes (now). The age of the oldest message and the throughput come from
CloudWatch's AWS/SQS metrics in one GetMetricData call (on AWS, and locally from the emulator). Nothing is
ever received from a queue to look at it: a receive counts toward maxReceiveCount and the DLQ.
A number that could not be read is None (shown as "n/a"), with the error beside it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from core.sqs_batches import COUNT_ATTRIBUTES, message_counts
from core.topology import QueueSpec, Topology

AGE_METRIC = ("ApproximateAgeOfOldestMessage", "Maximum")
THROUGHPUT_METRIC = ("NumberOfMessagesDeleted", "Sum")
PERIOD_SECONDS = 60  # SQS publishes its metrics once a minute
SOURCES = {
    "counts": "SQS GetQueueAttributes (ApproximateNumberOfMessages, ...NotVisible, ...Delayed), read now",
    "oldest_age": "CloudWatch AWS/SQS ApproximateAgeOfOldestMessage, Maximum per minute, latest datapoint",
    "throughput": "CloudWatch AWS/SQS NumberOfMessagesDeleted, Sum per minute",
    "expired": "the workers' records of messages deleted unrun because their `expires` had passed (DiscardedMessage)",
}


def _error(exc: Exception) -> str:
    return f"{type(exc).__name__}: {exc}"


@dataclass
class QueueStats:
    """One topology queue and its DLQ, as read now."""

    key: str
    name: str
    dlq: str
    counts: dict[str, int] | None = None
    dlq_counts: dict[str, int] | None = None
    oldest_age_seconds: float | None = None
    oldest_age_at: datetime | None = None  # the minute of the datapoint
    throughput: list[tuple[datetime, float]] = field(default_factory=list)  # (minute, messages deleted)
    error: str | None = None
    expired_recent: int | None = None  # expirations in the last EXPIRED_WINDOW_MINUTES (api/ops/services.py)
    expired_total: int | None = None

    @property
    def dlq_depth(self) -> int | None:
        return None if self.dlq_counts is None else sum(self.dlq_counts.values())

    @property
    def deleted_last_minute(self) -> float | None:
        """The latest minute CloudWatch has a datapoint for (None: no datapoint in the window)."""
        return self.throughput[-1][1] if self.throughput else None

    def as_dict(self) -> dict[str, Any]:
        counts = self.counts or {}
        return {
            "key": self.key,
            "name": self.name,
            "dlq": self.dlq,
            **{name: counts.get(name) for name in COUNT_ATTRIBUTES},
            "dlq_depth": self.dlq_depth,
            "dlq_counts": self.dlq_counts,
            "oldest_age_seconds": self.oldest_age_seconds,
            "oldest_age_at": self.oldest_age_at.isoformat() if self.oldest_age_at else None,
            "deleted_last_minute": self.deleted_last_minute,
            "throughput": [{"minute": at.isoformat(), "deleted": value} for at, value in self.throughput],
            "expired_recent": self.expired_recent,
            "expired_total": self.expired_total,
            "error": self.error,
        }


@dataclass
class QueuesSnapshot:
    """Every topology queue's numbers at one moment, with where they came from."""

    at: datetime
    window_minutes: int
    queues: list[QueueStats]
    metrics_error: str | None = None
    endpoints: dict[str, str] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "at": self.at.isoformat(),
            "window_minutes": self.window_minutes,
            "sources": SOURCES,
            "endpoints": self.endpoints,
            "metrics_error": self.metrics_error,
            "queues": [q.as_dict() for q in self.queues],
        }


def _counts(sqs, queue_name: str) -> dict[str, int]:
    return message_counts(sqs, sqs.get_queue_url(QueueName=queue_name)["QueueUrl"])


def _read_counts(sqs, spec: QueueSpec, stats: QueueStats, prefix: str) -> None:
    try:
        stats.counts = _counts(sqs, spec.sqs_name(prefix))
        stats.dlq_counts = _counts(sqs, spec.dlq_sqs_name(prefix))
    except (ClientError, BotoCoreError) as exc:
        stats.error = _error(exc)


def _query(query_id: str, queue_name: str, metric: tuple[str, str]) -> dict[str, Any]:
    name, stat = metric
    return {
        "Id": query_id,
        "MetricStat": {
            "Metric": {
                "Namespace": "AWS/SQS",
                "MetricName": name,
                "Dimensions": [{"Name": "QueueName", "Value": queue_name}],
            },
            "Period": PERIOD_SECONDS,
            "Stat": stat,
        },
        "ReturnData": True,
    }


def _metric_series(cloudwatch, queries: list[dict], start: datetime, end: datetime) -> dict[str, list]:
    """{query id: [(minute, value), ...] oldest first}, following NextToken."""
    series: dict[str, list] = {q["Id"]: [] for q in queries}
    token = None
    while True:
        kwargs = {"NextToken": token} if token else {}
        response = cloudwatch.get_metric_data(
            MetricDataQueries=queries, StartTime=start, EndTime=end, ScanBy="TimestampAscending", **kwargs
        )
        for result in response["MetricDataResults"]:
            points = zip(result.get("Timestamps", []), result.get("Values", []), strict=True)
            series[result["Id"]].extend((at.astimezone(UTC), float(value)) for at, value in points)
        token = response.get("NextToken")
        if not token:
            return {key: sorted(points) for key, points in series.items()}


def _read_metrics(cloudwatch, specs: list[QueueSpec], stats: list[QueueStats], prefix: str, window, now) -> None:
    end = now.replace(second=0, microsecond=0) + timedelta(minutes=1)
    start = end - timedelta(minutes=window + 1)
    queries = []
    for i, spec in enumerate(specs):
        queries.append(_query(f"age{i}", spec.sqs_name(prefix), AGE_METRIC))
        queries.append(_query(f"deleted{i}", spec.sqs_name(prefix), THROUGHPUT_METRIC))
    series = _metric_series(cloudwatch, queries, start, end)
    for i, queue in enumerate(stats):
        if ages := series[f"age{i}"]:
            queue.oldest_age_at, queue.oldest_age_seconds = ages[-1]
        queue.throughput = series[f"deleted{i}"][-window:]


def queue_stats(
    *,
    sqs,
    cloudwatch,
    topology: Topology,
    prefix: str = "",
    window_minutes: int = 15,
    now: datetime | None = None,
    endpoints: dict[str, str] | None = None,
) -> QueuesSnapshot:
    """Read the numbers of every topology queue: one GetQueueAttributes per queue and DLQ, one GetMetricData."""
    now = now or datetime.now(UTC)
    specs = list(topology.queues.values())
    stats = [QueueStats(key=spec.key, name=spec.sqs_name(prefix), dlq=spec.dlq_sqs_name(prefix)) for spec in specs]
    for spec, queue in zip(specs, stats, strict=True):
        _read_counts(sqs, spec, queue, prefix)
    snapshot = QueuesSnapshot(at=now, window_minutes=window_minutes, queues=stats, endpoints=endpoints or {})
    try:
        _read_metrics(cloudwatch, specs, stats, prefix, window_minutes, now)
    except (ClientError, BotoCoreError) as exc:
        snapshot.metrics_error = _error(exc)
    return snapshot
