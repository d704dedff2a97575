"""The relay's backoff: a Job's retries double up to a cap; the sweep's interval grows while failing."""

from __future__ import annotations

import pytest

from api.jobs.outbox_config import RelayConfig
from core.env import EnvError


def test_job_retry_delay_doubles_up_to_the_cap():
    # GIVEN retries from 2 s, capped at 30 s
    config = RelayConfig(retry_seconds=2, retry_max_seconds=30)
    # WHEN the delays after attempts 1..6 are computed
    delays = [config.retry_delay(n) for n in range(1, 7)]
    # THEN they double, then stay at the cap
    assert delays == [2, 4, 8, 16, 30, 30]


def test_sweep_interval_grows_while_failing_and_resets_when_it_works():
    # GIVEN a 2 s sweep capped at 20 s while failing
    config = RelayConfig(sweep_seconds=2, sweep_max_seconds=20)
    # WHEN sweeps fail five times in a row, then one works
    delay, seen = config.sweep_seconds, []
    for _ in range(5):
        delay = config.next_sweep_delay(delay, failing=True)
        seen.append(delay)
    # THEN the interval doubles to the cap, and is back to normal after the first good sweep
    assert seen == [4, 8, 16, 20, 20]
    assert config.next_sweep_delay(delay, failing=False) == 2


@pytest.mark.parametrize(
    "kwargs,expected",
    [
        ({"sweep_seconds": 0}, "OUTBOX_SWEEP_SECONDS=0 must be above 0"),
        ({"sweep_seconds": 10, "sweep_max_seconds": 5}, "OUTBOX_SWEEP_MAX_SECONDS=5 is below OUTBOX_SWEEP_SECONDS=10"),
        ({"retry_max_seconds": 1}, "OUTBOX_RETRY_MAX_SECONDS=1 is below OUTBOX_RETRY_SECONDS=2"),
        ({"batch": 0}, "OUTBOX_BATCH=0 must be above 0"),
    ],
)
def test_inconsistent_numbers_are_refused(kwargs, expected):
    # GIVEN numbers that contradict each other WHEN read THEN refused, naming them
    with pytest.raises(EnvError, match=expected):
        RelayConfig(**kwargs)
