"""End to end in a real browser: a failed job's message shows in the DLQ row of /ops/queues, the operator
previews and confirms its replay on the page, the DLQ count drops and the job succeeds after the fix."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from api.jobs.models import Job
from devstack import processes
from devstack.processes import REPO_ROOT
from tests.integration.browser import STAFF_PASSWORD, STAFF_USERNAME, chromium_page
from tests.integration.conftest import post_job, wait_for_job

# The first run on a fresh machine installs chromium with apt-get (about 20 s here, more with apt-get update).
pytestmark = [pytest.mark.integration, pytest.mark.long_running, pytest.mark.timeout(600), pytest.mark.serial]

ARTIFACTS = Path(os.environ.get("TEST_ARTIFACTS_DIR", REPO_ROOT / "test-artifacts"))
WAIT_MS = 30_000


def _log_in(page, live_api: str) -> None:
    page.goto(f"{live_api}/ops/queues")
    page.wait_for_url("**/admin/login/**")  # staff only: the admin login first
    # The admin's stylesheet applied (whitenoise serves it): its header colour, not the browser's transparent
    header = page.evaluate("getComputedStyle(document.querySelector('#header')).backgroundColor")
    assert header not in ("rgba(0, 0, 0, 0)", "transparent"), f"the admin is unstyled: #header {header}"
    page.fill("#id_username", STAFF_USERNAME)
    page.fill("#id_password", STAFF_PASSWORD)
    page.click("input[type=submit]")
    page.wait_for_url(f"{live_api}/ops/queues")


def _cell(page, queue: str, css: str):
    return page.locator(f'#queues tr[data-queue="{queue}"] {css}')


def test_operator_replays_a_failed_job_from_the_dlq_row(
    client, staff_user, start_worker, queues, live_api, tmp_path
):
    # GIVEN a worker running code in which `fail` always fails, and a job whose message reached the DLQ
    broken = start_worker()
    job_id = post_job(client, kind="fail", payload={"message": "bug #7"}).json()["job_id"]
    processes.wait_for(lambda: queues.dlq_depth("default")["visible"] == 1, timeout=90, what="the DLQ")
    wait_for_job(job_id, {"dead_lettered"})
    # AND the fix deployed (a worker without the failure replaces the broken one), and a staff account
    processes.stop(broken.proc, grace=10)
    start_worker(env={"DEMO_FAILURES_FIXED": "true"})
    ARTIFACTS.mkdir(parents=True, exist_ok=True)

    # (no ORM inside: Playwright's sync API runs an event loop, where Django refuses database calls)
    with chromium_page(tmp_path / "chromium-profile") as page:
        # WHEN the operator logs in and opens the queues page
        _log_in(page, live_api)

        # THEN the default queue's DLQ row shows the message, the failed job is listed
        dlq = _cell(page, "default", "td.dlq")
        dlq.filter(has_text="1").wait_for(timeout=WAIT_MS)
        page.locator(f'#jobs tr[data-job="{job_id}"] td.state', has_text="dead_lettered").wait_for(timeout=WAIT_MS)

        # WHEN they preview the replay from the DLQ row
        _cell(page, "default", "button.preview").click()

        # THEN the dry run names the task and how many would move
        preview = page.locator("#replay-preview")
        preview.filter(has_text="would move 1 of 1").wait_for(timeout=WAIT_MS)
        # grouped by task and by the last exception its Job recorded
        group = page.locator('#replay tr[data-task="jobs.fail"] td').all_inner_texts()
        assert group[:4] == ["jobs.fail", "DemoFailure: bug #7", "1", f"#{job_id}"]
        assert re.fullmatch(r"\d.* ago; kept \d.* more", group[4]), group[4]
        page.screenshot(path=str(ARTIFACTS / "ops-queues-preview.png"), full_page=True)

        # WHEN they confirm it
        page.click("#replay-confirm")

        # THEN the page reports one moved, the DLQ count drops to 0 and the job succeeds
        page.locator("#replay-result", has_text="Moved 1 message(s).").wait_for(timeout=WAIT_MS)
        dlq.filter(has_text="0").wait_for(timeout=WAIT_MS)
        page.locator(f'#jobs tr[data-job="{job_id}"] td.state', has_text="succeeded").wait_for(timeout=60_000)
        # AND the throughput chart counts the replayed message's deletion, from the emulator's CloudWatch
        _cell(page, "default", "td.chart").filter(has_text=re.compile(r"latest: [1-9]")).wait_for(timeout=WAIT_MS)
        assert _cell(page, "default", "td.chart svg rect").count() >= 1
        assert _cell(page, "default", "td.age").count() == 1
        page.screenshot(path=str(ARTIFACTS / "ops-queues.png"), full_page=True)

    # AND the preview and the replay are audited, by the operator
    from api.ops.models import ReplayAudit

    audits = list(ReplayAudit.objects.order_by("at").values_list("username", "dry_run", "moved"))
    assert audits == [("operator", True, 0), ("operator", False, 1)]
    # AND the replayed message ran to success once more, with its own task id, and the DLQ is empty
    job = Job.objects.get(pk=job_id)
    assert job.state == "succeeded" and job.result == {"fixed": True, "message": "bug #7"}
    assert sum(queues.dlq_depth("default").values()) == 0
