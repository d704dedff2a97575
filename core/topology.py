"""Load and validate the queue topology file (queues.yml), the single source of truth for every queue."""

from __future__ import annotations

import fnmatch
import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_TOPOLOGY_PATH = REPO_ROOT / "queues.yml"
TOPOLOGY_ENV_VAR = "QUEUE_TOPOLOGY"
PROFILE_ENV_VAR = "QUEUE_TOPOLOGY_PROFILE"

# Limits SQS itself imposes (AWS SQS developer guide, "Quotas related to messages" and queue attributes).
SQS_MAX_VISIBILITY_TIMEOUT = 43_200
SQS_MAX_DELAY_SECONDS = 900
SQS_MIN_MESSAGE_BYTES = 1_024
SQS_MAX_MESSAGE_BYTES = 1_048_576  # 1 MiB since 2025, and the default of a new queue
SQS_MIN_RETENTION = 60
SQS_MAX_RETENTION = 1_209_600
SQS_MAX_RECEIVE_COUNT = 1_000
# A countdown/ETA longer than SQS_MAX_DELAY_SECONDS travels in hops (workers/eta_hop.py), each a new message
# with a fresh retention, so SQS itself sets no upper bound. The bound is policy: a queue accepts delays up to
# its retention less one hop; anything longer is a schedule (beat's job), refused with the numbers.
LONG_DELAY_MARGIN_SECONDS = 900


def longest_delay_seconds(retention_seconds: int) -> int:
    """The longest countdown/ETA a queue with this retention accepts (0 if its retention is below the margin)."""
    return max(retention_seconds - LONG_DELAY_MARGIN_SECONDS, 0)


QUEUE_FIELDS = {
    "name": str,
    "dlq": str,
    "max_receive_count": int,
    "visibility_timeout": int,
    "soft_time_limit": int,
    "time_limit": int,
    "retention_seconds": int,
    "dlq_retention_seconds": int,
    "oldest_message_age_alarm_seconds": int,
    "tasks": list,
}
# Optional per queue. With a heartbeat the worker extends a running task's visibility every N seconds,
# so the visibility timeout bounds how soon a dead worker's task returns, not how long a task may run.
# max_message_bytes: SQS's own maximum unless a queue wants less. claim_check_max_bytes (0: off): a task whose
# message would be larger than max_message_bytes has its body stored in S3 (workers/claim_check.py), up to this.
OPTIONAL_QUEUE_FIELDS = {
    "visibility_heartbeat_seconds": 0,
    "max_message_bytes": SQS_MAX_MESSAGE_BYTES,
    "claim_check_max_bytes": 0,
}
# A worker holds a claim-checked body in memory several times over (the S3 object, base64, the decoded task):
# past this, pass a reference to the data, not the data.
CLAIM_CHECK_CEILING_BYTES = 64 * 1_048_576
RETRY_FIELDS = {"max_retries": int, "backoff_seconds": int, "backoff_max_seconds": int, "jitter": bool}
TOP_FIELDS = {"version", "visibility_margin_seconds", "retry", "queues", "default_queue", "profiles", "worker_groups"}
WORKER_GROUP_FIELDS = {
    "queues": list,
    "concurrency": int,
    "min_tasks": int,
    "max_tasks": int,
    "backlog_per_task": int,
}
# Optional per worker group. The prefetch is concurrency x this; above 1 a worker holds messages it has not
# started yet, so each receive can carry up to 10 (faster short tasks, fewer requests), but a held message
# waits behind the group's running tasks while other workers may idle, and at SIGTERM until the soft
# shutdown window closes. Keep 1 for groups whose tasks can be long.
OPTIONAL_WORKER_GROUP_FIELDS = {"prefetch_multiplier": 1}
MAX_PREFETCH_MULTIPLIER = 10  # a receive takes at most 10 messages: holding more buys nothing
# A profile may change numbers only: names, DLQs and routes stay the same in every environment.
PROFILE_QUEUE_FIELDS = {k for k, v in QUEUE_FIELDS.items() if v is int} | set(OPTIONAL_QUEUE_FIELDS)
PROFILE_WORKER_GROUP_FIELDS = {k for k, v in WORKER_GROUP_FIELDS.items() if v is int} | set(
    OPTIONAL_WORKER_GROUP_FIELDS
)


class TopologyError(ValueError):
    """The topology file is missing, malformed, or breaks a rule; the message names the queue and numbers."""


@dataclass(frozen=True)
class QueueSpec:
    """One Celery queue, its SQS queue and its dead-letter queue."""

    key: str
    name: str
    dlq: str
    max_receive_count: int
    visibility_timeout: int
    soft_time_limit: int
    time_limit: int
    retention_seconds: int
    dlq_retention_seconds: int
    oldest_message_age_alarm_seconds: int
    tasks: tuple[str, ...]
    visibility_heartbeat_seconds: int = 0
    max_message_bytes: int = SQS_MAX_MESSAGE_BYTES
    claim_check_max_bytes: int = 0  # 0: no claim check, a message over max_message_bytes is refused

    def sqs_name(self, prefix: str = "") -> str:
        return f"{prefix}{self.name}"

    def dlq_sqs_name(self, prefix: str = "") -> str:
        return f"{prefix}{self.dlq}"


@dataclass(frozen=True)
class RetryPolicy:
    """How every task retries: exponential backoff delivered as SQS DelaySeconds."""

    max_retries: int
    backoff_seconds: int
    backoff_max_seconds: int
    jitter: bool


@dataclass(frozen=True)
class WorkerGroup:
    """One worker service on ECS: the queues it consumes and how it scales (visible messages per task)."""

    name: str
    queues: tuple[str, ...]
    concurrency: int
    min_tasks: int
    max_tasks: int
    backlog_per_task: int
    prefetch_multiplier: int = 1  # messages held per slot: 1 holds none unstarted


@dataclass(frozen=True)
class Topology:
    """Every queue of the system, plus the rules that relate them."""

    version: int
    visibility_margin_seconds: int
    retry: RetryPolicy
    queues: dict[str, QueueSpec]
    default_queue: str
    source: Path
    worker_groups: dict[str, WorkerGroup]

    def queue(self, key: str) -> QueueSpec:
        try:
            return self.queues[key]
        except KeyError:
            raise TopologyError(
                f"unknown queue {key!r}; the topology ({self.source}) defines {sorted(self.queues)}"
            ) from None

    def queue_for_task(self, task_name: str) -> QueueSpec:
        """The queue a task is routed to by the topology's patterns (first match wins)."""
        for spec in self.queues.values():
            if any(fnmatch.fnmatchcase(task_name, pattern) for pattern in spec.tasks):
                return spec
        return self.queues[self.default_queue]

    def prefetch_multiplier_for(self, queue_keys) -> int:
        """The prefetch multiplier of a worker consuming these queues: the lowest of their worker groups', so a
        worker on queues of several groups (the local stack's) never holds more than the strictest allows."""
        keys = set(queue_keys)
        multipliers = [g.prefetch_multiplier for g in self.worker_groups.values() if keys & set(g.queues)]
        return min(multipliers, default=1)


def _typed(section: str, data: Any, fields: dict[str, type], optional: dict[str, Any] | None = None) -> dict[str, Any]:
    """The section's keys, each of its type; `optional` keys get their defaults (the caller checks them)."""
    optional = optional or {}
    if not isinstance(data, dict):
        raise TopologyError(f"{section}: expected a mapping, got {type(data).__name__}")
    unknown = set(data) - set(fields) - set(optional)
    missing = set(fields) - set(data)
    if unknown:
        raise TopologyError(f"{section}: unknown key(s) {sorted(unknown)} (allowed: {sorted({*fields, *optional})})")
    if missing:
        raise TopologyError(f"{section}: missing key(s) {sorted(missing)}")
    for field, kind in fields.items():
        value = data[field]
        # bool is an int subclass: refuse `true` where a number is meant.
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise TopologyError(f"{section}.{field}: expected {kind.__name__}, got {value!r}")
    return {**optional, **data}


def _check_range(where: str, value: int, low: int, high: int) -> None:
    if not low <= value <= high:
        raise TopologyError(f"{where} = {value} is outside the range SQS accepts ({low}..{high})")


def _parse_queue(key: str, raw: Any, margin: int) -> QueueSpec:
    where = f"queues.{key}"
    data = _typed(where, raw, QUEUE_FIELDS, OPTIONAL_QUEUE_FIELDS)
    for field in OPTIONAL_QUEUE_FIELDS:
        value = data[field]
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise TopologyError(f"{where}.{field}: expected a non-negative int, got {value!r}")
    heartbeat = data.pop("visibility_heartbeat_seconds")
    _check_claim_check(where, data["claim_check_max_bytes"], data["max_message_bytes"])
    _check_range(f"{where}.visibility_timeout", data["visibility_timeout"], 0, SQS_MAX_VISIBILITY_TIMEOUT)
    _check_range(f"{where}.max_receive_count", data["max_receive_count"], 1, SQS_MAX_RECEIVE_COUNT)
    _check_range(f"{where}.max_message_bytes", data["max_message_bytes"], SQS_MIN_MESSAGE_BYTES, SQS_MAX_MESSAGE_BYTES)
    for field in ("retention_seconds", "dlq_retention_seconds"):
        _check_range(f"{where}.{field}", data[field], SQS_MIN_RETENTION, SQS_MAX_RETENTION)
    if data["dlq_retention_seconds"] <= data["retention_seconds"]:
        # SQS keeps a message's original enqueue time when it moves to the DLQ: a DLQ retention no longer
        # than the queue's can expire it there at once, before anyone looked at it.
        raise TopologyError(
            f"{where}: dlq_retention_seconds ({data['dlq_retention_seconds']}) must be longer than "
            f"retention_seconds ({data['retention_seconds']}): a message keeps its first enqueue time in the DLQ"
        )
    if not 0 < data["soft_time_limit"] < data["time_limit"]:
        raise TopologyError(
            f"{where}: need 0 < soft_time_limit ({data['soft_time_limit']}) < time_limit ({data['time_limit']})"
        )
    if heartbeat:
        # Two heartbeats fit in one visibility timeout (one may be late) plus the margin.
        if data["visibility_timeout"] < 2 * heartbeat + margin:
            raise TopologyError(
                f"{where}: visibility_timeout ({data['visibility_timeout']} s) must be at least twice "
                f"visibility_heartbeat_seconds ({heartbeat} s) + visibility_margin_seconds ({margin} s) = "
                f"{2 * heartbeat + margin} s, or a running task's message is delivered again"
            )
    elif data["visibility_timeout"] <= data["time_limit"] + margin:
        raise TopologyError(
            f"{where}: visibility_timeout ({data['visibility_timeout']} s) must be above time_limit "
            f"({data['time_limit']} s) + visibility_margin_seconds ({margin} s) = "
            f"{data['time_limit'] + margin} s, or a running task's message is delivered again "
            "(or set visibility_heartbeat_seconds)"
        )
    if data["oldest_message_age_alarm_seconds"] <= 0:
        raise TopologyError(f"{where}.oldest_message_age_alarm_seconds must be positive")
    if not all(isinstance(p, str) and p for p in data["tasks"]):
        raise TopologyError(f"{where}.tasks: expected a list of task-name patterns")
    return QueueSpec(key=key, **{**data, "tasks": tuple(data["tasks"])}, visibility_heartbeat_seconds=heartbeat)


def _check_claim_check(where: str, ceiling: int, max_message_bytes: int) -> None:
    if ceiling and not max_message_bytes < ceiling <= CLAIM_CHECK_CEILING_BYTES:
        raise TopologyError(
            f"{where}.claim_check_max_bytes = {ceiling}: must be above max_message_bytes ({max_message_bytes}) "
            f"and at most {CLAIM_CHECK_CEILING_BYTES} (a worker holds the body in memory), or 0 for no claim check"
        )


def apply_profile(raw: dict[str, Any], profile: str) -> dict[str, Any]:
    """The topology with a named profile's numbers laid over it (e.g. `local`: short timeouts)."""
    profiles = raw.get("profiles") or {}
    if profile not in profiles:
        raise TopologyError(f"unknown topology profile {profile!r}; defined: {sorted(profiles)}")
    overlay = profiles[profile] or {}
    if not isinstance(overlay, dict):
        raise TopologyError(f"profiles.{profile}: expected a mapping, got {overlay!r}")
    for section in ("retry", "queues", "worker_groups"):
        if section in overlay and not isinstance(overlay[section], dict):
            raise TopologyError(f"profiles.{profile}.{section}: expected a mapping, got {overlay[section]!r}")
    unknown = set(overlay) - {"visibility_margin_seconds", "retry", "queues", "worker_groups"}
    if unknown:
        raise TopologyError(f"profiles.{profile}: unknown key(s) {sorted(unknown)}")
    merged = {**raw, "queues": _overlay_numbers(profile, "queues", raw.get("queues"), overlay.get("queues"))}
    if "visibility_margin_seconds" in overlay:
        merged["visibility_margin_seconds"] = overlay["visibility_margin_seconds"]
    if "retry" in overlay:
        merged["retry"] = {**(raw.get("retry") or {}), **overlay["retry"]}
    if overlay.get("worker_groups"):
        merged["worker_groups"] = _overlay_numbers(
            profile, "worker_groups", raw.get("worker_groups"), overlay["worker_groups"]
        )
    return merged


# What a profile may change in each section's entries, and what an entry is called in an error.
_PROFILE_NUMBERS = {
    "queues": (PROFILE_QUEUE_FIELDS, "queue"),
    "worker_groups": (PROFILE_WORKER_GROUP_FIELDS, "worker group"),
}


def _overlay_numbers(profile: str, section: str, entries: Any, overlay: Any) -> dict[str, Any]:
    """A section's entries (queues, worker groups) with a profile's numbers laid over them, copied; an entry
    that is no mapping is left for the parser to refuse."""
    allowed, noun = _PROFILE_NUMBERS[section]
    merged = {key: dict(value) if isinstance(value, dict) else value for key, value in (entries or {}).items()}
    for key, fields in (overlay or {}).items():
        where = f"profiles.{profile}.{section}.{key}"
        if key not in merged:
            raise TopologyError(f"{where}: no such {noun}")
        if not isinstance(fields, dict):
            raise TopologyError(f"{where}: expected a mapping, got {fields!r}")
        bad = set(fields) - allowed
        if bad:
            raise TopologyError(f"{where}: only numbers may change, not {sorted(bad)}")
        if isinstance(merged[key], dict):
            merged[key].update(fields)
    return merged


def parse_topology(raw: Any, source: Path, profile: str | None = None) -> Topology:
    """Build a Topology from parsed YAML, refusing anything the system cannot run safely with."""
    if not isinstance(raw, dict):
        raise TopologyError(f"{source}: expected a mapping at the top level")
    unknown = set(raw) - TOP_FIELDS
    if unknown:
        raise TopologyError(f"{source}: unknown top-level key(s) {sorted(unknown)}")
    if profile:
        raw = apply_profile(raw, profile)
    if raw.get("version") != 1:
        raise TopologyError(f"{source}: version must be 1, got {raw.get('version')!r}")
    margin = raw.get("visibility_margin_seconds")
    if not isinstance(margin, int) or isinstance(margin, bool) or margin < 0:
        raise TopologyError(f"visibility_margin_seconds: expected a non-negative int, got {margin!r}")

    retry_data = _typed("retry", raw.get("retry"), RETRY_FIELDS)
    retry = RetryPolicy(**retry_data)
    if retry.max_retries < 0 or retry.backoff_seconds < 1:
        raise TopologyError(f"retry: need max_retries >= 0 and backoff_seconds >= 1, got {retry_data}")

    queues_raw = raw.get("queues")
    if not isinstance(queues_raw, dict) or not queues_raw:
        raise TopologyError(f"{source}: `queues` must be a non-empty mapping")
    queues = {key: _parse_queue(key, value, margin) for key, value in queues_raw.items()}
    # A retry is a delayed message on any queue: its backoff must fit the shortest-lived one.
    longest = min(longest_delay_seconds(q.retention_seconds) for q in queues.values())
    if not 0 < retry.backoff_max_seconds <= longest:
        raise TopologyError(
            f"retry.backoff_max_seconds = {retry.backoff_max_seconds}: retry delays travel as SQS delays "
            f"(hops of up to {SQS_MAX_DELAY_SECONDS} s), at most the shortest queue retention less "
            f"{LONG_DELAY_MARGIN_SECONDS} s ({longest} s)"
        )

    sqs_names = [n for q in queues.values() for n in (q.name, q.dlq)]
    duplicated = sorted({n for n in sqs_names if sqs_names.count(n) > 1})
    if duplicated:
        raise TopologyError(f"SQS queue name(s) used twice: {duplicated}")

    default_queue = raw.get("default_queue")
    if default_queue not in queues:
        raise TopologyError(f"default_queue {default_queue!r} is not one of {sorted(queues)}")

    return Topology(
        version=1,
        visibility_margin_seconds=margin,
        retry=retry,
        queues=queues,
        default_queue=default_queue,
        source=source,
        worker_groups=_parse_worker_groups(raw.get("worker_groups"), queues),
    )


def _parse_worker_groups(raw: Any, queues: dict[str, QueueSpec]) -> dict[str, WorkerGroup]:
    """Worker services; without the section, one group `all` consumes every queue."""
    if raw is None:
        return {"all": WorkerGroup("all", tuple(queues), concurrency=2, min_tasks=2, max_tasks=4, backlog_per_task=100)}
    if not isinstance(raw, dict) or not raw:
        raise TopologyError("worker_groups: expected a non-empty mapping")
    groups = {}
    owner: dict[str, str] = {}
    for name, data in raw.items():
        fields = _typed(f"worker_groups.{name}", data, WORKER_GROUP_FIELDS, OPTIONAL_WORKER_GROUP_FIELDS)
        for key in fields["queues"]:
            if key not in queues:
                raise TopologyError(f"worker_groups.{name}: unknown queue {key!r}; one of {sorted(queues)}")
            if key in owner:
                raise TopologyError(f"queue {key!r} is in worker groups {owner[key]!r} and {name!r}: pick one")
            owner[key] = name
        if not fields["queues"]:
            raise TopologyError(f"worker_groups.{name}.queues: empty")
        if fields["concurrency"] < 1 or not 1 <= fields["min_tasks"] <= fields["max_tasks"]:
            raise TopologyError(
                f"worker_groups.{name}: need concurrency >= 1 and 1 <= min_tasks ({fields['min_tasks']}) "
                f"<= max_tasks ({fields['max_tasks']})"
            )
        if fields["backlog_per_task"] < 1:
            raise TopologyError(f"worker_groups.{name}.backlog_per_task must be positive")
        _check_prefetch_multiplier(name, fields, queues)
        groups[name] = WorkerGroup(name=name, **{**fields, "queues": tuple(fields["queues"])})
    orphans = sorted(set(queues) - set(owner))
    if orphans:
        raise TopologyError(f"queue(s) {orphans} are in no worker group: nothing would consume them")
    return groups


def _check_prefetch_multiplier(name: str, fields: dict[str, Any], queues: dict[str, QueueSpec]) -> None:
    where, value = f"worker_groups.{name}.prefetch_multiplier", fields["prefetch_multiplier"]
    if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= MAX_PREFETCH_MULTIPLIER:
        raise TopologyError(f"{where}: expected an int from 1 to {MAX_PREFETCH_MULTIPLIER}, got {value!r}")
    if value > 1:
        # A held message's visibility timeout runs while it waits: only the heartbeat (which extends every
        # message the worker holds, started or not) keeps another worker from running it too.
        bare = [key for key in fields["queues"] if not queues[key].visibility_heartbeat_seconds]
        if bare:
            raise TopologyError(
                f"{where} = {value}: queue(s) {bare} have no visibility_heartbeat_seconds, so a message held "
                "but not started would be delivered again once its visibility timeout ran out"
            )


def topology_path() -> Path:
    return Path(os.environ.get(TOPOLOGY_ENV_VAR) or DEFAULT_TOPOLOGY_PATH)


def load_topology(path: Path | str | None = None, profile: str | None = None) -> Topology:
    """Read and validate a topology file (default: $QUEUE_TOPOLOGY, else queues.yml at the repo root),
    with a profile's overrides (default: $QUEUE_TOPOLOGY_PROFILE, else none)."""
    source = Path(path) if path is not None else topology_path()
    if profile is None:
        profile = os.environ.get(PROFILE_ENV_VAR) or None
    try:
        text = source.read_text()
    except OSError as exc:
        raise TopologyError(f"cannot read the queue topology {source}: {exc}") from exc
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise TopologyError(f"{source} is not valid YAML: {exc}") from exc
    return parse_topology(raw, source, profile)


@lru_cache(maxsize=1)
def get_topology() -> Topology:
    """The process-wide topology, loaded once."""
    return load_topology()
