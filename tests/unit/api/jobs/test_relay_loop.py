"""The relay's loop while the database or SQS is down: a growing, capped interval and one log line each way."""

from __future__ import annotations

import logging

import pytest
from django.core.management import CommandError, call_command
from django.db import OperationalError

from api.jobs.outbox import Sweep
from api.jobs.outbox_config import RelayConfig
from api.jobs.relay_loop import RelayLoop, liveness_problem

CONFIG = RelayConfig(sweep_seconds=1, sweep_max_seconds=8)


class ScriptedSweep:
    """Plays a list of outcomes: a Sweep, or an exception to raise."""

    def __init__(self, outcomes):
        self.outcomes = list(outcomes)

    def __call__(self) -> Sweep:
        outcome = self.outcomes.pop(0)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome


def test_database_down_backs_off_and_logs_once_each_way(caplog, db):
    # GIVEN a relay whose database fails for 6 sweeps, then answers
    down = [OperationalError("could not connect to server") for _ in range(6)]
    loop = RelayLoop(sweep=ScriptedSweep([*down, Sweep(due=2, claimed=2, published=2)]), config=CONFIG)
    # WHEN it sweeps 7 times
    with caplog.at_level(logging.DEBUG, logger="api.jobs.relay_loop"):
        delays = [loop.tick() for _ in range(7)]
    # THEN the interval doubles up to the cap, then returns to normal
    assert delays == [2, 4, 8, 8, 8, 8, 1]
    # AND one warning when it started failing, one line when it recovered: no flood
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert [r.getMessage() for r in warnings] == [
        "outbox relay: the database is failing (could not connect to server); "
        "sweeps back off up to 8 s until it answers"
    ]
    recovered = [r.getMessage() for r in caplog.records if "answers again" in r.getMessage()]
    assert len(recovered) == 1
    assert "the database answers again" in recovered[0]
    assert "published 2" in recovered[0]


def test_sqs_down_backs_off_and_logs_once_each_way(caplog, db):
    # GIVEN sweeps that stop at a broker failure three times, then publish
    failing = Sweep(due=50, claimed=1, broker_error="ConnectTimeoutError: connect timeout")
    loop = RelayLoop(
        sweep=ScriptedSweep([failing, failing, failing, Sweep(due=50, claimed=50, published=50)]), config=CONFIG
    )
    # WHEN it sweeps 4 times
    with caplog.at_level(logging.INFO, logger="api.jobs.relay_loop"):
        delays = [loop.tick() for _ in range(4)]
    # THEN it backed off, logged SQS failing once and recovering once, and counted what it published
    assert delays == [2, 4, 8, 1]
    messages = [r.getMessage() for r in caplog.records]
    assert sum("SQS is failing" in m for m in messages) == 1
    assert sum("SQS answers again" in m for m in messages) == 1
    assert loop.published == 50


def test_an_idle_relay_keeps_its_interval_and_logs_nothing(caplog, db):
    # GIVEN nothing due
    loop = RelayLoop(sweep=ScriptedSweep([Sweep()] * 5), config=CONFIG)
    # WHEN it sweeps 5 times
    with caplog.at_level(logging.INFO, logger="api.jobs.relay_loop"):
        delays = [loop.tick() for _ in range(5)]
    # THEN it sweeps every second and says nothing
    assert delays == [1] * 5
    assert caplog.records == []


def test_every_sweep_touches_the_heartbeat_even_a_failing_one(tmp_path, db):
    # GIVEN a relay whose database fails, with a liveness file
    liveness = tmp_path / "relay-liveness"
    loop = RelayLoop(sweep=ScriptedSweep([OperationalError("down")]), config=CONFIG, liveness=liveness)
    # WHEN it sweeps once
    loop.tick()
    # THEN the liveness is fresh: a relay waiting out an outage is alive (a new task would not help)
    assert liveness_problem(liveness, CONFIG) is None


def test_the_health_check_fails_on_a_stale_or_missing_heartbeat(tmp_path):
    # GIVEN a liveness written at t=1000, and the relay's longest interval 8 s (limit 2 x 8 + 60 = 76 s)
    liveness = tmp_path / "relay-liveness"
    # WHEN there is none THEN it says so
    assert "no outbox relay liveness file" in liveness_problem(liveness, CONFIG, now=1000)
    liveness.write_text("1000.0\n")
    # AND within the limit it is healthy, past it not
    assert liveness_problem(liveness, CONFIG, now=1070) is None
    assert liveness_problem(liveness, CONFIG, now=1080) == "the outbox relay last swept 80 s ago (more than 76 s)"


def test_the_check_command_exits_1_without_a_heartbeat(tmp_path, settings):
    # GIVEN no liveness file
    settings.OUTBOX_RELAY_LIVENESS_FILE = str(tmp_path / "missing")
    # WHEN `manage.py outbox_relay --check` runs THEN it fails with the reason
    with pytest.raises(CommandError, match="no outbox relay liveness file") as failed:
        call_command("outbox_relay", "--check")
    assert failed.value.returncode == 1
