"""Build the Celery settings (broker, routes, predefined queues, safety defaults) from the topology."""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from kombu import Exchange, Queue

from core.env import env_int
from core.topology import Topology
from workers.claim_check import ClaimCheckOptions
from workers.transport import (
    AHEAD_COALESCE_SECONDS,
    CLAIM_CHECK_OPTION,
    DELETE_BATCH_SECONDS_OPTION,
    FETCH_WHEN_SLOT_FREES_OPTION,
    QUEUE_LIMITS_OPTION,
    RECEIVE_AHEAD_COALESCE_OPTION,
    RECEIVE_AHEAD_OPTION,
    RECEIVE_AHEAD_PREDICT_OPTION,
)

TRANSPORT = "workers.transport:Transport"
LOCAL_ACCOUNT_ID = "123456789012"  # the account moto answers for
ECS_STOP_TIMEOUT_SECONDS = 120  # the ECS maximum; infra/ sets the worker's stopTimeout to it
SOFT_SHUTDOWN_SECONDS = 90  # running tasks get this long after SIGTERM; the rest is for hand-back
WAIT_TIME_SECONDS = 20  # SQS long poll maximum: the fewest empty receives
LONG_POLL_ENV = "WORKER_LONG_POLL_SECONDS"  # shorter only in tests: a worker turns "lost" sooner (registry)
# How long an acked message may wait for its DeleteMessageBatch: a worker killed in this window runs the
# task again after the visibility timeout (at least once, as always), so it stays far below any task's length.
DELETE_BATCH_SECONDS = 0.1
RESULT_BACKEND_DJANGO_DB = "django-db"
# Every SQS client of the worker (kombu's through transport_options, the heartbeat's through
# workers/sqs_clients.py): read_timeout must outlast the 20 s long poll; few retries so a dead endpoint fails fast.
SQS_CLIENT_CONFIG: dict[str, Any] = {
    "connect_timeout": 5,
    "read_timeout": WAIT_TIME_SECONDS + 10,
    "retries": {"mode": "standard", "max_attempts": 2},
}


def heartbeat_client_config(interval: float) -> dict[str, Any]:
    """The visibility heartbeat's client: the config above, but each call gives up within one heartbeat interval
    (at least 1 s). No heartbeat call waits on a long poll, and with the 30 s read timeout one hung
    ChangeMessageVisibilityBatch stalled every extension for up to 3 x 30 s, past the visibility timeout."""
    seconds = max(1, int(interval))
    config = copy.deepcopy(SQS_CLIENT_CONFIG)
    config["connect_timeout"] = min(config["connect_timeout"], seconds)
    config["read_timeout"] = seconds
    return config


@dataclass(frozen=True)
class BrokerEnv:
    """Where the queues are: a local endpoint, or AWS (by region, account, or explicit URLs)."""

    endpoint_url: str | None = None  # e.g. http://127.0.0.1:5000 for the local emulator
    region: str = "us-east-1"
    account_id: str | None = None
    queue_prefix: str = ""
    queue_urls: dict[str, str] = field(default_factory=dict)  # per queue key, wins over the rest
    claim_check_bucket: str | None = None  # the S3 bucket of claim-checked task bodies (on the same endpoint)


class BrokerConfigError(ValueError):
    """The broker location is incomplete: a queue URL cannot be worked out."""


def queue_url(topology: Topology, key: str, broker: BrokerEnv) -> str:
    """The SQS URL of a topology queue in this environment."""
    if key in broker.queue_urls:
        return broker.queue_urls[key]
    name = topology.queue(key).sqs_name(broker.queue_prefix)
    if broker.endpoint_url:
        return f"{broker.endpoint_url.rstrip('/')}/{broker.account_id or LOCAL_ACCOUNT_ID}/{name}"
    if broker.account_id:
        return f"https://sqs.{broker.region}.amazonaws.com/{broker.account_id}/{name}"
    raise BrokerConfigError(
        f"no URL for queue {key!r}: set SQS_QUEUE_URL_{key.upper()}, or AWS_ACCOUNT_ID, or SQS_ENDPOINT_URL"
    )


def broker_url(broker: BrokerEnv) -> str:
    """kombu has no endpoint option: the endpoint is the host:port of the broker URL."""
    if not broker.endpoint_url:
        return "sqs://"
    hostport = broker.endpoint_url.split("://", 1)[-1].rstrip("/")
    return f"sqs://{hostport}"


def configured_long_poll_seconds() -> int:
    """WORKER_LONG_POLL_SECONDS, else 20 (checked by transport_options and again at worker start-up)."""
    return env_int(LONG_POLL_ENV, WAIT_TIME_SECONDS)


def transport_options(
    topology: Topology,
    broker: BrokerEnv,
    *,
    fetch_when_slot_frees: bool = True,
    delete_batch_seconds: float = DELETE_BATCH_SECONDS,
    receive_ahead: bool = True,
    receive_ahead_coalesce_seconds: float = AHEAD_COALESCE_SECONDS,
    long_poll_seconds: int = WAIT_TIME_SECONDS,
    receive_ahead_predict: bool = True,
) -> dict[str, Any]:
    if not 0 <= receive_ahead_coalesce_seconds <= 1:
        ms = receive_ahead_coalesce_seconds * 1000
        raise ValueError(f"WORKER_RECEIVE_AHEAD_COALESCE_MS must be 0 to 1000, got {ms:g}")
    if isinstance(long_poll_seconds, bool) or not isinstance(long_poll_seconds, int):
        raise ValueError(f"{LONG_POLL_ENV} must be a whole number of seconds, got {long_poll_seconds!r}")
    if not 1 <= long_poll_seconds <= WAIT_TIME_SECONDS:
        raise ValueError(f"{LONG_POLL_ENV} must be 1 to {WAIT_TIME_SECONDS}, got {long_poll_seconds}")
    return {
        "region": broker.region,
        "is_secure": not (broker.endpoint_url or "https").startswith("http:"),
        "wait_time_seconds": long_poll_seconds,
        # After an empty poll, and the fallback while every prefetch slot is busy (see the next option).
        "polling_interval": 1,
        # Fetch as soon as a task ends instead of up to polling_interval later (workers/transport/pacer.py).
        FETCH_WHEN_SLOT_FREES_OPTION: fetch_when_slot_frees,
        # A slot that frees while the queue's receive is in flight gets a receive of its own (pacer.py).
        RECEIVE_AHEAD_OPTION: receive_ahead,
        # A slot freed while its queue's receive is out waits this long for company (pacer.py).
        RECEIVE_AHEAD_COALESCE_OPTION: receive_ahead_coalesce_seconds,
        # With receive_ahead: a queue of tasks shorter than its round trip receives for the slots predicted free.
        RECEIVE_AHEAD_PREDICT_OPTION: receive_ahead_predict,
        # Acks become one DeleteMessageBatch per 10 messages or per this many seconds (0: one DeleteMessage each).
        DELETE_BATCH_SECONDS_OPTION: delete_batch_seconds,
        # No credentials here: boto3's default chain (env, ECS task role) supplies them.
        "predefined_queues": {key: {"url": queue_url(topology, key, broker)} for key in topology.queues},
        QUEUE_LIMITS_OPTION: {
            key: {
                "visibility_timeout": q.visibility_timeout,
                "visibility_heartbeat_seconds": q.visibility_heartbeat_seconds,
                "max_message_bytes": q.max_message_bytes,
                "retention_seconds": q.retention_seconds,
            }
            for key, q in topology.queues.items()
        },
        # Task bodies over a queue's max_message_bytes go to S3, up to its claim_check_max_bytes.
        CLAIM_CHECK_OPTION: ClaimCheckOptions(
            bucket=broker.claim_check_bucket,
            endpoint_url=broker.endpoint_url,
            region=broker.region,
            ceilings={key: q.claim_check_max_bytes for key, q in topology.queues.items() if q.claim_check_max_bytes},
        ).as_option(),
        "client-config": copy.deepcopy(SQS_CLIENT_CONFIG),
    }


def task_routes(topology: Topology) -> dict[str, dict[str, str]]:
    return {pattern: {"queue": key} for key, q in topology.queues.items() for pattern in q.tasks}


def build_celery_settings(
    topology: Topology,
    broker: BrokerEnv,
    *,
    result_backend: str | None = None,
    soft_shutdown_seconds: float = SOFT_SHUTDOWN_SECONDS,
    fetch_when_slot_frees: bool = True,
    delete_batch_seconds: float = DELETE_BATCH_SECONDS,
    receive_ahead: bool = True,
    receive_ahead_coalesce_seconds: float = AHEAD_COALESCE_SECONDS,
    long_poll_seconds: int = WAIT_TIME_SECONDS,
    receive_ahead_predict: bool = True,
) -> dict[str, Any]:
    """Every Celery setting the design depends on, lower-case and without the CELERY_ namespace."""
    settings: dict[str, Any] = {
        "broker_url": broker_url(broker),
        "broker_transport": TRANSPORT,
        "broker_transport_options": transport_options(
            topology,
            broker,
            fetch_when_slot_frees=fetch_when_slot_frees,
            delete_batch_seconds=delete_batch_seconds,
            receive_ahead=receive_ahead,
            receive_ahead_coalesce_seconds=receive_ahead_coalesce_seconds,
            long_poll_seconds=long_poll_seconds,
            receive_ahead_predict=receive_ahead_predict,
        ),
        "broker_connection_retry_on_startup": True,
        # A dead endpoint at publish time must surface in about a second, not hang the request.
        "task_publish_retry_policy": {"max_retries": 2, "interval_start": 0, "interval_step": 0.2, "interval_max": 0.5},
        "task_default_queue": topology.default_queue,
        "task_queues": tuple(Queue(key, Exchange(key, type="direct"), routing_key=key) for key in topology.queues),
        "task_routes": task_routes(topology),
        # Only topology queues exist: a typo in a queue name fails at publish, not in a silent new queue.
        "task_create_missing_queues": False,
        # At-least-once: delete only after the task ends; a killed child's message comes back.
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        # A failed or timed-out task is left unacked: SQS redelivers it and its redrive policy moves it
        # to the DLQ after maxReceiveCount receives.
        "task_acks_on_failure": False,
        "task_acks_on_timeout": False,
        "worker_prefetch_multiplier": 1,
        # Imported by the worker's main process before the pool forks, like the task modules: BaseTask imports it
        # lazily (it needs Django's models), and a child importing it on its first task would spend that task's
        # time limit on it (tests/unit/workers/test_preloaded_before_fork.py).
        "include": ("workers.idempotency",),
        # Undecodable messages are rejected into the DLQ, not deleted (workers/consumer.py).
        "worker_consumer": "workers.consumer:Consumer",
        "task_serializer": "json",
        "result_serializer": "json",
        "accept_content": ["json"],
        "result_accept_content": ["json"],
        "event_serializer": "json",
        # SQS has no broadcast: remote control, events and gossip cannot work there.
        "worker_enable_remote_control": False,
        "worker_send_task_events": False,
        "task_send_sent_event": False,
        # ECS: SIGTERM is remapped to SIGQUIT (REMAP_SIGTERM) to start a soft shutdown that ends well
        # inside the 120 s stopTimeout, then restores unacknowledged messages.
        "worker_soft_shutdown_timeout": float(soft_shutdown_seconds),
        # Celery sleeps the whole soft-shutdown window once it starts one; an idle worker need not.
        "worker_enable_soft_shutdown_on_idle": False,
        # One beat at a time, by a lease in the database (workers/beat.py).
        "beat_scheduler": "workers.beat:LockedDatabaseScheduler",
        "timezone": "UTC",
        "enable_utc": True,
        "worker_hijack_root_logger": False,
    }
    if result_backend:
        if result_backend != RESULT_BACKEND_DJANGO_DB:
            raise BrokerConfigError(
                f"unsupported result backend {result_backend!r}: use {RESULT_BACKEND_DJANGO_DB!r} or leave it off"
            )
        settings.update(
            result_backend=RESULT_BACKEND_DJANGO_DB,
            task_ignore_result=False,
            result_extended=True,
            result_expires=timedelta(days=1),
        )
    else:
        # Fire-and-forget: the Job row carries the state.
        settings.update(result_backend=None, task_ignore_result=True)
    return settings


def as_django_settings(settings: dict[str, Any]) -> dict[str, Any]:
    """Name the settings as Django sees them under config_from_object(namespace="CELERY")."""
    return {f"CELERY_{key.upper()}": value for key, value in settings.items()}
