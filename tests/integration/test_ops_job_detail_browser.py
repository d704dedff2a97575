"""End to end in a real browser: the detail page of a Job that went to the DLQ, was replayed through the ops
replay path and went back: its states, receive count, replayed ×1, last error and traceback."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from devstack import processes
from devstack.processes import REPO_ROOT
from tests.integration.browser import chromium_page, log_in
from tests.integration.conftest import post_job, wait_for_job

pytestmark = [pytest.mark.integration, pytest.mark.long_running, pytest.mark.timeout(600), pytest.mark.serial]

ARTIFACTS = Path(os.environ.get("TEST_ARTIFACTS_DIR", REPO_ROOT / "test-artifacts"))
WAIT_MS = 30_000
RELOADS = 60  # the replayed copy fails on two receives, 5 s visibility apart: well within a minute


def _reload_until(page, css: str, text: str) -> None:
    """Reload the server-rendered page until `css` shows `text` (bounded: RELOADS times, 1 s apart)."""
    for _ in range(RELOADS):
        if text in (page.locator(css).text_content() or ""):
            return
        time.sleep(1)
        page.reload()
    raise AssertionError(f"{css} never showed {text!r}: {page.locator(css).text_content()!r}")


def test_the_detail_of_a_job_that_went_to_the_dlq_and_was_replayed(
    client, staff_user, start_worker, queues, live_api, tmp_path
):
    # GIVEN a worker running code in which `fail` always fails, and a job whose message reached the DLQ
    start_worker()
    job_id = post_job(client, kind="fail", payload={"message": "bug #7"}).json()["job_id"]
    processes.wait_for(lambda: queues.dlq_depth("default")["visible"] == 1, timeout=90, what="the DLQ")
    wait_for_job(job_id, {"dead_lettered"})
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    from api.ops.services import dlq_replay_run

    # (no ORM inside: Playwright's sync API runs an event loop, where Django refuses database calls)
    with chromium_page(tmp_path / "chromium-profile") as page:
        # WHEN the operator lists the dead-lettered jobs and opens this one
        log_in(page, live_api, "/ops/jobs?state=dead_lettered")
        page.screenshot(path=str(ARTIFACTS / "jobs-list-dead-lettered.png"), full_page=True)
        page.click(f'#jobs tr[data-job="{job_id}"] a')
        page.wait_for_url(f"{live_api}/ops/jobs/{job_id}")

        # THEN it is dead-lettered: failed on receive 2 of 2, never replayed, with its error and traceback
        assert page.locator("#job-state").inner_text() == "dead_lettered"
        assert page.locator("#dlq-receive-count").inner_text() == "2"
        assert page.locator("#replays").inner_text() == "×0"
        assert page.locator("#last-error").inner_text() == "DemoFailure: bug #7"
        assert "Traceback (most recent call last)" in page.locator("#traceback").inner_text()
        assert page.locator('#history tr[data-state="retrying"]', has_text="retry at").count() == 2  # max_retries
        assert page.locator('#history tr[data-state="dead_lettered"]').count() == 1
        assert page.locator("#cancel").count() == 0  # it ran: nothing to cancel
        page.screenshot(path=str(ARTIFACTS / "job-detail-dlq.png"), full_page=True)

        # WHEN it is replayed through the ops replay path (the Lambda's code) to the still broken worker
        report = dlq_replay_run(payload={"queue": "default", "dry_run": False})
        assert report.moved == 1

        # THEN the page shows it replayed once, received again and back in the DLQ after two more receives
        _reload_until(page, "#replays", "×1")
        _reload_until(page, "#job-state", "dead_lettered")
        assert page.locator("#receive-count").inner_text().startswith("2 of 2")
        assert page.locator('#history tr[data-state="dead_lettered"]').count() == 2
        assert page.locator("#history", has_text="replayed ×1").count() == 1
        assert "bug #7" in page.locator("#last-error").inner_text()
        page.screenshot(path=str(ARTIFACTS / "job-detail-replayed.png"), full_page=True)

    # AND the message is in the DLQ again, once
    processes.wait_for(lambda: queues.dlq_depth("default")["visible"] == 1, timeout=30, what="the DLQ again")
