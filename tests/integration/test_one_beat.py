"""Two beats at once: one schedules, the other waits; when the first dies the second takes over."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import pytest
from django_celery_beat.models import IntervalSchedule, PeriodicTask

from devstack import processes
from devstack.processes import REPO_ROOT

pytestmark = pytest.mark.integration

LEASE = 4  # seconds; production default 15
SENT = "Sending due task"


def _beat(start_process, tmp_path, name: str):
    env = {
        "PATH": processes.venv_path(),
        "BEAT_LEASE_SECONDS": str(LEASE),
        "BEAT_LIVENESS_FILE": str(tmp_path / f"{name}.liveness"),
    }
    handle = start_process(name, [str(REPO_ROOT / "bin" / "start-beat")], env=env)
    handle.extra["env"] = env
    return handle


def _healthy(beat) -> bool:
    result = subprocess.run(
        [sys.executable, "-m", "workers.healthcheck", "beat"], env=beat.extra["env"], capture_output=True, timeout=30
    )
    return result.returncode == 0


def test_two_beats_schedule_once_and_the_second_takes_over(transactional_db, queues, start_process, tmp_path):
    # GIVEN a periodic task every second
    every = IntervalSchedule.objects.create(every=1, period=IntervalSchedule.SECONDS)
    PeriodicTask.objects.create(name="tick", task="jobs.record_effect", interval=every, kwargs='{"key": "beat"}')

    # WHEN two beats run at once
    first = _beat(start_process, tmp_path, "beat-a")
    processes.wait_for(lambda: SENT in first.log(), timeout=60, interval=0.3, what="the first beat to send")
    second = _beat(start_process, tmp_path, "beat-b")
    processes.wait_for(lambda: _healthy(second), timeout=60, interval=0.5, what="the second beat to tick")
    time.sleep(3 * LEASE)

    # THEN only the lease holder sends; the other is alive and on standby
    assert first.log().count(SENT) >= 3
    assert SENT not in second.log()
    assert _healthy(first) and _healthy(second)

    # WHEN the holder is SIGKILLed
    processes.signal_group(first.proc, signal.SIGKILL)
    killed_at = time.monotonic()

    # THEN the standby takes over within about one lease period, and sends
    processes.wait_for(lambda: SENT in second.log(), timeout=LEASE + 10, interval=0.2, what="the takeover")
    print(f"takeover {time.monotonic() - killed_at:.1f} s after SIGKILL (lease {LEASE} s)")
    assert "acquired the lease" in second.log()
