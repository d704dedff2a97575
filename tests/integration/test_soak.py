"""`make soak` at a reduced size: random SIGKILLs of workers and pool children lose nothing, repeat nothing."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from devstack.processes import REPO_ROOT

pytestmark = [pytest.mark.integration, pytest.mark.long_running]

LAST_LINE = re.compile(r"^soak: tasks=(\d+) kills=(\d+) executions=(\d+) lost=(\d+) duplicate_effects=(\d+)$")


def test_soak_at_reduced_size_loses_nothing_and_repeats_nothing():
    # GIVEN the soak harness at 150 tasks of 0.3 s (4 slots: 11 s of work at least), killing a worker process
    # every 2 s
    env = {"SOAK_TASKS": "150", "SOAK_TASK_SECONDS": "0.3", "SOAK_KILL_EVERY": "2", "SOAK_TIMEOUT": "240"}

    # WHEN it runs
    result = subprocess.run(
        [sys.executable, "-m", "devstack.soak"],
        cwd=REPO_ROOT,
        env={**os.environ, **env, "DJANGO_SETTINGS_MODULE": ""},
        capture_output=True,
        text=True,
        timeout=300,
    )

    # THEN its last line has the agreed shape, and nothing was lost or done twice despite the kills
    last = result.stdout.strip().splitlines()[-1]
    match = LAST_LINE.match(last)
    assert match, f"unexpected last line {last!r}\n{result.stdout[-2000:]}{result.stderr[-2000:]}"
    tasks, kills, executions, lost, duplicates = map(int, match.groups())
    print(last)
    assert (tasks, lost, duplicates) == (150, 0, 0)
    assert kills >= 10
    assert executions >= tasks
    assert result.returncode == 0
