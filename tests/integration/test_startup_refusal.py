"""A worker whose configuration breaks the rules refuses to start, and says why."""

from __future__ import annotations

import sys

import pytest
import yaml

from devstack.processes import REPO_ROOT

pytestmark = pytest.mark.integration


def test_worker_refuses_a_visibility_timeout_not_above_the_hard_limit(tmp_path, start_process, transactional_db):
    # GIVEN a topology whose default queue would redeliver a task still running (visibility 5 s, limit 5 s)
    raw = yaml.safe_load((REPO_ROOT / "tests" / "fixtures" / "queues.test.yml").read_text())
    raw["queues"]["default"]["time_limit"] = 5
    bad = tmp_path / "queues.bad.yml"
    bad.write_text(yaml.safe_dump(raw))

    # WHEN a real worker is started with it
    worker = start_process(
        "worker",
        [sys.executable, "-m", "celery", "-A", "workers.celery_app", "worker", "-Q", "default", "-l", "info"],
        env={"QUEUE_TOPOLOGY": str(bad)},
    )
    code = worker.proc.wait(timeout=60)

    # THEN it exits non-zero before consuming, naming the queue and the numbers
    assert code != 0
    log = worker.log()
    assert "queues.default: visibility_timeout (5 s) must be above time_limit (5 s)" in log
    assert " ready." not in log


def test_worker_refuses_a_task_whose_time_limit_exceeds_its_queue(tmp_path, start_process, transactional_db):
    # GIVEN a topology whose default queue allows 3 s, and a task module with a 4 s limit on that queue
    (tmp_path / "slow_tasks.py").write_text(
        "from celery import shared_task\n\n"
        "@shared_task(name='jobs.too_slow', time_limit=4)\n"
        "def too_slow():\n    pass\n"
    )

    # WHEN a real worker is started with that module included
    worker = start_process(
        "worker",
        [sys.executable, "-m", "celery", "-A", "workers.celery_app", "worker", "-Q", "default", "-l", "info",
         "--include", "slow_tasks"],
        env={"PYTHONPATH": str(tmp_path)},
    )
    code = worker.proc.wait(timeout=60)

    # THEN it exits non-zero, naming the task, the queue and both numbers
    assert code != 0
    log = worker.log()
    assert "refusing to start" in log
    assert "task 'jobs.too_slow': its time_limit 4 s exceeds the time_limit of queue 'default' (3 s)" in log
    assert " ready." not in log
