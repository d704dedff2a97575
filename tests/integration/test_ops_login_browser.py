"""In a real browser, against the api as `make run` starts it (bin/start-api, the local settings, two gunicorn
workers, the secret key drawn into var/): a staff login holds over refreshes served by either worker; the
queues page shows the DLQ's depth and oldest age and previews a replay grouped by task and last exception; a
user who lost staff status gets a refusal page, not an empty page."""

from __future__ import annotations

import os
import re
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import boto3
import pytest
import requests
from django.conf import settings

from devstack import processes
from devstack.processes import REPO_ROOT
from devstack.run import API_WORKERS
from tests.integration.browser import chromium_page

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300), pytest.mark.serial]

ARTIFACTS = Path(os.environ.get("TEST_ARTIFACTS_DIR", REPO_ROOT / "test-artifacts"))
WAIT_MS = 30_000
REFRESHES = 10
PASSWORD = "operator-pw"  # noqa: S105 (a test account's)


def _healthy(url: str) -> bool:
    try:
        return requests.get(f"{url}/healthz", timeout=2).status_code == 200
    except requests.RequestException:
        return False


@pytest.fixture
def local_api(transactional_db, start_process, tmp_path):
    """bin/start-api with make run's settings: api.settings.local, API_WORKERS workers, no DJANGO_SECRET_KEY (so
    the key is drawn into a fresh var/ by whichever worker comes first). Only the access log's format differs:
    it names the worker (pid) that served each request."""
    port = processes.free_port()
    url = f"http://127.0.0.1:{port}"
    api = start_process(
        "api",
        [str(REPO_ROOT / "bin" / "start-api")],
        env={
            "PATH": processes.venv_path(),
            "DJANGO_SETTINGS_MODULE": "api.settings.local",
            "DJANGO_SECRET_KEY": "",
            "QUEUE_TOPOLOGY_PROFILE": "",  # the test topology (QUEUE_TOPOLOGY) has no `local` profile
            "LOCAL_VAR_DIR": str(tmp_path / "var"),
            "API_BIND": f"127.0.0.1:{port}",
            "API_WORKERS": str(API_WORKERS),
            "OPS_REFRESH_SECONDS": "1",
            "GUNICORN_CMD_ARGS": "--access-logformat 'pid=%(p)s \"%(r)s\" %(s)s'",
        },
    )
    processes.wait_for(lambda: api.alive() and _healthy(url), timeout=90, interval=0.5, what="the api")
    return url, api, tmp_path / "var"


def _redrive_to_dlq(queue_url: str, expected: int) -> None:
    """Receive every message of the queue until SQS's redrive policy moves them to the DLQ (a receive with
    visibility 0 gives each back at once; moto moves a message on the receive after maxReceiveCount)."""
    sqs = boto3.client("sqs", endpoint_url=settings.SQS_ENDPOINT_URL)
    for _ in range(10):
        if not sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10, VisibilityTimeout=0).get("Messages"):
            return
    raise AssertionError(f"{expected} message(s) did not reach the DLQ after 10 receives")


def _in_thread(fn):
    """Run ORM code beside Playwright's event loop (Django refuses database calls inside one)."""
    from django.db import connection

    def call():
        try:
            return fn()
        finally:
            connection.close()

    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(call).result(timeout=30)


def test_staff_login_holds_across_gunicorn_workers_and_the_page_shows_dlq_age_and_grouped_preview(
    local_api, queues, django_user_model, tmp_path
):
    from django.contrib.auth.hashers import PBKDF2PasswordHasher

    from api.jobs.models import Job
    from workers.celery_app import app

    url, api, var = local_api
    # GIVEN in the default DLQ, moved there by the redrive policy: two jobs.fail messages whose Jobs failed with
    # DemoFailure, one whose Job failed with ValueError, and a jobs.echo message that no Job knows
    task_ids = [f"browser-{i}" for i in range(4)]
    for task_id, task in zip(task_ids, ["jobs.fail"] * 3 + ["jobs.echo"], strict=True):
        app.send_task(task, kwargs={"job_id": 0, "message": "x"}, queue="default", task_id=task_id)
    errors = ["DemoFailure: bug #7", "DemoFailure: bug #7", "ValueError: bad input"]
    jobs = [
        Job.objects.create(kind="fail", queue="default", state="failed", task_id=task_id, error=error)
        for task_id, error in zip(task_ids, errors, strict=False)
    ]
    _redrive_to_dlq(queues.urls["default"], expected=4)
    processes.wait_for(lambda: queues.dlq_depth("default")["visible"] == 4, timeout=10, what="the DLQ")
    # AND a staff account (hashed as the local settings check it; the test settings' MD5 hasher is not theirs)
    password = PBKDF2PasswordHasher().encode(PASSWORD, "saltfortests", iterations=1000)
    operator = django_user_model.objects.create(username="operator", password=password, is_staff=True)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)

    with chromium_page(tmp_path / "chromium-profile") as page:
        # WHEN the operator opens the queues page, is sent to the admin login, and logs in
        page.goto(f"{url}/ops/queues")
        page.wait_for_url("**/admin/login/**")
        page.fill("#id_username", "operator")
        page.fill("#id_password", PASSWORD)
        page.click("input[type=submit]")
        page.wait_for_url(f"{url}/ops/queues")

        # AND refreshes the numbers 10 times more with "Refresh now" (besides the page's own, every second)
        status = page.locator("#status")
        ok = "Number(document.getElementById('status').dataset.ok || 0)"
        page.wait_for_function(f"{ok} >= 1", timeout=WAIT_MS)
        for _ in range(REFRESHES):
            done = int(status.get_attribute("data-ok"))
            page.click("#refresh-now")
            page.wait_for_function(f"{ok} > {done}", timeout=WAIT_MS)

        # THEN every refresh succeeded: the session one gunicorn worker signed is accepted by the other
        assert status.get_attribute("data-failed") == "0", status.inner_text()
        assert "refresh failed" not in status.inner_text()

        # AND the default row shows the DLQ's depth and its oldest age, from the DLQ's own CloudWatch datapoint
        row = page.locator('#queues tr[data-queue="default"]')
        row.locator("td.dlq", has_text="4").wait_for(timeout=WAIT_MS)
        dlq_age = row.locator('td.dlq-age[data-basis="cloudwatch"]')
        dlq_age.wait_for(timeout=WAIT_MS)
        assert re.match(r"\d+ s\b", dlq_age.inner_text()), dlq_age.inner_text()
        assert "CloudWatch point of" in dlq_age.locator(".note").inner_text()
        # AND the emptied default queue's oldest message reads "—" from its counts, whatever CloudWatch said
        assert row.locator('td.age[data-basis="empty"]').inner_text().startswith("—")
        # AND its chart has a scale in messages per minute and a time axis
        chart = row.locator("td.chart svg")
        assert chart.locator("text.y-tick").count() == 3 and chart.locator("text.x-tick").count() == 2
        assert chart.locator("text.unit").text_content() == "msgs/min"
        page.screenshot(path=str(ARTIFACTS / "queues-dlq-age.png"), full_page=True)

        # WHEN they preview the replay
        row.locator("button.preview").click()

        # THEN the preview groups the messages by task and by the last exception of their Job
        page.locator("#replay-preview", has_text="would move 4 of 4").wait_for(timeout=WAIT_MS)
        rows = page.locator("#replay table.groups tbody tr").all()
        groups = [
            (*row.locator("td").all_inner_texts()[:3], set(row.locator("td").nth(3).inner_text().split()))
            for row in rows
        ]
        assert groups == [
            ("jobs.fail", "DemoFailure: bug #7", "2", {f"#{jobs[0].pk}", f"#{jobs[1].pk}"}),
            ("jobs.echo", "no job record", "1", set()),
            ("jobs.fail", "ValueError: bad input", "1", {f"#{jobs[2].pk}"}),
        ]
        # AND how long ago each group's oldest was first sent, and how long the DLQ (2 h) keeps it still
        kept = page.locator("#replay table.groups td.kept").all_inner_texts()
        assert len(kept) == 3 and all(re.fullmatch(r"\d+ s ago; kept 1 h 59 min more", k) for k in kept), kept
        page.screenshot(path=str(ARTIFACTS / "queues-preview-grouped.png"), full_page=True)

        # WHEN a refresh fails (the JSON unreachable)
        page.route("**/ops/queues.json", lambda route: route.abort())
        page.click("#refresh-now")

        # THEN the status on top says so, and the table keeps the last numbers it had, saying of when
        page.locator("#status.error", has_text="refresh failed at").wait_for(timeout=WAIT_MS)
        assert "showing the numbers of" in status.inner_text()
        assert page.locator("#queues tbody tr").count() == 3 and row.locator("td.dlq").inner_text() == "4"
        page.screenshot(path=str(ARTIFACTS / "queues-refresh-failed-keeps-numbers.png"))
        page.unroute("**/ops/queues.json")

        # WHEN the account loses its staff status and the page is opened again
        _in_thread(lambda: django_user_model.objects.filter(pk=operator.pk).update(is_staff=False))
        response = page.goto(f"{url}/ops/queues")

        # THEN a refusal page says why and links to the login for a staff account
        assert response.status == 403
        refused = page.locator("#refused")
        assert "operator" in refused.inner_text() and "without staff status" in refused.inner_text()
        assert page.locator("#login-as-staff").get_attribute("href") == "/admin/login/?next=%2Fops%2Fqueues"
        page.screenshot(path=str(ARTIFACTS / "queues-refused-nonstaff.png"), full_page=True)

    # AND the refreshes were served by both gunicorn workers: the session one signed, the other accepted
    served = re.findall(r'pid=<?(\d+)>? "GET /ops/queues\.json[^"]*" 200', api.log())
    assert len(served) >= REFRESHES + 1
    assert len(set(served)) == API_WORKERS, f"one worker served all {len(served)} refreshes: {set(served)}"
    # AND one secret key, drawn into var/ (0600), read by both
    assert (var / "local-secret-key").stat().st_mode & 0o777 == 0o600
    # AND nothing was replayed: the preview left the messages in the DLQ
    assert queues.dlq_depth("default")["visible"] + queues.dlq_depth("default")["in_flight"] == 4
