"""The numbers of every topology queue, for the queues page, its JSON and `manage.py queues`.

Counts come from SQS GetQueueAttributes (now). The age of the oldest message (of each queue and of its DLQ) and
the throughput come from CloudWatch's AWS/SQS metrics in one GetMetricData call (on AWS, and locally from the
emulator). Nothing is ever received from a queue to look at it: a receive counts toward maxReceiveCount and the DLQ.
A number that could not be read is None (shown as "n/a"), with the error beside it.

CloudWatch's age is a per-minute datapoint, up to minutes old: a queue that GetQueueAttributes shows empty now
has age 0 ("—"), whatever the last datapoint said, and every age says how old its datapoint is.
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
STALE_AFTER_SECONDS = 5 * 60  # SQS publishes every minute: a latest datapoint older than this is marked stale
SOURCES = {
    "counts": "SQS GetQueueAttributes (ApproximateNumberOfMessages, ...NotVisible, ...Delayed), read now",
    "oldest_age": (
        "CloudWatch AWS/SQS ApproximateAgeOfOldestMessage, Maximum per minute, latest datapoint (of the queue and"
        " of its DLQ; a DLQ's age counts from each message's move into it); 0 when GetQueueAttributes shows the"
        " queue empty now"
    ),
    "throughput": "CloudWatch AWS/SQS NumberOfMessagesDeleted, Sum per minute",
    "expired": "the workers' records of messages deleted unrun because their `expires` had passed (DiscardedMessage)",
}


def _error(exc: Exception) -> str:
    return f"{type(exc).__name__}: {exc}"


def human_age(seconds: float) -> str:
    """12 s, 3 min 4 s, 2 h 5 min: the page's and the command's way of saying an age."""
    s = round(seconds)
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60} s"
    return f"{s // 3600} h {s % 3600 // 60} min"


def _hhmm(at: datetime) -> str:
    return f"{at:%H:%M} UTC"


@dataclass(frozen=True)
class OldestAge:
    """The age of a queue's oldest message as shown, and what it rests on.

    basis: "empty" (GetQueueAttributes counts no message now: 0, whatever CloudWatch last said), "cloudwatch"
    (the latest datapoint), "no datapoint" (messages, but no datapoint in the window), "unread" (neither read).
    """

    seconds: float | None
    basis: str
    point_seconds: float | None = None  # CloudWatch's latest datapoint, whatever the basis
    point_at: datetime | None = None  # the start of that datapoint's minute

    @classmethod
    def of(cls, counts: dict[str, int] | None, point: tuple[datetime, float] | None) -> OldestAge:
        at, value = point if point else (None, None)
        if counts is not None and sum(counts.values()) == 0:
            return cls(0.0, "empty", value, at)
        if point:
            return cls(value, "cloudwatch", value, at)
        return cls(None, "unread" if counts is None else "no datapoint")

    def point_age_seconds(self, now: datetime) -> float | None:
        """How old the datapoint may be: from the start of its minute to now."""
        return None if self.point_at is None else max(0.0, (now - self.point_at).total_seconds())

    def text(self) -> str:
        return {"empty": "—", "cloudwatch": human_age(self.seconds or 0.0)}.get(self.basis, "n/a")

    def note(self, now: datetime, error: str | None = None) -> str:
        point_age = self.point_age_seconds(now)
        point = ""
        if self.point_at is not None and self.point_seconds is not None and point_age is not None:
            point = f"CloudWatch point of {_hhmm(self.point_at)}: {human_age(self.point_seconds)}"
            point += f", up to {human_age(point_age)} old"
        if self.basis == "empty":
            # CloudWatch's last point is named only when it disagrees (a message was there when it was taken).
            disagrees = point and self.point_seconds
            return "empty now (GetQueueAttributes)" + (f"; last {point}" if disagrees else "")
        if self.basis == "cloudwatch":
            # The mirror of the empty case: 0 s while SQS counts messages, from a point taken before they came.
            predates = "; it may predate the messages now there" if self.point_seconds == 0 else ""
            return point + predates + (" (stale)" if self.stale(now) else "")
        if self.basis == "no datapoint":
            return "no CloudWatch datapoint in the window yet"
        return error or "not read"

    def stale(self, now: datetime) -> bool:
        point_age = self.point_age_seconds(now)
        return point_age is not None and point_age > STALE_AFTER_SECONDS

    def as_dict(self, now: datetime, error: str | None = None) -> dict[str, Any]:
        return {
            "seconds": self.seconds,
            "basis": self.basis,
            "point_seconds": self.point_seconds,
            "point_at": self.point_at.isoformat() if self.point_at else None,
            "point_age_seconds": self.point_age_seconds(now),
            "stale": self.stale(now),
            "text": self.text(),
            "note": self.note(now, error),
        }


@dataclass
class QueueStats:
    """One topology queue and its DLQ, as read now."""

    key: str
    name: str
    dlq: str
    counts: dict[str, int] | None = None
    dlq_counts: dict[str, int] | None = None
    age_point: tuple[datetime, float] | None = None  # CloudWatch's latest (minute, age) of the queue
    dlq_age_point: tuple[datetime, float] | None = None  # and of its DLQ
    throughput: list[tuple[datetime, float]] = field(default_factory=list)  # (minute, messages deleted)
    error: str | None = None
    expired_recent: int | None = None  # expirations in the last EXPIRED_WINDOW_MINUTES (api/ops/services.py)
    expired_total: int | None = None

    @property
    def dlq_depth(self) -> int | None:
        return None if self.dlq_counts is None else sum(self.dlq_counts.values())

    @property
    def oldest(self) -> OldestAge:
        return OldestAge.of(self.counts, self.age_point)

    @property
    def dlq_oldest(self) -> OldestAge:
        return OldestAge.of(self.dlq_counts, self.dlq_age_point)

    @property
    def oldest_age_seconds(self) -> float | None:
        """The age shown: 0 when the queue is empty now, else CloudWatch's latest datapoint (None: unknown)."""
        return self.oldest.seconds

    @property
    def oldest_age_at(self) -> datetime | None:
        return self.oldest.point_at

    @property
    def deleted_last_minute(self) -> float | None:
        """The latest minute CloudWatch has a datapoint for (None: no datapoint in the window)."""
        return self.throughput[-1][1] if self.throughput else None

    def as_dict(self, now: datetime) -> dict[str, Any]:
        counts = self.counts or {}
        oldest, dlq_oldest = self.oldest, self.dlq_oldest
        return {
            "key": self.key,
            "name": self.name,
            "dlq": self.dlq,
            **{name: counts.get(name) for name in COUNT_ATTRIBUTES},
            "dlq_depth": self.dlq_depth,
            "dlq_counts": self.dlq_counts,
            "oldest_age_seconds": oldest.seconds,
            "oldest_age_at": oldest.point_at.isoformat() if oldest.point_at else None,
            "oldest_age": oldest.as_dict(now, self.error),
            "dlq_oldest_age_seconds": dlq_oldest.seconds,
            "dlq_oldest_age": dlq_oldest.as_dict(now, self.error),
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
            "queues": [q.as_dict(self.at) for q in self.queues],
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
        queries.append(_query(f"dlqage{i}", spec.dlq_sqs_name(prefix), AGE_METRIC))
        queries.append(_query(f"deleted{i}", spec.sqs_name(prefix), THROUGHPUT_METRIC))
    series = _metric_series(cloudwatch, queries, start, end)
    for i, queue in enumerate(stats):
        queue.age_point = series[f"age{i}"][-1] if series[f"age{i}"] else None
        queue.dlq_age_point = series[f"dlqage{i}"][-1] if series[f"dlqage{i}"] else None
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
