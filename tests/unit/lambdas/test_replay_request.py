"""Unit tests of the replay request (core/dlq/request.py): a bad payload is refused with a clear
message, and through the Lambda handler it raises before anything is received or moved."""

from __future__ import annotations

import math

import pytest
from django.conf import settings
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from core.dlq.request import (
    MAX_MESSAGES_LIMIT,
    ReplayRequest,
    ReplayRequestError,
    parse_replay_request,
)
from tests.unit.lambdas.conftest import FakeLambdaContext

TOPOLOGY = settings.QUEUE_TOPOLOGY
KNOWN_KEYS = set(ReplayRequest.model_fields)


def _parse(payload):
    return parse_replay_request(payload, TOPOLOGY)


# --- examples ----------------------------------------------------------------------------------------


def test_minimal_payload_gets_safe_defaults():
    # GIVEN a payload naming only a topology queue
    # WHEN it is parsed
    request = _parse({"queue": "default"})
    # THEN it is a dry run of at most 100 messages, no filters, retries kept, 10 messages/s
    assert request.queue == "default"
    assert request.dry_run is True
    assert request.max_messages == 100
    assert request.task_names is None and request.task_ids is None
    assert request.min_age_seconds is None and request.max_age_seconds is None
    assert request.reset_retries is False
    assert request.rate_per_second == 10


def test_full_valid_payload_is_kept_as_given():
    # GIVEN a payload using every field within its limits
    payload = {
        "queue": "low_priority",
        "max_messages": MAX_MESSAGES_LIMIT,
        "dry_run": False,
        "task_names": ["newsletter.send_one"],
        "task_ids": ["abc"],
        "min_age_seconds": 0,
        "max_age_seconds": 0,
        "reset_retries": True,
        "rate_per_second": 0.5,
    }
    # WHEN it is parsed
    request = _parse(payload)
    # THEN every value is the one given (min_age == max_age is allowed)
    assert request.model_dump() == payload


REFUSED = [
    pytest.param(["default"], "must be a JSON object, got list", id="not-a-dict-list"),
    pytest.param("default", "must be a JSON object, got str", id="not-a-dict-str"),
    pytest.param(None, "must be a JSON object, got NoneType", id="not-a-dict-none"),
    pytest.param({"queue": "default", "dryrun": False}, "dryrun: Extra inputs are not permitted", id="unknown-key"),
    pytest.param({}, "queue: Field required", id="no-queue"),
    pytest.param({"queue": "urgent"}, "queue 'urgent' is not in the topology", id="queue-not-in-topology"),
    pytest.param({"queue": "t-default-dlq"}, "is not in the topology", id="queue-as-sqs-name"),
    pytest.param(
        {"queue": "https://sqs.us-east-1.amazonaws.com/123456789012/t-default"},
        "is not in the topology",
        id="queue-as-url",
    ),
    pytest.param(
        {"queue": "arn:aws:sqs:us-east-1:123456789012:t-default-dlq"}, "is not in the topology", id="queue-as-arn"
    ),
    pytest.param({"queue": "default", "max_messages": 0}, "max_messages: Input should be greater", id="max-0"),
    pytest.param({"queue": "default", "max_messages": 1001}, "max_messages: Input should be less", id="max-1001"),
    pytest.param(
        {"queue": "default", "max_messages": True}, "max_messages: Input should be a valid int", id="max-bool"
    ),
    pytest.param({"queue": "default", "dry_run": "false"}, "dry_run: Input should be a valid boolean", id="dry-str"),
    pytest.param({"queue": "default", "dry_run": 0}, "dry_run: Input should be a valid boolean", id="dry-int"),
    pytest.param({"queue": "default", "rate_per_second": 0}, "rate_per_second: Input should be greater", id="rate-0"),
    pytest.param({"queue": "default", "rate_per_second": math.nan}, "rate_per_second", id="rate-nan"),
    pytest.param({"queue": "default", "rate_per_second": math.inf}, "rate_per_second", id="rate-inf"),
    pytest.param(
        {"queue": "default", "rate_per_second": 1000}, "rate_per_second: Input should be less", id="rate-1000"
    ),
    pytest.param({"queue": "default", "rate_per_second": "5"}, "rate_per_second", id="rate-str"),
    pytest.param(
        {"queue": "default", "min_age_seconds": 60, "max_age_seconds": 59},
        "min_age_seconds (60) is above max_age_seconds (59)",
        id="min-above-max",
    ),
    pytest.param({"queue": "default", "min_age_seconds": -1}, "min_age_seconds", id="min-age-negative"),
    pytest.param(
        {"queue": "default", "task_names": "jobs.fail"}, "task_names: Input should be a valid list", id="names"
    ),
    pytest.param({"queue": "default", "task_names": [""]}, "task_names.0", id="names-empty-string"),
    pytest.param({"queue": "default", "task_ids": [1]}, "task_ids.0: Input should be a valid string", id="ids-int"),
]


@pytest.mark.parametrize(("payload", "message"), REFUSED)
def test_bad_payload_is_refused_with_a_clear_message(payload, message):
    # GIVEN a payload that breaks one rule
    # WHEN it is parsed
    with pytest.raises(ReplayRequestError) as caught:
        _parse(payload)
    # THEN the error names the problem
    assert message in str(caught.value)


def test_refusal_of_an_unknown_queue_lists_the_topology_queues():
    # GIVEN a queue key that is not in the topology
    # WHEN it is parsed
    with pytest.raises(ReplayRequestError) as caught:
        _parse({"queue": "nope"})
    # THEN the error lists the keys that would have been accepted
    assert "['default', 'high_priority', 'low_priority']" in str(caught.value)


def test_refusal_is_a_value_error_without_pydantic_chained():
    # GIVEN a payload pydantic refuses
    # WHEN it is parsed
    with pytest.raises(ReplayRequestError) as caught:
        _parse({"queue": "default", "max_messages": "ten"})
    # THEN it is a ValueError whose pydantic cause is suppressed (the Lambda's error stays one line)
    assert isinstance(caught.value, ValueError)
    assert caught.value.__suppress_context__ is True
    assert caught.value.__cause__ is None


# --- property-based: generated bad payloads ----------------------------------------------------------

_json_scalars = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20)
json_values = st.recursive(
    _json_scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=6,
)


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v) -> bool:
    return _is_int(v) or isinstance(v, float)


def _is_str_list(v) -> bool:
    return isinstance(v, list) and all(isinstance(x, str) for x in v)


# A value of the wrong JSON type for each known key (right-typed but out-of-range values are not here).
WRONG_TYPE = {
    "queue": json_values.filter(lambda v: not isinstance(v, str)),
    "max_messages": json_values.filter(lambda v: not _is_int(v)),
    "dry_run": json_values.filter(lambda v: not isinstance(v, bool)),
    "reset_retries": json_values.filter(lambda v: not isinstance(v, bool)),
    "task_names": json_values.filter(lambda v: v is not None and not _is_str_list(v)),
    "task_ids": json_values.filter(lambda v: v is not None and not _is_str_list(v)),
    "min_age_seconds": json_values.filter(lambda v: v is not None and not _is_int(v)),
    "max_age_seconds": json_values.filter(lambda v: v is not None and not _is_int(v)),
    "rate_per_second": json_values.filter(lambda v: not _is_number(v)),
}


def test_every_known_key_has_a_wrong_type_strategy():
    # GIVEN the request model's fields
    # WHEN compared with the keys the property tests mistype
    # THEN none is left untested
    assert set(WRONG_TYPE) == KNOWN_KEYS


_non_dicts = json_values.filter(lambda v: not isinstance(v, dict))
_extra_key = st.builds(
    lambda key, value: {"queue": "default", key: value},
    st.text(max_size=15).filter(lambda k: k not in KNOWN_KEYS),
    json_values,
)
_wrong_type = st.sampled_from(sorted(WRONG_TYPE)).flatmap(
    lambda key: WRONG_TYPE[key].map(lambda value: {"queue": "default", key: value})
)
_bad_queue = st.text(max_size=90).filter(lambda q: q not in TOPOLOGY.queues).map(lambda q: {"queue": q})
bad_payloads = st.one_of(_non_dicts, _extra_key, _wrong_type, _bad_queue)


@hsettings(max_examples=200, deadline=None)
@given(payload=bad_payloads)
def test_generated_bad_payloads_are_refused(payload):
    # GIVEN a generated bad payload (not an object, an extra key, a mistyped field, or a queue not in the topology)
    # WHEN it is parsed
    # THEN it is refused with ReplayRequestError, never accepted nor another exception
    with pytest.raises(ReplayRequestError, match="payload must be a JSON object|invalid replay request"):
        _parse(payload)


@hsettings(max_examples=100, deadline=None)
@given(queue=st.sampled_from(sorted(TOPOLOGY.queues)), max_messages=st.integers(1, MAX_MESSAGES_LIMIT))
def test_generated_good_payloads_are_accepted(queue, max_messages):
    # GIVEN a topology queue and a max_messages within 1..1000
    # WHEN parsed
    request = _parse({"queue": queue, "max_messages": max_messages})
    # THEN it is accepted as given, still a dry run
    assert (request.queue, request.max_messages, request.dry_run) == (queue, max_messages, True)


# --- through the Lambda handler: refused, nothing moved ----------------------------------------------


@hsettings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(payload=bad_payloads)
def test_handler_refuses_generated_bad_payloads_and_moves_nothing(sqs_world, replay_lambda, payload):
    # GIVEN a DLQ holding 3 real task messages (made once for all examples)
    if sqs_world.dlq_counts() == (0, 0) and sqs_world.source_counts() == (0, 0):
        sqs_world.dead_letter_many("jobs.fail", 3)
    assert sqs_world.dlq_counts() == (3, 0)
    # WHEN the Lambda is invoked with a generated bad payload
    with pytest.raises(ReplayRequestError):
        replay_lambda(payload, FakeLambdaContext())
    # THEN the DLQ is untouched: same visible count, nothing in flight, and the source queue still empty
    assert sqs_world.dlq_counts() == (3, 0)
    assert sqs_world.source_counts() == (0, 0)


@pytest.mark.parametrize(
    "payload",
    [
        pytest.param({"queue": "default", "dry_run": "false"}, id="dry-run-string"),
        pytest.param({"queue": "t-default-dlq", "dry_run": False}, id="sqs-name"),
        pytest.param({"queue": "default", "dry_run": False, "max_messages": 0}, id="max-0"),
    ],
)
def test_handler_refuses_near_miss_payloads_and_moves_nothing(sqs_world, replay_lambda, capsys, payload):
    # GIVEN a DLQ holding 2 real messages
    sqs_world.dead_letter_many("jobs.fail", 2)
    # WHEN the Lambda is invoked with a payload that is almost a real run
    with pytest.raises(ReplayRequestError):
        replay_lambda(payload, FakeLambdaContext())
    # THEN nothing moved, and a ReplayRefused metric was emitted
    assert sqs_world.dlq_counts() == (2, 0)
    assert sqs_world.source_counts() == (0, 0)
    assert '"ReplayRefused"' in capsys.readouterr().out
