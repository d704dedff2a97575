"""var/local-stack.json: a running stack's endpoints fill in what a shell does not set; a dead stack's never."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from devstack import stack_file


@pytest.fixture
def running_stack(tmp_path):
    stack_file.write(
        tmp_path,
        sqs_endpoint="http://127.0.0.1:19999",
        api_url="http://127.0.0.1:18888",
        database_url=None,
        sqlite_path=tmp_path / "db.sqlite3",
    )
    return tmp_path


def test_a_running_stacks_endpoint_and_database_fill_in_an_empty_shell(running_stack):
    # GIVEN a shell that sets nothing
    environ: dict[str, str] = {}

    # WHEN the local defaults are applied
    stack_file.apply(running_stack, environ)

    # THEN the commands talk to that stack and its database
    assert environ == {
        "SQS_ENDPOINT_URL": "http://127.0.0.1:19999",
        "CLOUDWATCH_ENDPOINT_URL": "http://127.0.0.1:19999",
        "SQLITE_PATH": str(running_stack / "db.sqlite3"),
    }


def test_what_the_shell_exports_wins_group_by_group(running_stack):
    # GIVEN a shell that exports a port and a database of its own
    environ = {"LOCAL_SQS_PORT": "9400", "DATABASE_URL": "postgres://postgres@127.0.0.1:5432/other"}

    # WHEN the local defaults are applied THEN neither the endpoint nor the database is taken from the file
    stack_file.apply(running_stack, environ)
    assert environ == {"LOCAL_SQS_PORT": "9400", "DATABASE_URL": "postgres://postgres@127.0.0.1:5432/other"}


def test_a_stack_whose_process_is_gone_is_ignored(tmp_path):
    # GIVEN the file of a stack killed with -9 (its process no longer exists)
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    record = {"pid": int(gone.stdout), "env": {"SQS_ENDPOINT_URL": "http://127.0.0.1:19999"}}
    (tmp_path / stack_file.STACK_FILE_NAME).write_text(json.dumps(record))
    environ: dict[str, str] = {}

    # WHEN the local defaults are applied THEN nothing is taken from it
    assert stack_file.apply(tmp_path, environ) is None
    assert environ == {}


def test_a_stack_removes_its_own_file_only(running_stack):
    # GIVEN the file of another, newer stack in the same var/
    path = running_stack / stack_file.STACK_FILE_NAME
    path.write_text(json.dumps({**json.loads(path.read_text()), "pid": 1}))

    # WHEN this stack stops THEN the other's file stays
    stack_file.remove(running_stack)
    assert path.exists()

    # AND its own is removed
    stack_file.write(
        running_stack, sqs_endpoint="http://x", api_url="http://y", database_url="postgres://z", sqlite_path=path
    )
    stack_file.remove(running_stack)
    assert not path.exists()
