"""Unit tests of queues.schema.json: generated from core/topology.py's models, committed, and in sync."""

from __future__ import annotations

import copy
import json
import subprocess
import sys

import jsonschema
import pytest
import yaml

from core.topology import DEFAULT_TOPOLOGY_PATH, REPO_ROOT, SCHEMA_PATH, topology_json_schema

REGENERATE = "python -m core.topology --schema > queues.schema.json"


@pytest.fixture(scope="module")
def schema() -> dict:
    return json.loads(SCHEMA_PATH.read_text())


def test_committed_schema_is_the_generated_one(schema):
    # GIVEN the committed queues.schema.json
    # WHEN the models generate theirs
    generated = topology_json_schema()
    # THEN they are the same; if not, the message says how to regenerate it
    assert schema == generated, f"queues.schema.json is out of date with core/topology.py: run `{REGENERATE}`"


def test_schema_command_prints_the_committed_file_without_django():
    # GIVEN the regenerate command (no Django settings in its environment)
    # WHEN it runs
    result = subprocess.run(
        [sys.executable, "-m", "core.topology", "--schema"],
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


def test_queues_yml_names_the_schema_for_editors():
    # GIVEN queues.yml
    # WHEN its first line is read THEN it points the YAML language server at the committed schema
    assert DEFAULT_TOPOLOGY_PATH.read_text().splitlines()[0] == "# yaml-language-server: $schema=./queues.schema.json"


def test_real_queues_yml_is_valid_against_the_schema(schema):
    # GIVEN the real file WHEN an editor's validator checks it THEN it finds nothing
    jsonschema.Draft7Validator(schema).validate(yaml.safe_load(DEFAULT_TOPOLOGY_PATH.read_text()))


@pytest.mark.parametrize(
    ("path", "value"),
    [
        (("queues", "default", "max_receive_count"), True),
        (("queues", "default", "time_limit"), "300"),
        (("queues", "default", "visiblity_timeout"), 400),
        (("queues", "default", "max_message_bytes"), 1_048_577),
        (("worker_groups", "main", "prefetch_multiplier"), 11),
        (("profiles", "local", "queues", "default", "name"), "renamed"),
        (("retry", "jitter"), "yes"),
        (("version",), 2),
    ],
)
def test_the_schema_refuses_what_the_loader_refuses(schema, path, value):
    # GIVEN the real file with one field broken (a bool or string for an int, a misspelt key, out of range,
    # a name in a profile, a wrong version)
    raw = copy.deepcopy(yaml.safe_load(DEFAULT_TOPOLOGY_PATH.read_text()))
    target = raw
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    # WHEN an editor's validator checks it THEN it is refused there too, before anything runs
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.Draft7Validator(schema).validate(raw)
