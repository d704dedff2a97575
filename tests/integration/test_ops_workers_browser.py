"""End to end in a real browser: /ops/workers shows a worker running a Job's task, and after a SIGKILL of that
worker the same row turns "lost", still showing the task it was running; once the lost-worker sweep ran, the
Job's detail page shows the "worker lost" event and the Job queued again."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from devstack import processes
from devstack.processes import REPO_ROOT
from tests.integration.browser import chromium_page, log_in
from tests.integration.conftest import database_env, post_job, wait_for_job

pytestmark = [pytest.mark.integration, pytest.mark.long_running, pytest.mark.timeout(300), pytest.mark.serial]

ARTIFACTS = Path(os.environ.get("TEST_ARTIFACTS_DIR", REPO_ROOT / "test-artifacts"))
WAIT_MS = 30_000
LOST_MS = 60_000  # the lost bound (10 s with 1 s renewals and 2 s polls) plus page refreshes, on a busy machine


def test_the_workers_page_shows_a_running_task_and_a_killed_worker_turning_lost(
    client, staff_user, start_worker, live_api, tmp_path
):
    # GIVEN a worker (renewing its registry row every second, long polls of 2 s: lost 10 s after its last poll,
    # not 28) running a 25 s sleep Job, and a staff account
    worker = start_worker(env={"WORKER_REGISTRY_SECONDS": "1", "WORKER_LONG_POLL_SECONDS": "2"})
    job_id = post_job(client, kind="sleep", payload={"seconds": 24}, queue="high_priority").json()["job_id"]
    wait_for_job(job_id, {"running"})
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    row = f'#workers tr[data-pid="{worker.proc.pid}"]'

    # (no ORM inside: Playwright's sync API runs an event loop, where Django refuses database calls)
    with chromium_page(tmp_path / "chromium-profile") as page:
        # WHEN the operator logs in from the workers page
        log_in(page, live_api, "/ops/workers")

        # THEN the worker's row is alive and lists the sleep task with its Job
        page.locator(f"{row}.alive li[data-task]", has_text="jobs.sleep").wait_for(timeout=WAIT_MS)
        assert f"Job {job_id}" in page.locator(row).inner_text()
        page.screenshot(path=str(ARTIFACTS / "workers-running.png"), full_page=True)

        # WHEN the whole worker is SIGKILLed mid-task
        processes.signal_group(worker.proc, signal.SIGKILL)

        # THEN the refreshing page turns its row "lost", still showing the task it was running
        page.locator(f"{row}.lost li[data-task]", has_text="jobs.sleep").wait_for(timeout=LOST_MS)
        assert page.locator(f"{row} td.status").inner_text().strip().lower() == "lost"
        assert f"Job {job_id}" in page.locator(row).inner_text()
        assert "refresh failed" not in page.locator("#status").inner_text()
        page.screenshot(path=str(ARTIFACTS / "workers-lost.png"), full_page=True)

        # WHEN the lost-worker sweep runs (as the relay does every 10 s)
        swept = subprocess.run(
            [sys.executable, str(REPO_ROOT / "manage.py"), "workers", "--sweep"],
            env={"PATH": processes.venv_path(), "DJANGO_SETTINGS_MODULE": "api.settings.test", **database_env()},
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert swept.returncode == 0 and f"back to queued [{job_id}]" in swept.stderr, swept.stderr
        # THEN the lost worker's row, refreshing, says its Job is queued again
        page.locator(f"{row}.lost .job-state", has_text="now queued").wait_for(timeout=WAIT_MS)
        # AND the Job's detail page shows it queued again, with the "worker lost" event naming the worker
        page.goto(f"{live_api}/ops/jobs/{job_id}")
        lost = page.locator('#history tr[data-state="queued"]', has_text="worker lost")
        lost.wait_for(timeout=WAIT_MS)
        assert f"pid {worker.proc.pid}" in lost.inner_text()
        assert "redelivered after its visibility timeout" in lost.inner_text()
        page.screenshot(path=str(ARTIFACTS / "job-worker-lost.png"), full_page=True)
