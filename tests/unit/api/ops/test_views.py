"""The queues page, its JSON and the DLQ replay endpoint: staff only, CSRF on POST, the replay Lambda's code."""

from __future__ import annotations

import json
import re

import pytest
from django.test import Client

from api.jobs.models import Job

PAGE, DATA = "/ops/queues", "/ops/queues.json"


def _row(html: str, queue: str) -> str:
    """The server-rendered table row of one queue."""
    return re.search(rf'<tr data-queue="{queue}".*?</tr>', html, re.S).group(0)


def _replay_url(queue: str) -> str:
    return f"/ops/queues/{queue}/replay"


def _csrf_token(client: Client) -> str:
    """What the page gives the browser: the token the page embeds, backed by its cookie."""
    assert client.get(PAGE).status_code == 200
    return client.cookies["csrftoken"].value


def _post_replay(client: Client, queue: str, body, token: str | None):
    headers = {"HTTP_X_CSRFTOKEN": token} if token else {}
    data = body if isinstance(body, str) else json.dumps(body)
    return client.post(_replay_url(queue), data=data, content_type="application/json", **headers)


# --- who may look ----------------------------------------------------------------------------------


def test_anonymous_visitors_are_sent_to_the_admin_login(client, db):
    # WHEN someone not logged in opens the page
    response = client.get(PAGE)
    # THEN they are redirected to the admin login, coming back to the page after
    assert response.status_code == 302
    assert response["Location"] == "/admin/login/?next=/ops/queues"


def test_a_user_who_is_not_staff_gets_no_page_no_numbers_and_no_replay(client, django_user_model, ops_world):
    # GIVEN a logged-in user without staff status, and a message in the default DLQ
    client.force_login(django_user_model.objects.create_user("visitor", password="pw"))
    ops_world.sqs.dead_letter("jobs.fail")

    # WHEN they open the page, its JSON, and post a replay
    page, data = client.get(PAGE), client.get(DATA)
    replay = _post_replay(client, "default", {"dry_run": False}, token=None)

    # THEN the page is a 403 that says why, who they are, and links to the login for a staff account
    assert page.status_code == 403
    html = page.content.decode()
    assert "Staff only" in html and "<strong>visitor</strong>" in html and "without staff status" in html
    assert 'href="/admin/login/?next=%2Fops%2Fqueues"' in html
    # AND none of the numbers are in it
    assert "first-data" not in html and "t-default-dlq" not in html
    # AND the JSON and the replay are 403 with a reason
    assert data.status_code == 403 and "staff only" in data.json()["error"]
    assert replay.status_code == 403
    # AND nothing moved
    assert ops_world.sqs.dlq_counts() == (1, 0)


def test_staff_see_the_page_with_its_data_url_and_a_csrf_token(staff_client, ops_world):
    # WHEN a staff user opens the page
    response = staff_client.get(PAGE)

    # THEN it is served by Django with everything inline: no CDN, no other host
    assert response.status_code == 200
    html = response.content.decode()
    assert '"/ops/queues.json"' in html and '<meta name="csrf-token"' in html
    assert "http://" not in html.replace("http://www.w3.org/2000/svg", "")
    assert "https://" not in html
    assert "csrftoken" in response.cookies


def test_a_user_whose_staff_status_was_removed_is_refused_at_once(client, staff, ops_world):
    # GIVEN a staff session, then staff status taken away
    client.force_login(staff)
    assert client.get(PAGE).status_code == 200
    staff.is_staff = False
    staff.save()

    # WHEN the page is opened again THEN it is refused with the page, not a redirect to the login (a loop)
    response = client.get(PAGE)
    assert response.status_code == 403 and "Log in with a staff account" in response.content.decode()


# --- the first paint --------------------------------------------------------------------------------


def test_the_page_arrives_with_its_first_table_rendered_from_the_jsons_data(staff_client, ops_world):
    # GIVEN two messages in the default DLQ, one waiting in the default queue, one period of metrics, a job
    ops_world.sqs.dead_letter_many("jobs.fail", 2)
    ops_world.sqs.publish("jobs.echo")
    ops_world.publish_metrics()
    job = Job.objects.create(kind="fail", queue="default", state="failed", error="RuntimeError: bug #7")

    # WHEN the page is fetched (no JavaScript runs)
    html = staff_client.get(PAGE).content.decode()
    data = staff_client.get(DATA).json()

    # THEN every queue has its row with SQS's numbers, the DLQ depth and the DLQ's oldest age, as in the JSON
    default = {q["key"]: q for q in data["snapshot"]["queues"]}["default"]
    row = _row(html, "default")
    assert re.search(r'<td class="dlq nonzero">2</td>', row)
    assert f'data-basis="cloudwatch">{default["dlq_oldest_age"]["text"]}<div' in row
    assert f'data-basis="cloudwatch">{default["oldest_age"]["text"]}<div' in row
    assert "<td>1</td>" in row  # visible
    empty = 'data-basis="empty">—<div class="muted small note">empty now (GetQueueAttributes)'
    assert empty in _row(html, "low_priority")
    # AND the latest jobs, and the same data for the script to draw the charts from without a fetch
    assert f'<tr data-job="{job.pk}">' in html and "RuntimeError: bug #7" in html
    assert '<script id="first-data" type="application/json">' in html
    # AND navigation to the other ops pages, this one marked
    assert '<a href="/ops/queues" aria-current="page">Queues</a>' in html and 'href="/ops/workers"' in html


def test_a_page_whose_numbers_cannot_be_read_still_renders_and_says_why(staff_client, db, monkeypatch):
    # GIVEN reading the numbers fails outright (here: the jobs' database query)
    def broken(**kwargs):
        raise RuntimeError("database went away")

    monkeypatch.setattr("api.ops.views.jobs_latest", broken)

    # WHEN the page is fetched THEN it renders, with the error on top and an empty table for the refresh to fill
    response = staff_client.get(PAGE)
    assert response.status_code == 200
    html = response.content.decode()
    assert 'class="error">could not read the numbers: RuntimeError: database went away</span>' in html
    assert '<script id="first-data" type="application/json">null</script>' in html


# --- the numbers -----------------------------------------------------------------------------------


def test_json_has_every_queue_with_sources_and_the_latest_jobs(staff_client, ops_world):
    # GIVEN a message in the default DLQ, one period of metrics, and two jobs
    ops_world.sqs.dead_letter("jobs.fail")
    ops_world.publish_metrics()
    first = Job.objects.create(kind="echo", queue="default", state="succeeded")
    second = Job.objects.create(kind="fail", queue="default", state="failed", error="boom")

    # WHEN the page's JSON is fetched
    response = staff_client.get(DATA)

    # THEN every topology queue is there with its numbers
    assert response.status_code == 200
    body = response.json()
    queues = {q["key"]: q for q in body["snapshot"]["queues"]}
    assert set(queues) == set(ops_world.sqs.topology.queues)
    assert queues["default"]["dlq_depth"] == 1
    assert queues["default"]["visible"] == 0
    assert queues["default"]["oldest_age_seconds"] is not None
    assert body["snapshot"]["sources"]["counts"].startswith("SQS GetQueueAttributes")
    # AND the latest jobs first, with their state
    assert [(j["id"], j["state"]) for j in body["jobs"][:2]] == [(second.pk, "failed"), (first.pk, "succeeded")]
    assert body["jobs"][0]["error"] == "boom"


def test_page_and_json_show_each_queues_expirations(staff_client, ops_world):
    # GIVEN one message of the low_priority queue deleted unrun because it had expired
    from workers.models import DiscardedMessage, DiscardReason

    DiscardedMessage.objects.create(
        task_id="t", task_name="newsletter.send_one", queue="low_priority", reason=DiscardReason.EXPIRED
    )
    # WHEN the page and its JSON are fetched
    page = staff_client.get(PAGE).content.decode()
    queues = {q["key"]: q for q in staff_client.get(DATA).json()["snapshot"]["queues"]}
    # THEN the page has the column and the JSON the counts: recent (15 min) and in all
    assert "Expired, 15 min / all" in page
    assert (queues["low_priority"]["expired_recent"], queues["low_priority"]["expired_total"]) == (1, 1)
    assert (queues["default"]["expired_recent"], queues["default"]["expired_total"]) == (0, 0)


# --- the replay ------------------------------------------------------------------------------------


def test_a_replay_post_without_the_csrf_token_is_refused_and_moves_nothing(staff_client, ops_world):
    # GIVEN a message in the default DLQ
    ops_world.sqs.dead_letter("jobs.fail")

    # WHEN a staff session posts a replay without the CSRF token (a forged cross-site request)
    response = _post_replay(staff_client, "default", {"dry_run": False}, token=None)

    # THEN Django refuses it and the message stays in the DLQ
    assert response.status_code == 403
    assert ops_world.sqs.dlq_counts() == (1, 0)
    assert ops_world.sqs.source_counts() == (0, 0)


def test_preview_reports_by_task_and_moves_nothing_then_confirm_moves_it(staff_client, ops_world):
    # GIVEN two failed jobs.fail messages and one jobs.echo message in the default DLQ
    ops_world.sqs.dead_letter_many("jobs.fail", 2)
    ops_world.sqs.dead_letter("jobs.echo")
    token = _csrf_token(staff_client)

    # WHEN the operator previews the replay (the page posts a dry run)
    preview = _post_replay(staff_client, "default", {"dry_run": True}, token)

    # THEN it is the replay Lambda's report: what would move, by task name; nothing moved
    assert preview.status_code == 200
    report = preview.json()
    assert report["dry_run"] is True and report["matched"] == 3 and report["moved"] == 0
    assert report["by_task"] == {"jobs.fail": 2, "jobs.echo": 1}
    assert ops_world.sqs.dlq_counts() == (3, 0)

    # WHEN the operator confirms for jobs.fail only, resetting retries
    confirm = _post_replay(
        staff_client,
        "default",
        {"dry_run": False, "task_names": ["jobs.fail"], "reset_retries": True, "max_messages": 3},
        token,
    )

    # THEN those two moved back to the default queue with their retries reset; jobs.echo stays
    assert confirm.status_code == 200
    done = confirm.json()
    assert done["moved"] == 2 and done["skipped"] == 1 and done["failed"] == [] and done["not_deleted"] == []
    assert ops_world.sqs.dlq_counts() == (1, 0)
    assert [h["retries"] for h in ops_world.sqs.headers_in(ops_world.sqs.urls["default"])] == [0, 0]


BAD_REQUESTS = [
    pytest.param("default", "{not json", 400, "not valid JSON", id="body-not-json"),
    pytest.param("default", "[1]", 400, "must be a JSON object", id="body-a-list"),
    pytest.param("default", {"dry_run": False, "max_messages": 0}, 400, "max_messages", id="max-messages-0"),
    pytest.param("default", {"dry_run": False, "everything": True}, 400, "everything", id="unknown-field"),
    pytest.param("default", {"dry_run": "no"}, 400, "dry_run", id="dry-run-not-a-bool"),
    pytest.param("default", {"queue": "low_priority"}, 400, "given by the URL", id="queue-in-the-body"),
    pytest.param("nope", {"dry_run": False}, 404, "unknown queue 'nope'", id="unknown-queue"),
]


@pytest.mark.parametrize(("queue", "body", "status", "message"), BAD_REQUESTS)
def test_a_bad_replay_request_is_a_clear_error_and_nothing_is_received(
    staff_client, ops_world, queue, body, status, message
):
    # GIVEN a message in the default DLQ
    ops_world.sqs.dead_letter("jobs.fail")
    token = _csrf_token(staff_client)

    # WHEN a bad replay request is posted
    response = _post_replay(staff_client, queue, body, token)

    # THEN the answer says what is wrong
    assert response.status_code == status
    assert message in response.json()["error"]
    # AND the message was not even received: still visible, never in flight
    assert ops_world.sqs.dlq_counts() == (1, 0)
    assert ops_world.sqs.source_counts() == (0, 0)


def test_replay_is_post_only(staff_client, db):
    # WHEN the replay URL is fetched with GET THEN it is refused
    assert staff_client.get(_replay_url("default")).status_code == 405


def test_preview_groups_messages_by_task_and_the_last_exception_of_their_job(staff_client, ops_world):
    # GIVEN in the default DLQ: two jobs.fail messages whose Jobs failed with RuntimeError, one with ValueError,
    # and a jobs.echo message whose task id has no Job
    ids = ops_world.sqs.dead_letter_many("jobs.fail", 3)
    ops_world.sqs.dead_letter("jobs.echo")
    errors = ["RuntimeError: bug #7", "ValueError: bad input", "RuntimeError: bug #7"]
    jobs = [
        Job.objects.create(kind="fail", queue="default", state="failed", task_id=task_id, error=error)
        for task_id, error in zip(ids, errors, strict=True)
    ]
    token = _csrf_token(staff_client)

    # WHEN the operator previews the replay
    report = _post_replay(staff_client, "default", {"dry_run": True}, token).json()

    # THEN the groups are by task and last exception, the largest first, naming their Jobs
    assert [(g["task"], g["error"], g["count"], g["jobs"]) for g in report["groups"]] == [
        ("jobs.fail", "RuntimeError: bug #7", 2, [jobs[0].pk, jobs[2].pk]),
        ("jobs.echo", "no job record", 1, []),
        ("jobs.fail", "ValueError: bad input", 1, [jobs[1].pk]),
    ]
    # AND each group says how long ago its oldest was first sent and how long the DLQ (2 h) keeps it still
    assert all(g["first_sent_age_seconds"] < 60 and 7140 < g["dlq_keeps_seconds"] <= 7200 for g in report["groups"])
    # AND nothing moved
    assert ops_world.sqs.dlq_counts() == (4, 0)
