"""The publish budget's arithmetic: client timeouts × attempts × calls fit the budget; bad budgets refused."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from api.jobs.publish_budget import CALLS_PER_PUBLISH, publish_budget
from core.env import EnvError


@pytest.mark.parametrize("seconds", [1.0, 2.5, 5.0, 10.0])
def test_timeouts_times_attempts_fit_the_budget(seconds):
    # GIVEN a budget within gunicorn's default 30 s timeout
    # WHEN the client timeouts are derived from it
    budget = publish_budget(seconds, server_timeout=30)
    # THEN every call of a publish, connect plus read, fits: the worst case is the budget itself
    assert budget.worst_case_seconds() <= seconds + 1e-9
    assert budget.worst_case_seconds() == pytest.approx(seconds, rel=0.01)
    assert CALLS_PER_PUBLISH * (budget.connect_timeout + budget.read_timeout) == pytest.approx(seconds, rel=0.01)


def test_client_config_has_no_botocore_retry():
    # GIVEN the default budget
    budget = publish_budget(5.0, server_timeout=30)
    # WHEN it becomes kombu's client-config
    config = budget.client_config()
    # THEN botocore tries once (the relay retries) with the derived timeouts
    assert config == {"connect_timeout": 1.0, "read_timeout": 1.5, "retries": {"total_max_attempts": 1}}


@pytest.mark.parametrize(
    "seconds,server_timeout,expected",
    [
        pytest.param(0.5, 30, "between 1 and 10", id="too-small"),
        pytest.param(11, 30, "between 1 and 10", id="over-a-third-of-gunicorn"),
        pytest.param(5, 12, "between 1 and 4", id="gunicorn-timeout-lowered"),
        pytest.param(-1, 30, "PUBLISH_BUDGET_SECONDS=-1", id="negative"),
    ],
)
def test_a_budget_that_does_not_fit_is_refused(seconds, server_timeout, expected):
    # GIVEN a budget too small, or too close to gunicorn's timeout
    # WHEN it is read THEN start-up is refused, naming the numbers
    with pytest.raises(EnvError, match=expected):
        publish_budget(seconds, server_timeout=server_timeout)


def test_settings_refuse_a_budget_over_the_server_timeout():
    # GIVEN PUBLISH_BUDGET_SECONDS above a third of API_TIMEOUT_SECONDS in the environment
    env = {"PUBLISH_BUDGET_SECONDS": "20", "API_TIMEOUT_SECONDS": "30", "DJANGO_SETTINGS_MODULE": "api.settings.test"}
    # WHEN the settings load (as every process does at start-up)
    result = subprocess.run(
        [sys.executable, "-c", "import django; django.setup()"],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        check=False,
    )
    # THEN the process refuses to start, naming the variable
    assert result.returncode != 0
    assert "PUBLISH_BUDGET_SECONDS=20 must be between 1 and 10" in result.stderr
