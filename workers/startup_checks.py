"""Start-up validation: refuse to run when the config breaks a rule the failure semantics depend on."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from celery.app.defaults import NAMESPACES, flatten

from core.claim_check_bucket import BUCKET_ENV_VAR
from core.topology import LONG_DELAY_MARGIN_SECONDS, Topology, longest_delay_seconds
from workers.celery_config import ECS_STOP_TIMEOUT_SECONDS, LONG_POLL_ENV, configured_long_poll_seconds
from workers.transport import CLAIM_CHECK_OPTION, RECEIVE_AHEAD_OPTION

if TYPE_CHECKING:
    from celery import Celery

logger = logging.getLogger(__name__)

KNOWN_CELERY_SETTINGS = frozenset(key for key, _ in flatten(NAMESPACES))

# setting -> the value the design needs, and why.
REQUIRED_SETTINGS: dict[str, tuple[Any, str]] = {
    "task_acks_late": (True, "a message is deleted only after its task ends"),
    "task_reject_on_worker_lost": (True, "a killed worker's task is delivered again"),
    "task_acks_on_failure": (False, "failed tasks reach the DLQ through SQS redelivery"),
    "task_acks_on_timeout": (False, "timed-out tasks reach the DLQ through SQS redelivery"),
    # Above 1 only per worker group, in queues.yml (apply_worker_prefetch): never for every worker at once.
    "worker_prefetch_multiplier": (1, "a worker holds no message it has not started, unless its worker group says so"),
    "task_serializer": ("json", "JSON only"),
    "result_serializer": ("json", "JSON only"),
    "accept_content": (["json"], "JSON only: never unpickle what arrives from a queue"),
    "broker_connection_retry_on_startup": (True, "a worker waits for the broker instead of dying"),
    "worker_enable_remote_control": (False, "SQS has no broadcast; pidbox queues do not exist"),
    "worker_consumer": ("workers.consumer:Consumer", "an undecodable message must reach the DLQ, not be deleted"),
}


class StartupRefused(SystemExit):
    """Raised to stop a process before it consumes or publishes; exits non-zero with the reasons."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("refusing to start:\n  - " + "\n  - ".join(problems))


def check_unknown_settings(django_setting_names: Iterable[str]) -> list[str]:
    """A misspelt CELERY_* setting is silently ignored by Celery; name it instead."""
    problems = []
    for name in django_setting_names:
        if name.startswith("CELERY_"):
            key = name[len("CELERY_") :].lower()
            if key not in KNOWN_CELERY_SETTINGS:
                problems.append(f"unknown Celery setting {name} (misspelt? it would be ignored)")
    return problems


def check_required_settings(conf: Mapping[str, Any]) -> list[str]:
    problems = []
    for key, (wanted, why) in REQUIRED_SETTINGS.items():
        actual = conf.get(key)
        if actual != wanted:
            problems.append(f"{key} is {actual!r}, must be {wanted!r}: {why}")
    options = conf.get("broker_transport_options") or {}
    wanted_poll = configured_long_poll_seconds()
    if options.get("wait_time_seconds") != wanted_poll:
        problems.append(
            f"broker_transport_options.wait_time_seconds is {options.get('wait_time_seconds')!r}, "
            f"must be {wanted_poll} ({LONG_POLL_ENV}, default 20: long polling; empty receives cost money)"
        )
    soft = conf.get("worker_soft_shutdown_timeout") or 0
    if not 0 < soft < ECS_STOP_TIMEOUT_SECONDS - 10:
        problems.append(
            f"worker_soft_shutdown_timeout is {soft} s, must be above 0 and below the ECS stopTimeout "
            f"({ECS_STOP_TIMEOUT_SECONDS} s) minus 10 s, or ECS SIGKILLs the worker before it hands back work"
        )
    return problems


def check_queues(conf: Mapping[str, Any], topology: Topology) -> list[str]:
    """Every topology queue has a URL, and a bucket if it has a claim check. (Each queue's own numbers are checked
    when the topology loads.)"""
    options = conf.get("broker_transport_options") or {}
    predefined = options.get("predefined_queues") or {}
    problems = [
        f"queue {key!r} has no URL in broker_transport_options.predefined_queues"
        for key in topology.queues
        if not (predefined.get(key) or {}).get("url")
    ]
    claim_checked = sorted(key for key, q in topology.queues.items() if q.claim_check_max_bytes)
    if claim_checked and not (options.get(CLAIM_CHECK_OPTION) or {}).get("bucket"):
        problems.append(
            f"queue(s) {claim_checked} have claim_check_max_bytes but no bucket: set {BUCKET_ENV_VAR} (infra/ "
            "creates the bucket; devstack creates it on the emulator)"
        )
    return problems


def apply_and_check_task_limits(tasks: Mapping[str, Any], topology: Topology) -> list[str]:
    """Give each project task its queue's time limits unless it sets tighter ones; refuse looser ones."""
    problems = []
    for name, task in tasks.items():
        if name.startswith("celery."):
            continue  # Celery's built-ins (chord unlock, backend cleanup)
        spec = topology.queue_for_task(name)
        hard, soft = getattr(task, "time_limit", None), getattr(task, "soft_time_limit", None)
        for attr, own, queue_limit in (
            ("time_limit", hard, spec.time_limit),
            ("soft_time_limit", soft, spec.soft_time_limit),
        ):
            if own is not None and own > queue_limit:
                problems.append(
                    f"task {name!r}: its {attr} {own} s exceeds the {attr} of queue {spec.key!r} ({queue_limit} s), "
                    f"for which the queue's visibility timeout ({spec.visibility_timeout} s) is sized"
                )
        if hard is None:
            hard = task.time_limit = spec.time_limit
        if soft is None:
            # Keep the queue's gap between soft and hard limit, so a tighter hard limit moves both.
            soft = task.soft_time_limit = min(spec.soft_time_limit, hard - (spec.time_limit - spec.soft_time_limit))
        if not 0 < soft < hard:
            problems.append(
                f"task {name!r}: soft_time_limit {soft} s must be above 0 and below its time_limit {hard} s, "
                "or the soft limit never fires"
            )
        backoff_max = getattr(task, "retry_backoff_max", None)
        longest = longest_delay_seconds(spec.retention_seconds)
        if backoff_max is not None and backoff_max > longest:
            problems.append(
                f"task {name!r}: retry_backoff_max {backoff_max} s exceeds the longest delay queue {spec.key!r} "
                f"accepts ({longest} s: its retention less {LONG_DELAY_MARGIN_SECONDS} s)"
            )
    return problems


def apply_worker_prefetch(worker: Any, topology: Topology) -> list[str]:
    """Give a worker the prefetch multiplier of the worker group(s) of the queues it consumes (queues.yml);
    refuse one given any other way (`--prefetch-multiplier`), which would apply to every group alike."""
    configured = worker.app.conf.worker_prefetch_multiplier
    if worker.prefetch_multiplier != configured:
        return [
            f"prefetch multiplier {worker.prefetch_multiplier} given on the command line: set prefetch_multiplier "
            "on the worker group in queues.yml instead"
        ]
    consumed = [key for key in worker.app.amqp.queues.consume_from if key in topology.queues]
    worker.prefetch_multiplier = topology.prefetch_multiplier_for(consumed)
    if worker.prefetch_multiplier > 1:
        # Held messages keep its pool busy: receives ahead would only split receives (workers/transport/pacer.py).
        options = dict(worker.app.conf.broker_transport_options or {})
        worker.app.conf.broker_transport_options = {**options, RECEIVE_AHEAD_OPTION: False}
    logger.info(
        "prefetch multiplier %d for queues %s (worker_groups in %s)",
        worker.prefetch_multiplier,
        ",".join(consumed),
        topology.source.name,
    )
    return []


def check_dependency_errors() -> list[str]:
    """WORKER_DEPENDENCY_ERRORS names importable exception classes (workers/dependency_errors.py)."""
    from core.env import EnvError
    from workers.dependency_errors import dependency_error_classes

    try:
        dependency_error_classes()
    except EnvError as exc:
        return [str(exc)]
    return []


def run_startup_checks(
    app: Celery, topology: Topology, django_setting_names: Iterable[str] = (), *, worker: Any = None
) -> None:
    """Every check at once, so one start-up shows every problem; raises StartupRefused if any.
    `worker` (a starting WorkController) also gets its worker group's prefetch."""
    problems = (
        check_unknown_settings(django_setting_names)
        + check_required_settings(app.conf)
        + check_queues(app.conf, topology)
        + apply_and_check_task_limits(app.tasks, topology)
        + check_dependency_errors()
    )
    if worker is not None and not problems:
        problems += apply_worker_prefetch(worker, topology)
    if problems:
        for problem in problems:
            logger.critical("start-up check failed: %s", problem)
        raise StartupRefused(problems)
