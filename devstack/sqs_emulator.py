"""The local SQS emulator: moto's server on 127.0.0.1 that also publishes the AWS/SQS CloudWatch metrics AWS would.

moto publishes no SQS metrics, so without this the dashboard and `manage.py queues` would have no age of the
oldest message and no throughput locally. A thread reads moto's in-process SQS backend every
LOCAL_SQS_METRICS_SECONDS (default 60, AWS's own period) and writes, per queue and with dimension QueueName,
into moto's CloudWatch backend: ApproximateAgeOfOldestMessage, NumberOfMessagesSent, NumberOfMessagesDeleted
and the three ApproximateNumberOfMessages* gauges. GetMetricData at the same endpoint then answers as AWS does.
A DLQ's age counts from when each message was moved into it, as AWS's does (not from its first send).

    python -m devstack.sqs_emulator -p 9324
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
import time
from typing import Any

from moto.cloudwatch.models import cloudwatch_backends
from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
from moto.sqs.models import Queue, SQSBackend, sqs_backends
from werkzeug.serving import run_simple

from core.env import env_int
from devstack import sqs_receive_lock, sqs_scan_costs

NAMESPACE = "AWS/SQS"
PERIOD_ENV_VAR = "LOCAL_SQS_METRICS_SECONDS"
# AWS: a message received this often without being deleted no longer counts toward the oldest message's age.
AGE_IGNORES_RECEIVES = 3
_DELETED, _SENT = "_emulator_deleted", "_emulator_sent"  # counters kept on moto's Queue objects
_ENQUEUED_MS = "_emulator_enqueued_ms"  # kept on moto's Message objects: when it entered the queue it is in

logger = logging.getLogger("devstack.sqs_emulator")
_lock = threading.Lock()


def _bump(queue: Queue, counter: str) -> None:
    setattr(queue, counter, getattr(queue, counter, 0) + 1)


def _take(queue: Queue, counter: str) -> int:
    with _lock:
        value = getattr(queue, counter, 0)
        setattr(queue, counter, 0)
        return value


def install_counters() -> None:
    """Count messages deleted and sent per queue (moto keeps no such count), and note when each message entered
    its queue (moto's redrive moves the message object, SentTimestamp and receive count unchanged); idempotent."""
    if getattr(Queue.delete_message, "_emulator", False):
        return
    delete_message, send_message, add_message = Queue.delete_message, SQSBackend.send_message, Queue.add_message

    def counted_delete(self: Queue, receipt_handle: str) -> None:
        with _lock:
            # moto accepts a second delete of the same handle silently: count each message once.
            first = receipt_handle not in self.deleted_messages
            delete_message(self, receipt_handle)
            if first:
                _bump(self, _DELETED)

    def counted_send(self: SQSBackend, queue_name: str, *args: Any, **kwargs: Any) -> Any:
        # Redrive to a DLQ bypasses this, as on AWS (NumberOfMessagesSent omits redriven messages).
        message = send_message(self, queue_name, *args, **kwargs)
        with _lock:
            _bump(self.get_queue(queue_name), _SENT)
        return message

    def stamped_add(self: Queue, message: Any) -> None:
        # A send, and moto's move to the DLQ after maxReceiveCount receives, both end here.
        setattr(message, _ENQUEUED_MS, time.time() * 1000)
        add_message(self, message)

    counted_delete._emulator = counted_send._emulator = stamped_add._emulator = True  # type: ignore[attr-defined]
    Queue.delete_message = counted_delete  # type: ignore[method-assign]
    SQSBackend.send_message = counted_send  # type: ignore[method-assign]
    Queue.add_message = stamped_add  # type: ignore[method-assign]


def oldest_age_seconds(queue: Queue, now_ms: float, *, dead_letter: bool = False) -> float:
    """Age of the oldest message that is not delayed and was received fewer than 3 times (0 when none).

    In a DLQ (dead_letter), AWS counts every message, from when it was moved there: "for dead-letter queues, the
    value is the longest time that a message has been in the queue". A moved message was received
    maxReceiveCount times, so the receive rule would hide every message of a DLQ fed by a redrive policy."""
    if dead_letter:
        entered = [getattr(m, _ENQUEUED_MS, m.sent_timestamp) for m in list(queue._messages) if not m.delayed]
    else:
        entered = [
            m.sent_timestamp
            for m in list(queue._messages)
            if not m.delayed and m.approximate_receive_count < AGE_IGNORES_RECEIVES
        ]
    entered = [at for at in entered if at]
    return max(0.0, (now_ms - min(entered)) / 1000) if entered else 0.0


def queue_metrics(queue: Queue, now_ms: float, *, dead_letter: bool = False) -> list[dict[str, Any]]:
    """One period's AWS/SQS datapoints of a queue, as PutMetricData's MetricData."""
    values = {
        "ApproximateAgeOfOldestMessage": (oldest_age_seconds(queue, now_ms, dead_letter=dead_letter), "Seconds"),
        "NumberOfMessagesDeleted": (_take(queue, _DELETED), "Count"),
        "NumberOfMessagesSent": (_take(queue, _SENT), "Count"),
        "ApproximateNumberOfMessagesVisible": (queue.approximate_number_of_messages, "Count"),
        "ApproximateNumberOfMessagesNotVisible": (queue.approximate_number_of_messages_not_visible, "Count"),
        "ApproximateNumberOfMessagesDelayed": (queue.approximate_number_of_messages_delayed, "Count"),
    }
    dimensions = [{"Name": "QueueName", "Value": queue.name}]
    return [
        {"MetricName": name, "Value": float(value), "Unit": unit, "Dimensions": dimensions}
        for name, (value, unit) in values.items()
    ]


def publish_metrics() -> int:
    """Write one period's datapoints of every queue of every account and region; how many queues."""
    now_ms = time.time() * 1000
    published = 0
    for account_id, regions in list(sqs_backends.items()):
        for region, backend in list(regions.items()):
            queues = list(backend.queues.values())
            # A DLQ is a queue some redrive policy points at (moto resolved the ARN to the queue object).
            dead_letter = {id(q.dead_letter_queue) for q in queues if q.dead_letter_queue is not None}
            if queues:
                data = [
                    datum
                    for queue in queues
                    for datum in queue_metrics(queue, now_ms, dead_letter=id(queue) in dead_letter)
                ]
                cloudwatch_backends[account_id][region].put_metric_data(NAMESPACE, data)
                published += len(queues)
    return published


def publish_every(period: float, stop: threading.Event) -> None:
    while not stop.wait(period):
        try:
            publish_metrics()
        except Exception:  # one bad period (a queue deleted mid-read) must not end the metrics
            logger.exception("publishing the AWS/SQS metrics failed; trying again next period")


def _exit(*_args: Any) -> None:
    sys.exit(0)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-H", "--host", default="127.0.0.1", choices=["127.0.0.1"], help="local only")
    parser.add_argument("-p", "--port", type=int, required=True)
    args = parser.parse_args(argv)
    os.environ.setdefault("MOTO_PORT", str(args.port))  # as `python -m moto.server` does
    signal.signal(signal.SIGTERM, _exit)
    signal.signal(signal.SIGINT, _exit)

    install_counters()
    sqs_receive_lock.install()
    sqs_scan_costs.install()
    period = env_int(PERIOD_ENV_VAR, 60)
    threading.Thread(target=publish_every, args=(period, threading.Event()), name="metrics", daemon=True).start()
    app = DomainDispatcherApplication(create_backend_app)
    app.debug = True  # type: ignore[attr-defined]
    print(f"SQS emulator on http://{args.host}:{args.port}, AWS/SQS metrics every {period} s", flush=True)
    run_simple(args.host, args.port, app, threaded=True, request_handler=MotoRequestHandler)


if __name__ == "__main__":
    main()
