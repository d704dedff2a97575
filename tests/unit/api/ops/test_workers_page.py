"""/ops/workers, its JSON and `manage.py workers`: staff only, alive/lost/stopped from the registry rows, the
lost worker's tasks kept, the Job of a running task, and a non-zero exit when the registry cannot be read."""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime, timedelta

import pytest
from django.core.management import CommandError, call_command
from django.db import OperationalError

from api.jobs.models import Job
from api.ops.worker_list import workers_report
from workers.models import WorkerRegistration

PAGE, DATA = "/ops/workers", "/ops/workers.json"


def register(name: str, *, renewed_ago: float, running=(), stopped: bool = False, **fields) -> WorkerRegistration:
    """A row as a worker writes it, renewed `renewed_ago` seconds before NOW (set when the test starts)."""
    return WorkerRegistration.objects.create(
        worker_id=name.replace("@", "-"),
        nodename=name,
        host="box",
        pid=fields.pop("pid", 7),
        queues=["default", "high_priority"],
        concurrency=2,
        prefetch=2,
        version="celery-sqs-reference 0.1.0 / celery 5.7.0",
        started_at=NOW - timedelta(minutes=30),
        last_poll_at=NOW - timedelta(seconds=renewed_ago),
        renewed_at=NOW - timedelta(seconds=renewed_ago),
        lost_after_seconds=51,
        running=list(running),
        counts={"done": 12, "failed": 1, "retried": 2, "window_minutes": 15},
        renewals=120,
        stopped_at=NOW if stopped else None,
        **fields,
    )


NOW = datetime.now(UTC)


@pytest.fixture(autouse=True)
def now():
    """The rows are written relative to this test's start, not to when the module was imported."""
    global NOW
    NOW = datetime.now(UTC)
    return NOW


@pytest.fixture
def fleet(db):
    """One worker alive running a Job's task, one lost (not renewed for 60 s > 51 s) with its task, one stopped,
    and one pruned long ago (25 h)."""
    job = Job.objects.create(kind="sleep", payload={"seconds": 30})
    since = (NOW - timedelta(seconds=20)).isoformat()
    register(
        "worker@alive", renewed_ago=5, running=[{"task_id": str(job.task_id), "name": "jobs.sleep", "since": since}]
    )
    lost_since = (NOW - timedelta(seconds=80)).isoformat()  # 20 s before its last poll, 60 s ago
    register("worker@lost", renewed_ago=60, running=[{"task_id": "t-lost", "name": "jobs.echo", "since": lost_since}])
    register("worker@stopped", renewed_ago=600, stopped=True)
    register("worker@ancient", renewed_ago=25 * 3600)
    return job


def test_each_row_is_alive_lost_or_stopped_and_the_lost_one_keeps_its_tasks(fleet):
    # WHEN the registry is read
    report = workers_report(now=NOW)
    # THEN alive first, then lost, then stopped; the row older than the keep bound is not shown
    assert [(w.nodename, w.status) for w in report.workers] == [
        ("worker@alive", "alive"),
        ("worker@lost", "lost"),
        ("worker@stopped", "stopped"),
    ]
    alive, lost, _stopped = report.workers
    # AND the running task of a Job carries the Job's id (read by task id); the lost worker's task is kept
    assert (alive.running[0].name, alive.running[0].job_id) == ("jobs.sleep", fleet.pk)
    assert (lost.running[0].task_id, lost.running[0].job_id) == ("t-lost", None)
    # AND a running task's time counts to now; a lost worker's, to its last poll (what is known of it)
    assert (alive.running[0].running_for, lost.running[0].running_for) == ("20 s", "20 s")
    assert report.as_dict()["totals"] == {"alive": 1, "lost": 1, "stopped": 1}


def test_a_row_turns_lost_exactly_past_the_bound_the_worker_wrote(db):
    register("worker@edge", renewed_ago=0)
    assert workers_report(now=NOW + timedelta(seconds=51)).workers[0].status == "alive"
    assert workers_report(now=NOW + timedelta(seconds=52)).workers[0].status == "lost"


def test_anonymous_visitors_are_sent_to_the_admin_login(client, db):
    response = client.get(PAGE)
    assert response.status_code == 302 and response["Location"] == "/admin/login/?next=/ops/workers"


def test_a_user_who_is_not_staff_is_told_so_and_gets_no_data(client, django_user_model, fleet):
    # GIVEN a logged-in user without staff status
    client.force_login(django_user_model.objects.create_user("visitor", password="pw"))
    # WHEN they open the page and its JSON
    page, data = client.get(PAGE), client.get(DATA)
    # THEN a 403 page that says why (not an empty page, not the login form again), and a 403 JSON with a reason
    assert page.status_code == 403
    html = page.content.decode()
    assert "Staff only" in html and "visitor" in html and "worker@alive" not in html
    assert data.status_code == 403 and "staff only" in data.json()["error"]


def test_staff_get_a_server_rendered_page_with_every_worker_and_its_tasks(staff_client, fleet):
    # WHEN a staff user opens the page
    response = staff_client.get(PAGE)
    # THEN the first paint already holds the rows (no wait for the refresh), the nav marks Workers
    assert response.status_code == 200
    html = response.content.decode()
    assert 'href="/ops/workers" aria-current="page"' in html
    assert '<tr class="alive"' in html and '<tr class="lost"' in html and '<tr class="stopped"' in html
    assert "jobs.sleep" in html and f"Job {fleet.pk}" in html and "t-lost" in html
    assert "12 done · 1 failed · 2 retried" in html
    assert '"/ops/workers.json"' in html
    assert "worker@ancient" not in html


def test_staff_json_has_each_worker_with_status_tasks_and_counts(staff_client, fleet):
    data = staff_client.get(DATA).json()
    by_name = {w["nodename"]: w for w in data["workers"]}
    assert by_name["worker@lost"]["status"] == "lost"
    assert by_name["worker@lost"]["running"][0]["task_id"] == "t-lost"
    assert by_name["worker@alive"]["running"][0]["job_id"] == fleet.pk
    assert by_name["worker@alive"]["counts"] == {"done": 12, "failed": 1, "retried": 2, "window_minutes": 15}
    for key in ("host", "pid", "queues", "concurrency", "prefetch", "version", "started_at", "last_poll_at"):
        assert key in by_name["worker@alive"]


def test_page_and_json_say_when_the_registry_cannot_be_read(staff_client, monkeypatch):
    # GIVEN a registry the database refuses to read
    monkeypatch.setattr("api.ops.workers_views.workers_report", _refused)
    # THEN the page and the JSON answer 503 with the reason
    page, data = staff_client.get(PAGE), staff_client.get(DATA)
    assert page.status_code == 503 and "cannot read the worker registry" in page.content.decode()
    assert data.status_code == 503 and "cannot read the worker registry" in data.json()["error"]


def _run(*args: str) -> str:
    out = io.StringIO()
    call_command("workers", *args, stdout=out)
    return out.getvalue()


def test_the_command_lists_each_worker_with_its_tasks(fleet):
    out = _run()
    lines = out.splitlines()
    assert lines[0].startswith("ALIVE    worker@alive pid 7 on default,high_priority")
    assert "12 done, 1 failed, 2 retried" in lines[0]
    assert lines[1].strip().startswith(f"running jobs.sleep[{fleet.task_id}] job {fleet.pk} for ")
    assert any(line.startswith("LOST     worker@lost") for line in lines)
    assert any("running jobs.echo[t-lost]" in line for line in lines)


def test_the_command_prints_json_and_watches_a_bounded_number_of_times(fleet, monkeypatch):
    monkeypatch.setattr("api.ops.management.commands.workers.time.sleep", lambda s: None)
    out = _run("--json", "--watch", "1", "--count", "2").splitlines()
    assert len(out) == 2
    assert [w["status"] for w in json.loads(out[0])["workers"]] == ["alive", "lost", "stopped"]


def test_the_command_says_so_when_no_worker_registered(db):
    assert "no workers registered" in _run()


def test_the_command_exits_non_zero_when_the_registry_cannot_be_read(monkeypatch, db):
    monkeypatch.setattr("api.ops.management.commands.workers.workers_report", _refused)
    with pytest.raises(CommandError, match="cannot read the worker registry: OperationalError"):
        _run()


def test_the_command_refuses_a_bad_watch(db):
    with pytest.raises(CommandError, match="--watch"):
        _run("--watch", "0")
    with pytest.raises(CommandError, match="--count"):
        _run("--count", "2")


def _refused(*args, **kwargs):
    raise OperationalError("connection refused")


def test_a_lost_workers_task_shows_its_job_now_released_by_the_sweep(staff_client, db):
    # GIVEN a lost worker whose task's Job the lost-worker sweep put back to queued
    from api.jobs.lost_workers import sweep_lost_workers

    job = Job.objects.create(
        kind="sleep", payload={"seconds": 30}, state="running", worker_hostname="worker@lost", attempts=1,
        started_at=NOW - timedelta(seconds=70),
    )  # fmt: skip
    since = (NOW - timedelta(seconds=70)).isoformat()
    register(
        "worker@lost", renewed_ago=60, running=[{"task_id": str(job.task_id), "name": "jobs.sleep", "since": since}]
    )
    sweep_lost_workers(now=NOW)
    # WHEN the registry is shown
    [lost] = workers_report(now=NOW).workers
    page = staff_client.get(PAGE).content.decode()
    out = io.StringIO()
    call_command("workers", stdout=out)
    # THEN the lost worker's task links to its Job's detail page and says the Job's state now
    assert (lost.running[0].job_id, lost.running[0].job_state) == (job.pk, "queued")
    assert f'href="/ops/jobs/{job.pk}"' in page and "now queued" in page
    assert f"job {job.pk} (now queued)" in out.getvalue()
