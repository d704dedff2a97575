"""The job kinds a client may ask for: the task each publishes and how its payload is validated."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


class JobInputError(ValueError):
    """The request is invalid; the message says what to change (HTTP 400)."""


@dataclass(frozen=True)
class Field:
    kind: type | tuple[type, ...]
    required: bool = True
    low: float | None = None
    high: float | None = None
    max_length: int | None = None


@dataclass(frozen=True)
class JobKind:
    task_name: str
    fields: dict[str, Field]

    def clean(self, kind: str, payload: Any) -> dict[str, Any]:
        if not isinstance(payload, dict):
            raise JobInputError(f"payload for {kind!r} must be a JSON object")
        unknown = sorted(set(payload) - set(self.fields))
        if unknown:
            raise JobInputError(f"payload for {kind!r} has unknown field(s) {unknown}; allowed: {sorted(self.fields)}")
        for name, spec in self.fields.items():
            if name not in payload:
                if spec.required:
                    raise JobInputError(f"payload for {kind!r} needs field {name!r}")
                continue
            value = payload[name]
            if isinstance(value, bool) or not isinstance(value, spec.kind):
                raise JobInputError(f"payload.{name} must be {_type_name(spec.kind)}, got {value!r}")
            if spec.low is not None and value < spec.low or spec.high is not None and value > spec.high:
                raise JobInputError(f"payload.{name} must be between {spec.low} and {spec.high}, got {value}")
            if spec.max_length is not None and len(value) > spec.max_length:
                raise JobInputError(f"payload.{name} is longer than {spec.max_length} characters")
        return dict(payload)


def _type_name(kind: type | tuple[type, ...]) -> str:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    return " or ".join({"str": "a string", "int": "an integer", "float": "a number"}[k.__name__] for k in kinds)


TEXT = 200_000  # large enough to show the size guard; the API's own body limit is settings-driven
JOB_KINDS: dict[str, JobKind] = {
    "echo": JobKind("jobs.echo", {"message": Field(str, max_length=TEXT)}),
    "sleep": JobKind("jobs.sleep", {"seconds": Field((int, float), low=0, high=3600)}),
    "fail": JobKind("jobs.fail", {"message": Field(str, required=False, max_length=1000)}),
    "flaky": JobKind("jobs.flaky", {"failures": Field(int, low=0, high=10)}),
    "newsletter_fan_out": JobKind(
        "newsletter.fan_out", {"subject": Field(str, max_length=200), "page_size": Field(int, False, 1, 1000)}
    ),
    "newsletter_batching": JobKind(
        "newsletter.batching", {"subject": Field(str, max_length=200), "batch_size": Field(int, False, 1, 500)}
    ),
}
