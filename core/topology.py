"""Load and validate the queue topology file (queues.yml), the single source of truth for every queue."""

from __future__ import annotations

import fnmatch
import json
import os
import sys
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    StrictBool,
    StrictInt,
    StrictStr,
    TypeAdapter,
    ValidationError,
    WrapValidator,
    create_model,
    model_validator,
)
from pydantic.json_schema import GenerateJsonSchema, NoDefault

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_TOPOLOGY_PATH = REPO_ROOT / "queues.yml"
SCHEMA_PATH = REPO_ROOT / "queues.schema.json"  # generated from the models below: `python -m core.topology --schema`
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
SQS_NAME_PATTERN = r"^[A-Za-z0-9_-]{1,80}$"  # a standard queue's name (the stage prefix comes in front of it)
# A countdown/ETA longer than SQS_MAX_DELAY_SECONDS travels in hops (workers/eta_hop.py), each a new message
# with a fresh retention, so SQS itself sets no upper bound. The bound is policy: a queue accepts delays up to
# its retention less one hop; anything longer is a schedule (beat's job), refused with the numbers.
LONG_DELAY_MARGIN_SECONDS = 900
# A worker holds a claim-checked body in memory several times over (the S3 object, base64, the decoded task):
# past this, pass a reference to the data, not the data.
CLAIM_CHECK_CEILING_BYTES = 64 * 1_048_576
MAX_PREFETCH_MULTIPLIER = 10  # a receive takes at most 10 messages: holding more buys nothing


def longest_delay_seconds(retention_seconds: int) -> int:
    """The longest countdown/ETA a queue with this retention accepts (0 if its retention is below the margin)."""
    return max(retention_seconds - LONG_DELAY_MARGIN_SECONDS, 0)


class TopologyError(ValueError):
    """The topology file is missing, malformed, or breaks a rule; the message names the queue and numbers."""


def _int(low: int, high: int | None = None, *, sqs: bool = False) -> Any:
    """A strict int (`true`, "3" and 3.0 refused) from low to high, whose error names the value and the bounds;
    sqs: the bounds are SQS's own, and the error says so."""
    if high is not None:
        expected = f"an int from {low} to {high}"
    else:
        expected = {0: "a non-negative int", 1: "a positive int"}.get(low, f"an int of at least {low}")

    def explain(value: Any, handler: Any) -> int:
        try:
            return handler(value)
        except ValidationError:
            if sqs and type(value) is int:
                raise ValueError(f"= {value} is outside the range SQS accepts ({low}..{high})") from None
            raise ValueError(f"expected {expected}, got {value!r}") from None

    return Annotated[StrictInt, Field(ge=low, le=high), WrapValidator(explain)]


NonNegative = _int(0)
Positive = _int(1)
ReceiveCount = _int(1, SQS_MAX_RECEIVE_COUNT, sqs=True)
VisibilityTimeout = _int(0, SQS_MAX_VISIBILITY_TIMEOUT, sqs=True)
Retention = _int(SQS_MIN_RETENTION, SQS_MAX_RETENTION, sqs=True)
MessageBytes = _int(SQS_MIN_MESSAGE_BYTES, SQS_MAX_MESSAGE_BYTES, sqs=True)
PrefetchMultiplier = _int(1, MAX_PREFETCH_MULTIPLIER)
SqsName = Annotated[StrictStr, Field(pattern=SQS_NAME_PATTERN)]
TaskPattern = Annotated[StrictStr, Field(min_length=1)]


class _Model(BaseModel):
    """A section of the file: frozen, and any key it does not define is refused with the ones it does."""

    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)
    unknown_keys: ClassVar[str] = "unknown key(s)"

    @model_validator(mode="before")
    @classmethod
    def _known_keys(cls, data: Any) -> Any:
        if isinstance(data, dict):
            unknown = sorted(map(str, set(data) - set(cls.model_fields)))
            if unknown:
                raise ValueError(f"{cls.unknown_keys} {unknown} (allowed: {sorted(cls.model_fields)})")
        return data


class QueueSpec(_Model):
    """One Celery queue (its key in `queues`), its SQS queue and its dead-letter queue."""

    name: SqsName
    dlq: SqsName
    max_receive_count: ReceiveCount
    visibility_timeout: VisibilityTimeout
    soft_time_limit: Positive
    time_limit: Positive
    retention_seconds: Retention
    dlq_retention_seconds: Retention
    oldest_message_age_alarm_seconds: Positive
    tasks: tuple[TaskPattern, ...]
    visibility_heartbeat_seconds: NonNegative = 0
    """With a heartbeat the worker extends a running task's visibility every N seconds, so the visibility
    timeout bounds how soon a dead worker's task returns, not how long a task may run (0: no heartbeat)."""
    max_message_bytes: MessageBytes = SQS_MAX_MESSAGE_BYTES
    """The largest encoded SQS message (SQS's own maximum unless a queue wants less)."""
    claim_check_max_bytes: NonNegative = 0
    """0: off. Above max_message_bytes: a larger task body travels through S3 (workers/claim_check.py), up to this."""

    _key: str = PrivateAttr("")

    @property
    def key(self) -> str:
        """The Celery queue name: this queue's key in the topology's `queues`."""
        return self._key

    def sqs_name(self, prefix: str = "") -> str:
        return f"{prefix}{self.name}"

    def dlq_sqs_name(self, prefix: str = "") -> str:
        return f"{prefix}{self.dlq}"

    @model_validator(mode="after")
    def _limits_fit_together(self) -> QueueSpec:
        if self.dlq_retention_seconds <= self.retention_seconds:
            # SQS keeps a message's original enqueue time when it moves to the DLQ: a DLQ retention no longer
            # than the queue's can expire it there at once, before anyone looked at it.
            raise ValueError(
                f"dlq_retention_seconds ({self.dlq_retention_seconds}) must be longer than retention_seconds "
                f"({self.retention_seconds}): a message keeps its first enqueue time in the DLQ"
            )
        if self.soft_time_limit >= self.time_limit:
            raise ValueError(f"need 0 < soft_time_limit ({self.soft_time_limit}) < time_limit ({self.time_limit})")
        ceiling = self.claim_check_max_bytes
        if ceiling and not self.max_message_bytes < ceiling <= CLAIM_CHECK_CEILING_BYTES:
            raise ValueError(
                f"claim_check_max_bytes = {ceiling}: must be above max_message_bytes ({self.max_message_bytes}) "
                f"and at most {CLAIM_CHECK_CEILING_BYTES} (a worker holds the body in memory), or 0 for no claim check"
            )
        return self


class RetryPolicy(_Model):
    """How every task retries: exponential backoff delivered as SQS DelaySeconds."""

    max_retries: NonNegative
    backoff_seconds: Positive
    backoff_max_seconds: Positive
    """At most the shortest queue retention less 900 s: retry delays travel as SQS delays, in hops of 900 s."""
    jitter: StrictBool


class WorkerGroup(_Model):
    """One worker service on ECS: the queues it consumes and how it scales (visible messages per task)."""

    queues: Annotated[tuple[StrictStr, ...], Field(min_length=1)]
    concurrency: Positive
    min_tasks: Positive
    max_tasks: Positive
    backlog_per_task: Positive
    prefetch_multiplier: PrefetchMultiplier = 1
    """Messages held per slot. 1 holds none unstarted; above 1 each receive carries more (faster short tasks,
    fewer requests), but a held message waits behind the running tasks and, at SIGTERM, until the soft
    shutdown window closes. Needs a visibility heartbeat on every queue of the group."""

    _name: str = PrivateAttr("")

    @property
    def name(self) -> str:
        """The group's key in the topology's `worker_groups`."""
        return self._name

    @model_validator(mode="after")
    def _min_below_max(self) -> WorkerGroup:
        if self.min_tasks > self.max_tasks:
            raise ValueError(f"need 1 <= min_tasks ({self.min_tasks}) <= max_tasks ({self.max_tasks})")
        return self


class _Numbers(_Model):
    """What a profile lays over one entry: numbers only, so names, DLQs and routes are the same everywhere."""

    unknown_keys: ClassVar[str] = "only numbers may change, not"


def _numbers_of(model: type[BaseModel], *, also: tuple[str, ...] = ()) -> type[BaseModel]:
    """The model's int fields (and `also`), each with its bounds and each optional: what a profile may change."""
    fields = {
        name: (Annotated[(info.annotation, *info.metadata)], None)
        for name, info in model.model_fields.items()
        if info.annotation is int or name in also
    }
    return create_model(f"{model.__name__}Numbers", __base__=_Numbers, __module__=__name__, **fields)


QueueNumbers = _numbers_of(QueueSpec)
WorkerGroupNumbers = _numbers_of(WorkerGroup)
RetryNumbers = _numbers_of(RetryPolicy, also=("jitter",))


class Profile(_Model):
    """Numbers laid over the file when QUEUE_TOPOLOGY_PROFILE names this profile (e.g. `local`: short timeouts)."""

    visibility_margin_seconds: NonNegative = None
    retry: RetryNumbers = None
    queues: dict[str, QueueNumbers] = Field(default_factory=dict)
    worker_groups: dict[str, WorkerGroupNumbers] = Field(default_factory=dict)


# Without a worker_groups section, one group `all` consumes every queue.
_DEFAULT_GROUP = {"concurrency": 2, "min_tasks": 2, "max_tasks": 4, "backlog_per_task": 100}


class Topology(_Model):
    """The queue topology (queues.yml): every queue of the system, plus the rules that relate them."""

    version: Literal[1]
    visibility_margin_seconds: NonNegative
    """Visibility timeout must exceed the hard time limit by at least this much (the ack, a slow DeleteMessage
    and clock drift all happen after the limit fires)."""
    retry: RetryPolicy
    queues: Annotated[dict[str, QueueSpec], Field(min_length=1)]
    default_queue: StrictStr
    """Tasks that match no queue's `tasks` pattern go here."""
    worker_groups: Annotated[dict[str, WorkerGroup], Field(min_length=1)] = Field(default_factory=dict)
    """Worker services (one ECS service each); every queue is in exactly one. Default: one group `all`."""
    profiles: dict[str, Profile] = Field(default_factory=dict)

    _source: Path = PrivateAttr(DEFAULT_TOPOLOGY_PATH)

    @property
    def source(self) -> Path:
        """The file this topology was read from."""
        return self._source

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

    @model_validator(mode="before")
    @classmethod
    def _one_group_by_default(cls, data: Any) -> Any:
        if isinstance(data, dict) and "worker_groups" not in data and isinstance(data.get("queues"), dict):
            data = {**data, "worker_groups": {"all": {"queues": list(data["queues"]), **_DEFAULT_GROUP}}}
        return data

    @model_validator(mode="after")
    def _queues_fit_together(self) -> Topology:
        for key, spec in self.queues.items():
            spec._key = key
        for name, group in self.worker_groups.items():
            group._name = name
        problems = [
            *(self._visibility_problem(spec) for spec in self.queues.values()),
            self._backoff_problem(),
            self._duplicate_names_problem(),
            self._default_queue_problem(),
            *self._worker_group_problems(),
            *self._profile_problems(),
        ]
        problems = [p for p in problems if p]
        if problems:
            raise ValueError("; ".join(problems))
        return self

    def _visibility_problem(self, spec: QueueSpec) -> str | None:
        margin, heartbeat, where = self.visibility_margin_seconds, spec.visibility_heartbeat_seconds, spec.key
        if heartbeat:
            # Two heartbeats fit in one visibility timeout (one may be late) plus the margin.
            if spec.visibility_timeout < 2 * heartbeat + margin:
                return (
                    f"queues.{where}: visibility_timeout ({spec.visibility_timeout} s) must be at least twice "
                    f"visibility_heartbeat_seconds ({heartbeat} s) + visibility_margin_seconds ({margin} s) = "
                    f"{2 * heartbeat + margin} s, or a running task's message is delivered again"
                )
        elif spec.visibility_timeout <= spec.time_limit + margin:
            return (
                f"queues.{where}: visibility_timeout ({spec.visibility_timeout} s) must be above time_limit "
                f"({spec.time_limit} s) + visibility_margin_seconds ({margin} s) = {spec.time_limit + margin} s, "
                "or a running task's message is delivered again (or set visibility_heartbeat_seconds)"
            )
        return None

    def _backoff_problem(self) -> str | None:
        # A retry is a delayed message on any queue: its backoff must fit the shortest-lived one.
        longest = min(longest_delay_seconds(q.retention_seconds) for q in self.queues.values())
        if self.retry.backoff_max_seconds > longest:
            return (
                f"retry.backoff_max_seconds = {self.retry.backoff_max_seconds}: retry delays travel as SQS delays "
                f"(hops of up to {SQS_MAX_DELAY_SECONDS} s), at most the shortest queue retention less "
                f"{LONG_DELAY_MARGIN_SECONDS} s ({longest} s)"
            )
        return None

    def _duplicate_names_problem(self) -> str | None:
        sqs_names = [n for q in self.queues.values() for n in (q.name, q.dlq)]
        duplicated = sorted({n for n in sqs_names if sqs_names.count(n) > 1})
        if duplicated:
            return f"SQS queue name(s) used twice: {duplicated}"
        return None

    def _default_queue_problem(self) -> str | None:
        if self.default_queue not in self.queues:
            return f"default_queue {self.default_queue!r} is not one of {sorted(self.queues)}"
        return None

    def _worker_group_problems(self) -> list[str]:
        problems, owner = [], {}
        for name, group in self.worker_groups.items():
            for key in group.queues:
                if key not in self.queues:
                    problems.append(f"worker_groups.{name}: unknown queue {key!r}; one of {sorted(self.queues)}")
                elif key in owner:
                    problems.append(f"queue {key!r} is in worker groups {owner[key]!r} and {name!r}: pick one")
                owner.setdefault(key, name)
            # A held message's visibility timeout runs while it waits: only the heartbeat (which extends every
            # message the worker holds, started or not) keeps another worker from running it too.
            bare = [k for k in group.queues if k in self.queues and not self.queues[k].visibility_heartbeat_seconds]
            if group.prefetch_multiplier > 1 and bare:
                problems.append(
                    f"worker_groups.{name}.prefetch_multiplier = {group.prefetch_multiplier}: queue(s) {bare} have "
                    "no visibility_heartbeat_seconds, so a message held but not started would be delivered again "
                    "once its visibility timeout ran out"
                )
        orphans = sorted(set(self.queues) - set(owner))
        if orphans:
            problems.append(f"queue(s) {orphans} are in no worker group: nothing would consume them")
        return problems

    def _profile_problems(self) -> list[str]:
        sections = (("queues", "queue", self.queues), ("worker_groups", "worker group", self.worker_groups))
        return [
            f"profiles.{name}.{section}.{key}: no such {noun}"
            for name, profile in self.profiles.items()
            for section, noun, known in sections
            for key in getattr(profile, section)
            if key not in known
        ]


_EXPECTED = {"model_type": "a mapping", "dict_type": "a mapping", "bool_type": "true or false", "tuple_type": "a list"}


def _explain(exc: ValidationError, where: tuple[str, ...] = ()) -> str:
    """Every problem pydantic found, each at its place in the file (`queues.default.time_limit: ...`)."""
    problems: list[str] = []
    missing: dict[str, list[str]] = {}
    for error in exc.errors(include_url=False):
        *parent, last = [*where, *map(str, error["loc"])] or [""]
        place, value, kind = ".".join([*parent, last]).strip("."), error["input"], error["type"]
        if kind == "missing":
            missing.setdefault(".".join(parent), []).append(last)
            continue
        if kind == "value_error":
            text = str(error["ctx"]["error"])
        elif kind in _EXPECTED:
            text = f"expected {_EXPECTED[kind]}, got {value!r}"
        elif kind == "too_short":
            text = f"expected at least {error['ctx']['min_length']} entry, got {value!r}"
        elif kind == "literal_error":
            text = f"must be {error['ctx']['expected']}, got {value!r}"
        elif kind == "string_pattern_mismatch":
            text = f"{value!r} is not an SQS queue name (letters, digits, - and _, at most 80 with the prefix)"
        else:
            text = f"{error['msg'][0].lower()}{error['msg'][1:]}, got {value!r}"
        problems.append(f"{place} {text}" if text.startswith(("= ", "must ")) else f"{place}: {text}".lstrip(": "))
    problems += [f"{parent or 'top level'}: missing key(s) {sorted(keys)}" for parent, keys in missing.items()]
    return "; ".join(problems)


_PROFILES = TypeAdapter(dict[str, Profile])


def apply_profile(raw: dict[str, Any], profile: str) -> dict[str, Any]:
    """The topology with a named profile's numbers laid over it (e.g. `local`: short timeouts), copied."""
    try:
        profiles = _PROFILES.validate_python(raw.get("profiles") or {})
    except ValidationError as exc:
        raise TopologyError(_explain(exc, ("profiles",))) from None
    if profile not in profiles:
        raise TopologyError(f"unknown topology profile {profile!r}; defined: {sorted(profiles)}")
    overlay, merged = profiles[profile], dict(raw)
    if overlay.visibility_margin_seconds is not None:
        merged["visibility_margin_seconds"] = overlay.visibility_margin_seconds
    if overlay.retry is not None and isinstance(raw.get("retry"), dict):
        merged["retry"] = {**raw["retry"], **overlay.retry.model_dump(exclude_unset=True)}
    for section, noun in (("queues", "queue"), ("worker_groups", "worker group")):
        changes = getattr(overlay, section)
        if not changes or not isinstance(raw.get(section), dict):
            continue  # nothing to change, or a section the parser refuses anyway
        merged[section] = entries = {k: dict(v) if isinstance(v, dict) else v for k, v in raw[section].items()}
        for key, numbers in changes.items():
            if key not in entries:
                raise TopologyError(f"profiles.{profile}.{section}.{key}: no such {noun}")
            if isinstance(entries[key], dict):
                entries[key].update(numbers.model_dump(exclude_unset=True))
    return merged


def parse_topology(raw: Any, source: Path, profile: str | None = None) -> Topology:
    """Build a Topology from parsed YAML, refusing anything the system cannot run safely with."""
    if not isinstance(raw, dict):
        raise TopologyError(f"{source}: expected a mapping at the top level, got {type(raw).__name__}")
    if profile:
        try:
            raw = apply_profile(raw, profile)
        except TopologyError as exc:
            raise TopologyError(f"{source}: {exc}") from None
    try:
        topology = Topology.model_validate(raw)
    except ValidationError as exc:
        raise TopologyError(f"{source}: {_explain(exc)}") from None
    topology._source = source
    return topology


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


class _EditorSchema(GenerateJsonSchema):
    """No made-up titles, and no `null` default for a number a profile may leave out (null is refused)."""

    def get_default_value(self, schema: Any) -> Any:
        default = super().get_default_value(schema)
        return NoDefault if default is None else default

    def field_title_should_be_set(self, schema: Any) -> bool:
        return False


def topology_json_schema() -> dict[str, Any]:
    """The JSON Schema of queues.yml from the models; the cross-field rules are the loader's alone. Declared
    draft-07, what the YAML language server validates (pydantic's output uses no later keyword; `$defs` is only
    where the `$ref`s point)."""
    schema = Topology.model_json_schema(schema_generator=_EditorSchema)
    return {"$schema": "http://json-schema.org/draft-07/schema#", **schema}


if __name__ == "__main__":
    if sys.argv[1:] != ["--schema"]:
        sys.exit("usage: python -m core.topology --schema > queues.schema.json")
    print(json.dumps(topology_json_schema(), indent=2))
