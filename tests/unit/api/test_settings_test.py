"""api/settings/test.py under pytest-xdist: each worker picks its own emulator port and SQLite file."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from devstack.processes import REPO_ROOT

CHOSEN = ("SQS_ENDPOINT_URL", "CLOUDWATCH_ENDPOINT_URL", "SQLITE_PATH")
PROBE = f"import json, os; import api.settings.test; print(json.dumps({{n: os.environ[n] for n in {CHOSEN!r}}}))"


def _settings_env(**env: str) -> dict[str, str]:
    """The environment after api.settings.test ran in a fresh process with `env`."""
    base = {k: v for k, v in os.environ.items() if k not in (*CHOSEN, "TEST_SETTINGS_CHOSEN_BY", "PYTEST_XDIST_WORKER")}
    result = subprocess.run(
        [sys.executable, "-c", PROBE], cwd=REPO_ROOT, env={**base, **env}, capture_output=True, text=True, check=True
    )
    return json.loads(result.stdout)


def test_an_xdist_worker_does_not_inherit_the_controllers_port_and_sqlite_file():
    # GIVEN what the controller (no PYTEST_XDIST_WORKER) chose and left in the environment
    controller = _settings_env()
    inherited = {**controller, "TEST_SETTINGS_CHOSEN_BY": "main"}

    # WHEN two xdist workers start with that environment
    gw0 = _settings_env(**inherited, PYTEST_XDIST_WORKER="gw0")
    gw1 = _settings_env(**inherited, PYTEST_XDIST_WORKER="gw1")

    # THEN each chose its own emulator port and SQLite file
    for name in CHOSEN:
        assert len({controller[name], gw0[name], gw1[name]}) == 3, name


def test_a_subprocess_of_a_worker_keeps_that_workers_choices():
    # GIVEN the environment an xdist worker set up (a celery worker it starts inherits it)
    worker = _settings_env(PYTEST_XDIST_WORKER="gw0")
    # WHEN the settings load again in its child  THEN they are the same port and file
    child = _settings_env(**worker, TEST_SETTINGS_CHOSEN_BY="gw0", PYTEST_XDIST_WORKER="gw0")
    assert child == worker


def test_an_endpoint_given_from_outside_is_kept():
    # GIVEN SQS_ENDPOINT_URL set by whoever runs the tests  WHEN the settings load  THEN it is used as given
    assert _settings_env(SQS_ENDPOINT_URL="http://127.0.0.1:9")["SQS_ENDPOINT_URL"] == "http://127.0.0.1:9"
