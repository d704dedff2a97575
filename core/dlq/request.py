"""The replay request: validated so a bad payload gets a clear error and moves nothing."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictFloat, StrictInt, StrictStr, ValidationError

from core.topology import Topology

MAX_MESSAGES_LIMIT = 1000
MAX_RATE_PER_SECOND = 100


class ReplayRequestError(ValueError):
    """The replay payload is invalid; nothing was received or moved."""


TaskName = Annotated[StrictStr, Field(min_length=1, max_length=200)]
TaskId = Annotated[StrictStr, Field(min_length=1, max_length=64)]


class ReplayRequest(BaseModel):
    """What to replay. Dry run unless `dry_run` is false; the queue is a topology key, never a URL."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    queue: Annotated[StrictStr, Field(min_length=1, max_length=80)]
    max_messages: Annotated[StrictInt, Field(ge=1, le=MAX_MESSAGES_LIMIT)] = 100
    dry_run: StrictBool = True
    # An empty list would match nothing: leave the filter out instead.
    task_names: Annotated[list[TaskName], Field(min_length=1, max_length=50)] | None = None
    task_ids: Annotated[list[TaskId], Field(min_length=1, max_length=1000)] | None = None
    min_age_seconds: Annotated[StrictInt, Field(ge=0)] | None = None
    max_age_seconds: Annotated[StrictInt, Field(ge=0)] | None = None
    reset_retries: StrictBool = False
    rate_per_second: Annotated[StrictInt | StrictFloat, Field(gt=0, le=MAX_RATE_PER_SECOND)] = 10


def parse_replay_request(event: object, topology: Topology) -> ReplayRequest:
    """Validate an invoke payload against the model and the topology."""
    if not isinstance(event, dict):
        raise ReplayRequestError(f"the payload must be a JSON object, got {type(event).__name__}")
    try:
        request = ReplayRequest.model_validate(event)
    except ValidationError as exc:
        details = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or 'payload'}: {err['msg']}" for err in exc.errors()
        )
        raise ReplayRequestError(f"invalid replay request: {details}") from None
    if request.queue not in topology.queues:
        raise ReplayRequestError(
            f"invalid replay request: queue {request.queue!r} is not in the topology; one of {sorted(topology.queues)}"
        )
    if (
        request.min_age_seconds is not None
        and request.max_age_seconds is not None
        and request.min_age_seconds > request.max_age_seconds
    ):
        raise ReplayRequestError(
            f"invalid replay request: min_age_seconds ({request.min_age_seconds}) is above "
            f"max_age_seconds ({request.max_age_seconds})"
        )
    return request
