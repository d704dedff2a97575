"""The job kinds a client may ask for: the task each publishes, its payload's model, and the jobs API's body."""

from __future__ import annotations

import functools
import json
import operator
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    WrapValidator,
    create_model,
    model_validator,
)
from pydantic.json_schema import GenerateJsonSchema, NoDefault

SCHEMA_PATH = Path(__file__).with_name("request.schema.json")  # `python -m api.jobs.kinds --schema` writes it


class JobInputError(ValueError):
    """The request is invalid; the message says what to change (HTTP 400), `field` where (e.g. payload.seconds)."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


def _bounded(kind: type, low: float, high: float | None = None, *, expected: str | None = None) -> Any:
    """A strict number from low to high (`true` and "3" refused) whose error names the bounds and the value;
    `expected` replaces the whole error (e.g. for a count of seconds)."""

    def explain(value: Any, handler: Any) -> Any:
        try:
            return handler(value)
        except ValidationError as exc:
            if expected:
                raise ValueError(f"must be {expected}, got {value!r}") from None
            if {e["type"] for e in exc.errors()} & {"greater_than_equal", "less_than_equal"}:
                raise ValueError(f"must be between {low} and {high}, got {value!r}") from None
            raise

    return Annotated[kind, Field(ge=low, le=high), WrapValidator(explain)]


def _text(max_length: int) -> Any:
    return Annotated[str, Field(max_length=max_length)]


class _Strict(BaseModel):
    """Strict (no coercion: `true` is no number, "3" no integer), and an unknown field is named with the allowed."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, use_attribute_docstrings=True)

    @model_validator(mode="before")
    @classmethod
    def _known_fields(cls, data: Any) -> Any:
        if isinstance(data, dict):
            unknown = sorted(map(str, set(data) - set(cls.model_fields)))
            if unknown:
                raise ValueError(f"unknown field(s) {unknown}; allowed: {sorted(cls.model_fields)}")
        return data


TEXT = 200_000  # large enough to show the size guard; the API's own body limit is settings-driven


class EchoPayload(_Strict):
    """Logs the message."""

    message: _text(TEXT)


class SleepPayload(_Strict):
    """Sleeps this many seconds (heartbeats and time limits in action)."""

    seconds: _bounded(float, 0, 3600)


class FailPayload(_Strict):
    """Fails every time: retried, then moved to the dead-letter queue by SQS."""

    message: _text(1000) = None


class FlakyPayload(_Strict):
    """Fails this many times, then succeeds."""

    failures: _bounded(int, 0, 10)


class NewsletterFanOutPayload(_Strict):
    """One task per page of subscribers."""

    subject: _text(200)
    page_size: _bounded(int, 1, 1000) = None


class NewsletterBatchingPayload(_Strict):
    """Sends in batches."""

    subject: _text(200)
    batch_size: _bounded(int, 1, 500) = None


class JobRequest(_Strict):
    """POST /api/jobs: a job of one kind, with that kind's payload."""

    kind: str
    payload: dict[str, Any] = Field(default_factory=dict)
    queue: str | None = None
    """A queue of the topology (queues.yml); default: the one the kind's task is routed to."""
    countdown: _bounded(int, 0, expected="a non-negative integer (seconds)") = 0
    """Seconds before the task runs (SQS delays it; beyond 900 s in hops)."""


@dataclass(frozen=True)
class JobKind:
    task_name: str
    payload: type[_Strict]

    def request(self, kind: str) -> type[JobRequest]:
        """The body of a request for this kind: JobRequest with this kind's name and payload."""
        return create_model(
            f"{self.payload.__name__.removesuffix('Payload')}Job",
            __base__=JobRequest,
            __module__=__name__,
            __doc__=f"Kind `{kind}`: {self.payload.__doc__}",
            kind=(Literal[kind], ...),
            payload=(self.payload, Field(default_factory=dict, validate_default=True)),
        )


JOB_KINDS: dict[str, JobKind] = {
    "echo": JobKind("jobs.echo", EchoPayload),
    "sleep": JobKind("jobs.sleep", SleepPayload),
    "fail": JobKind("jobs.fail", FailPayload),
    "flaky": JobKind("jobs.flaky", FlakyPayload),
    "newsletter_fan_out": JobKind("newsletter.fan_out", NewsletterFanOutPayload),
    "newsletter_batching": JobKind("newsletter.batching", NewsletterBatchingPayload),
}
_REQUESTS = {kind: job_kind.request(kind) for kind, job_kind in JOB_KINDS.items()}
_TYPE_NAMES = {"int_type": "an integer", "float_type": "an integer or a number", "string_type": "a string"}


@dataclass(frozen=True)
class ValidJob:
    """A request that passed its kind's model; the payload as sent (a 1 stays 1, not 1.0)."""

    kind: str
    payload: dict[str, Any]
    queue: str | None
    countdown: int


def parse_job_request(body: object) -> ValidJob:
    """Check a jobs API body against its kind's model; JobInputError names the first field to change."""
    if not isinstance(body, dict):
        raise JobInputError("request body must be a JSON object with `kind` and `payload`")
    kind = body.get("kind")
    if not isinstance(kind, str) or kind not in JOB_KINDS:
        raise JobInputError(f"unknown kind {kind!r}; one of {sorted(JOB_KINDS)}", field="kind")
    try:
        request = _REQUESTS[kind].model_validate(body)
    except ValidationError as exc:
        raise _input_error(kind, exc.errors(include_url=False)[0]) from None
    return ValidJob(kind=kind, payload=dict(body.get("payload", {})), queue=request.queue, countdown=request.countdown)


def _input_error(kind: str, error: dict[str, Any]) -> JobInputError:
    place, value = ".".join(map(str, error["loc"])), error["input"]
    if error["type"] == "missing":
        return JobInputError(f"payload for {kind!r} needs field {error['loc'][-1]!r}", field=place)
    if error["type"] in ("model_type", "dict_type"):
        return JobInputError(f"payload for {kind!r} must be a JSON object", field=place)
    if error["type"] == "value_error":
        text = str(error["ctx"]["error"])
        if text.startswith("unknown field(s)"):
            return JobInputError(f"{f'payload for {kind!r} has ' if place else ''}{text}", field=place or None)
        return JobInputError(f"{place} {text}", field=place)
    if error["type"] == "string_too_long":
        return JobInputError(f"{place} is longer than {error['ctx']['max_length']} characters", field=place)
    if error["type"] in _TYPE_NAMES:
        return JobInputError(f"{place} must be {_TYPE_NAMES[error['type']]}, got {value!r}", field=place)
    return JobInputError(f"{place}: {error['msg']}, got {value!r}", field=place)


def job_request_json_schema() -> dict[str, Any]:
    """The JSON Schema of the jobs API's body: one entry per kind, told apart by `kind`."""
    adapter = TypeAdapter(Annotated[functools.reduce(operator.or_, _REQUESTS.values()), Field(discriminator="kind")])
    schema = adapter.json_schema(schema_generator=_ClientSchema)
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", "title": "JobRequest", **schema}


class _ClientSchema(GenerateJsonSchema):
    """No `null` default for an optional field a client leaves out (null itself is refused)."""

    def get_default_value(self, schema: Any) -> Any:
        default = super().get_default_value(schema)
        return NoDefault if default is None else default


if __name__ == "__main__":
    if sys.argv[1:] != ["--schema"]:
        sys.exit("usage: python -m api.jobs.kinds --schema > api/jobs/request.schema.json")
    print(json.dumps(job_request_json_schema(), indent=2))
