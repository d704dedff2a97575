"""Unit tests of api/jobs/kinds.py: strict pydantic models of each kind's payload and of the jobs API's body,
and api/jobs/request.schema.json, generated from them, committed and in sync."""

from __future__ import annotations

import json
import subprocess
import sys

import jsonschema
import pytest

from api.jobs.kinds import JOB_KINDS, SCHEMA_PATH, JobInputError, job_request_json_schema, parse_job_request
from core.topology import REPO_ROOT

REGENERATE = "python -m api.jobs.kinds --schema > api/jobs/request.schema.json"


@pytest.fixture(scope="module")
def schema() -> dict:
    return json.loads(SCHEMA_PATH.read_text())


def test_committed_schema_is_the_generated_one(schema):
    # GIVEN the committed schema WHEN the models generate theirs THEN they are the same (else: how to regenerate)
    assert schema == job_request_json_schema(), (
        f"{SCHEMA_PATH.name} is out of date with api/jobs/kinds.py: run `{REGENERATE}`"
    )


def test_schema_command_prints_the_committed_file_without_django():
    # GIVEN the regenerate command, no Django settings in its environment
    # WHEN it runs
    result = subprocess.run(
        [sys.executable, "-m", "api.jobs.kinds", "--schema"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": "/usr/bin:/bin"},
        check=False,
    )
    # THEN it prints exactly the committed file
    assert result.returncode == 0, result.stderr
    assert result.stdout == SCHEMA_PATH.read_text()


def test_the_schema_describes_every_kind(schema):
    # GIVEN the schema WHEN its kinds are read THEN there is one entry per kind, each with its payload
    kinds = {
        entry["properties"]["kind"]["const"]
        for entry in schema["$defs"].values()
        if "kind" in entry.get("properties", {})
    }
    assert kinds == set(JOB_KINDS)


@pytest.mark.parametrize(
    "body",
    [
        {"kind": "echo", "payload": {"message": "hello"}},
        {"kind": "sleep", "payload": {"seconds": 1.5}, "queue": "high_priority", "countdown": 5},
        {"kind": "fail"},
        {"kind": "newsletter_batching", "payload": {"subject": "Hello", "batch_size": 50}},
    ],
)
def test_a_valid_body_is_valid_for_the_schema_and_the_api(schema, body):
    # GIVEN a valid body (the README's curl example among them)
    # WHEN a client checks it against the schema, and the API parses it THEN both accept it
    jsonschema.Draft202012Validator(schema).validate(body)
    assert parse_job_request(body).kind == body["kind"]


@pytest.mark.parametrize(
    ("body", "field", "message"),
    [
        (
            {"kind": "sleep", "payload": {"seconds": True}},
            "payload.seconds",
            "payload.seconds must be an integer or a number, got True",
        ),
        (
            {"kind": "sleep", "payload": {"seconds": "3"}},
            "payload.seconds",
            "payload.seconds must be an integer or a number, got '3'",
        ),
        (
            {"kind": "flaky", "payload": {"failures": "3"}},
            "payload.failures",
            "payload.failures must be an integer, got '3'",
        ),
        (
            {"kind": "flaky", "payload": {"failures": 11}},
            "payload.failures",
            "payload.failures must be between 0 and 10, got 11",
        ),
        ({"kind": "echo", "payload": {"message": 5}}, "payload.message", "payload.message must be a string, got 5"),
        ({"kind": "echo", "payload": {}}, "payload.message", "payload for 'echo' needs field 'message'"),
        (
            {"kind": "echo", "payload": {"message": "x", "loud": True}},
            "payload",
            "unknown field(s) ['loud']; allowed: ['message']",
        ),
        (
            {"kind": "echo", "payload": {"message": "x"}, "countdown": True},
            "countdown",
            "countdown must be a non-negative integer (seconds), got True",
        ),
        ({"kind": "echo", "payload": {"message": "x"}, "queue": 1}, "queue", "queue must be a string, got 1"),
        ({"kind": "echo", "payload": {"message": "x"}, "priority": 1}, None, "unknown field(s) ['priority']"),
        ({"kind": "nope"}, "kind", "unknown kind 'nope'; one of ["),
    ],
)
def test_an_invalid_body_is_refused_by_the_api_and_the_schema(schema, body, field, message):
    # GIVEN a body with one wrong field (a bool or a string for a number, out of range, missing, unknown)
    # WHEN the API parses it
    with pytest.raises(JobInputError) as excinfo:
        parse_job_request(body)
    # THEN the error names the field and the value, and the schema refuses it too
    assert message in str(excinfo.value)
    assert excinfo.value.field == field
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.Draft202012Validator(schema).validate(body)


def test_the_payload_is_kept_as_sent():
    # GIVEN a sleep of 1 second, an int where the model takes any number
    # WHEN parsed THEN the payload stored is the one sent (1, not 1.0)
    assert parse_job_request({"kind": "sleep", "payload": {"seconds": 1}}).payload == {"seconds": 1}
