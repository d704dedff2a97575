"""What a running task knows about the SQS delivery it came in (worker, receive count, replays, queue), and when
its retry is due."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from celery.exceptions import Retry

from core.dlq.replay import REPLAY_COUNT_HEADER


@dataclass(frozen=True)
class Delivery:
    hostname: str = ""
    pid: int | None = None
    task_name: str = ""
    queue: str = ""  # the SQS queue's name (kombu's routing key), as Celery reports it
    receive_count: int | None = None  # SQS ApproximateReceiveCount; None when the broker did not say
    replays: int = 0  # the replay Lambda's counter header (0: never replayed by it)

    @property
    def worker(self) -> str:
        return f"{self.hostname}:{self.pid}" if self.hostname else ""


def _receive_count(properties: Any) -> int | None:
    """kombu's SQS channel keeps the received SQS message in delivery_info["sqs_message"] (kombu 5.7
    `Channel._envelope_payload`); Celery's Request passes the message properties to the pool as
    request_dict["properties"]. Both are private: tests/unit/workers/test_delivery.py fails if either moves."""
    try:
        value = properties["delivery_info"]["sqs_message"]["Attributes"]["ApproximateReceiveCount"]
        return int(value)
    except (KeyError, TypeError, ValueError):
        return None


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else 0


def delivery_of(request: Any) -> Delivery:
    """The Delivery of a task's request (celery.app.task.Context), in the pool process that runs it."""
    info = getattr(request, "delivery_info", None) or {}
    return Delivery(
        hostname=getattr(request, "hostname", None) or "",
        pid=os.getpid(),
        task_name=getattr(request, "task", None) or "",
        queue=info.get("routing_key") or "",
        receive_count=_receive_count(getattr(request, "properties", None)),
        replays=_int(getattr(request, REPLAY_COUNT_HEADER, 0)),
    )


def delivery_of_request(request: Any) -> Delivery:
    """The Delivery of a celery.worker.request.Request, in the worker's main process (which keeps the kombu
    message): the pool process it ran in, if it was given one."""
    message = getattr(request, "message", None)
    info = getattr(request, "delivery_info", None) or {}
    return Delivery(
        hostname=getattr(request, "hostname", None) or "",
        pid=getattr(request, "worker_pid", None),
        task_name=getattr(request, "task_name", None) or "",
        queue=info.get("routing_key") or "",
        receive_count=_receive_count(getattr(message, "properties", None)),
        replays=_int((getattr(message, "headers", None) or {}).get(REPLAY_COUNT_HEADER, 0)),
    )


def retry_when(einfo: Any) -> Any:
    """Retry.when (a countdown in seconds, or an ETA) from the einfo Celery passes to Task.on_retry: billiard 4
    wraps the Retry in ExceptionWithTraceback (its `exc`). None if neither is found."""
    seen = getattr(einfo, "exception", None)
    for _ in range(2):
        if isinstance(seen, Retry):
            return seen.when
        seen = getattr(seen, "exc", None)
    return None
