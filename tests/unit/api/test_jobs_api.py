"""Unit tests of the jobs API (POST /api/jobs, GET /api/jobs/<id>) and GET /healthz.

Tests that need no broker point the Celery app at a free port where nothing listens (`no_broker`); the
integration suite's moto server may be running at the test settings' endpoint. Tests that need SQS swap
the Celery app's broker for moto's in-process one (`moto_broker`).
"""

from __future__ import annotations

import base64
import json
from datetime import datetime

import boto3
import pytest
from moto import mock_aws
from moto.sqs.models import sqs_backends

from api.jobs.models import Job, JobState
from api.jobs.services import job_submit
from workers.celery_config import LOCAL_ACCOUNT_ID, BrokerEnv, transport_options

REGION = "us-east-1"


def _post(client, body):
    data = body if isinstance(body, str | bytes) else json.dumps(body)
    return client.post("/api/jobs", data=data, content_type="application/json")


@pytest.fixture
def moto_broker(settings, monkeypatch):
    """The Celery app publishing to moto's in-process SQS, with the test topology's queues created."""
    from workers.celery_app import app

    topology = settings.QUEUE_TOPOLOGY
    with mock_aws():
        client = boto3.client("sqs", region_name=REGION)
        urls = {key: client.create_queue(QueueName=q.name)["QueueUrl"] for key, q in topology.queues.items()}
        options = transport_options(topology, BrokerEnv(account_id=LOCAL_ACCOUNT_ID, region=REGION))
        monkeypatch.setitem(app.conf, "broker_url", "sqs://")
        monkeypatch.setitem(app.conf, "broker_transport_options", options)
        monkeypatch.setattr(app, "_pool", None)
        monkeypatch.setattr(app.amqp, "_producer_pool", None)
        # monkeypatch restores the app's no-broker config and pools afterwards
        yield client, urls


@pytest.fixture
def no_broker(settings, monkeypatch):
    """The Celery app publishing to an SQS endpoint where nothing listens."""
    from devstack.processes import free_port
    from workers.celery_app import app
    from workers.celery_config import broker_url

    broker = BrokerEnv(endpoint_url=f"http://127.0.0.1:{free_port()}", region=REGION)
    monkeypatch.setitem(app.conf, "broker_url", broker_url(broker))
    monkeypatch.setitem(app.conf, "broker_transport_options", transport_options(settings.QUEUE_TOPOLOGY, broker))
    monkeypatch.setattr(app, "_pool", None)
    monkeypatch.setattr(app.amqp, "_producer_pool", None)
    yield


def _queue_counts(client, url: str) -> tuple[int, int]:
    attrs = client.get_queue_attributes(
        QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesDelayed"]
    )["Attributes"]
    return int(attrs["ApproximateNumberOfMessages"]), int(attrs["ApproximateNumberOfMessagesDelayed"])


# --- validation: 400, nothing stored ---------------------------------------------------------------

INVALID = [
    pytest.param("{not json", "not valid JSON", id="body-not-json"),
    pytest.param(b"\xff\xfe", "not valid JSON", id="body-not-utf8"),
    pytest.param([{"kind": "echo"}], "must be a JSON object", id="body-a-list"),
    pytest.param(
        {"kind": "echo", "payload": {"message": "x"}, "priority": 1},
        "unknown field(s) ['priority']",
        id="unknown-top-level-field",
    ),
    pytest.param({"kind": "explode", "payload": {}}, "unknown kind 'explode'", id="unknown-kind"),
    pytest.param({"payload": {}}, "unknown kind None", id="missing-kind"),
    pytest.param({"kind": ["echo"], "payload": {}}, "unknown kind ['echo']", id="kind-not-a-string"),
    pytest.param(
        {"kind": "echo", "payload": "hi"}, "payload for 'echo' must be a JSON object", id="payload-not-object"
    ),
    pytest.param(
        {"kind": "echo", "payload": {"message": "x", "loud": True}},
        "unknown field(s) ['loud']",
        id="unknown-payload-field",
    ),
    pytest.param({"kind": "echo", "payload": {}}, "needs field 'message'", id="missing-required-field"),
    pytest.param({"kind": "echo"}, "needs field 'message'", id="missing-payload"),
    pytest.param(
        {"kind": "sleep", "payload": {"seconds": "x"}},
        "payload.seconds must be an integer or a number",
        id="wrong-type",
    ),
    pytest.param({"kind": "sleep", "payload": {"seconds": True}}, "payload.seconds must be", id="bool-not-number"),
    pytest.param('{"kind": "sleep", "payload": {"seconds": Infinity}}', "Infinity is not a JSON number", id="infinity"),
    pytest.param(
        {"kind": "flaky", "payload": {"failures": 1.5}},
        "payload.failures must be an integer",
        id="float-not-int",
    ),
    pytest.param(
        {"kind": "sleep", "payload": {"seconds": 3601}},
        "between 0 and 3600, got 3601",
        id="out-of-range-high",
    ),
    pytest.param({"kind": "flaky", "payload": {"failures": -1}}, "between 0 and 10, got -1", id="out-of-range-low"),
    pytest.param({"kind": "fail", "payload": {"message": "m" * 1001}}, "longer than 1000 characters", id="too-long"),
    pytest.param(
        {"kind": "echo", "payload": {"message": "x"}, "queue": "urgent"},
        "unknown queue 'urgent'",
        id="unknown-queue",
    ),
    pytest.param(
        {"kind": "echo", "payload": {"message": "x"}, "countdown": -1},
        "non-negative integer",
        id="negative-countdown",
    ),
    pytest.param(
        {"kind": "echo", "payload": {"message": "x"}, "countdown": "5"},
        "non-negative integer",
        id="string-countdown",
    ),
    pytest.param(
        {"kind": "echo", "payload": {"message": "x"}, "countdown": 1.5},
        "non-negative integer",
        id="float-countdown",
    ),
    pytest.param(
        {"kind": "echo", "payload": {"message": "x"}, "countdown": True},
        "non-negative integer",
        id="bool-countdown",
    ),
    pytest.param(
        {"kind": "echo", "payload": {"message": "x"}, "countdown": 2701},
        "a delay of 2701 s is longer than the queue accepts (2700 s: its message retention of 3600 s less 900 s)",
        id="countdown-over-retention-bound",
    ),
    pytest.param(
        {"kind": "echo", "payload": {"message": "x"}, "countdown": 3600, "queue": "low_priority"},
        "refused to publish to queue 'low_priority'",
        id="countdown-of-the-whole-retention",
    ),
]


@pytest.mark.parametrize("body,expected", INVALID)
def test_invalid_post_is_400_and_stores_nothing(client, db, body, expected):
    # GIVEN an invalid request body
    # WHEN it is posted
    response = _post(client, body)
    # THEN 400 with a message saying what is wrong, and no Job was stored
    assert response.status_code == 400
    assert response["Content-Type"] == "application/json"
    assert expected in response.json()["error"]
    assert Job.objects.count() == 0


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"kind": "sleep", "payload": {"seconds": "3"}}, "payload.seconds"),
        ({"kind": "flaky", "payload": {"failures": True}}, "payload.failures"),
        ({"kind": "echo", "payload": {"message": "x"}, "countdown": "5"}, "countdown"),
        ({"kind": "explode", "payload": {}}, "kind"),
        ({"kind": "echo", "payload": {"message": "x"}, "queue": "urgent"}, "queue"),
    ],
)
def test_a_400_names_the_field_to_change(client, db, body, field):
    # GIVEN a body with one wrong field
    # WHEN it is posted
    response = _post(client, body)
    # THEN the JSON error names that field beside the message
    assert response.status_code == 400
    assert response.json()["field"] == field
    assert Job.objects.count() == 0


def test_nan_is_refused(client, db):
    # GIVEN a body using Python's non-standard NaN constant
    # WHEN posted
    response = _post(client, '{"kind": "sleep", "payload": {"seconds": NaN}}')
    # THEN it is refused and nothing is stored
    assert response.status_code == 400
    assert Job.objects.count() == 0


def test_empty_body_is_400(client, db):
    # GIVEN an empty body
    # WHEN posted THEN it is refused as not an object
    response = client.post("/api/jobs", data=b"", content_type="application/json")
    assert response.status_code == 400
    assert "must be a JSON object" in response.json()["error"]


def test_get_on_create_endpoint_not_allowed(client, db):
    # GIVEN the create endpoint
    # WHEN read with GET THEN 405
    assert client.get("/api/jobs").status_code == 405


# --- publishing with no broker: 202 pending, for the relay ---------------------------------------


def test_valid_post_without_broker_is_202_pending_with_the_error(client, transactional_db, no_broker):
    # GIVEN no broker listening (a free port)
    # WHEN a valid job is posted
    response = _post(client, {"kind": "echo", "payload": {"message": "hi"}})
    # THEN 202: stored, pending, with the attempt and why it is not published yet
    assert response.status_code == 202
    body = response.json()
    assert body["state"] == "pending"
    assert body["publish_attempts"] == 1
    assert "Could not connect to the endpoint URL" in body["publish_error"]
    assert "the relay will publish it" in body["detail"]
    # AND the Job waits for the relay: not finished, a next attempt scheduled
    job = Job.objects.get()
    assert job.state == JobState.PENDING
    assert job.publish_error == body["publish_error"]
    assert job.next_publish_at is not None
    assert job.finished_at is None
    assert job.payload == {"message": "hi"}


def test_oversized_echo_without_broker_is_202_pending(client, transactional_db, no_broker):
    # GIVEN no broker, and an echo of 200 000 characters (over 256 KiB once base64-encoded twice)
    # WHEN it is posted
    response = _post(client, {"kind": "echo", "payload": {"message": "x" * 200_000}})
    # THEN pending: kombu declares the queue (GetQueueAttributes) before the transport's _put runs the size
    # guard, so the unreachable broker comes first; the relay's publish will find it too large (refused)
    assert response.status_code == 202
    assert Job.objects.get().state == JobState.PENDING


def test_outer_transaction_defers_publish(db, django_capture_on_commit_callbacks, no_broker):
    # GIVEN an outer transaction (the `db` fixture's)
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        # WHEN a job is submitted inside it
        submission = job_submit(kind="echo", payload={"message": "hi"})
        # THEN nothing is published yet: no attempt, the Job pending
        assert submission.attempt is None
        assert submission.job.state == JobState.PENDING
    # AND once the transaction commits the publish runs (and fails: no broker), leaving it to the relay
    assert len(callbacks) == 1
    job = Job.objects.get()
    assert job.state == JobState.PENDING
    assert job.publish_error


def test_database_down_is_503_json(client, db, monkeypatch):
    # GIVEN a database that fails when the Job is stored
    from django.db import OperationalError

    def down(*args, **kwargs):
        raise OperationalError("connection refused")

    monkeypatch.setattr(Job.objects, "create", down)
    # WHEN a job is posted
    response = _post(client, {"kind": "echo", "payload": {"message": "hi"}})
    # THEN 503 JSON: nothing was stored, the client should try again
    assert response.status_code == 503
    assert response["Content-Type"] == "application/json"
    assert "was not stored" in response.json()["error"]


def test_an_unexpected_error_under_api_is_a_json_500(db, monkeypatch):
    # GIVEN a view that raises something nobody expected
    from django.test import Client

    def boom(*args, **kwargs):
        raise RuntimeError("unexpected")

    monkeypatch.setattr("api.jobs.views.job_submit", boom)
    # WHEN a job is posted (the client does not re-raise, as gunicorn would not)
    response = _post(Client(raise_request_exception=False), {"kind": "echo", "payload": {"message": "hi"}})
    # THEN a JSON 500, not Django's HTML page
    assert response.status_code == 500
    assert response["Content-Type"] == "application/json"
    assert "internal error" in response.json()["error"]


# --- cancel ----------------------------------------------------------------------------------------


def test_a_pending_job_can_be_cancelled(client, transactional_db, no_broker):
    # GIVEN a job not published yet (no broker)
    job_id = _post(client, {"kind": "echo", "payload": {"message": "hi"}}).json()["job_id"]
    # WHEN it is cancelled
    response = client.post(f"/api/jobs/{job_id}/cancel")
    # THEN 200, cancelled, and the relay will never publish it
    assert response.status_code == 200
    assert response.json()["state"] == "cancelled"
    job = Job.objects.get(pk=job_id)
    assert job.state == JobState.CANCELLED
    assert job.next_publish_at is None
    assert job.finished_at is not None


def test_a_queued_job_can_be_cancelled_and_a_running_one_cannot(client, transactional_db, moto_broker):
    # GIVEN a job SQS took, and one a worker started
    queued = _post(client, {"kind": "echo", "payload": {"message": "hi"}}).json()["job_id"]
    running = _post(client, {"kind": "echo", "payload": {"message": "hi"}}).json()["job_id"]
    Job.objects.filter(pk=running).update(state=JobState.RUNNING)
    # WHEN each is cancelled
    cancelled, refused = client.post(f"/api/jobs/{queued}/cancel"), client.post(f"/api/jobs/{running}/cancel")
    # THEN the queued one is cancelled (its worker will delete it unrun)
    assert cancelled.status_code == 200 and cancelled.json()["state"] == "cancelled"
    # AND the running one is 409 with a clear JSON error, unchanged
    assert refused.status_code == 409
    assert refused["Content-Type"] == "application/json"
    assert refused.json()["error"] == (
        f"job {running} is running: only a job that has not started (delayed, pending, queued, retrying) can be "
        "cancelled"
    )
    assert refused.json()["job"]["state"] == "running"
    assert Job.objects.get(pk=running).state == JobState.RUNNING


def test_cancelling_a_cancelled_job_again_answers_it_as_it_is(client, db):
    # GIVEN a cancelled job WHEN it is cancelled again THEN 200, still cancelled (a retried request is harmless)
    job = Job.objects.create(kind="echo", payload={}, queue="default", state=JobState.CANCELLED)
    response = client.post(f"/api/jobs/{job.pk}/cancel")
    assert response.status_code == 200 and response.json()["state"] == "cancelled"


def test_cancel_of_a_missing_job_is_404(client, db):
    # GIVEN no jobs WHEN one is cancelled THEN 404 JSON
    response = client.post("/api/jobs/999/cancel")
    assert response.status_code == 404
    assert response.json() == {"error": "no job 999"}


# --- publishing to moto's in-process SQS -----------------------------------------------------------


def test_valid_post_is_202_and_queued(client, transactional_db, moto_broker, settings):
    # GIVEN SQS (moto) reachable
    sqs, urls = moto_broker
    # WHEN a valid job is posted
    response = _post(client, {"kind": "echo", "payload": {"message": "hi"}})
    # THEN 202 with the ids, the Job queued, and one task message on `default`
    assert response.status_code == 202, response.json()
    body = response.json()
    job = Job.objects.get()
    assert body == {"job_id": job.pk, "task_id": job.task_id, "state": "queued"}
    assert job.state == JobState.QUEUED
    assert job.published_at is not None
    assert _queue_counts(sqs, urls["default"]) == (1, 0)
    [message] = sqs_backends[LOCAL_ACCOUNT_ID][REGION].queues[settings.QUEUE_TOPOLOGY.queue("default").name]._messages
    headers = json.loads(base64.b64decode(message.body))["headers"]
    assert headers["task"] == "jobs.echo"
    assert headers["id"] == job.task_id


def test_post_with_queue_and_countdown_is_delayed_by_sqs(client, transactional_db, moto_broker):
    # GIVEN SQS (moto) reachable
    sqs, urls = moto_broker
    # WHEN a job is posted to high_priority with countdown 5
    response = _post(client, {"kind": "sleep", "payload": {"seconds": 1}, "queue": "high_priority", "countdown": 5})
    # THEN it is accepted and SQS holds it as delayed on that queue
    assert response.status_code == 202
    job = Job.objects.get()
    assert job.countdown == 5
    assert 4 <= (job.due_at - job.created_at).total_seconds() <= 6
    assert _queue_counts(sqs, urls["high_priority"]) == (0, 1)
    assert _queue_counts(sqs, urls["default"]) == (0, 0)


def test_countdown_over_900_is_accepted_and_keeps_its_eta(client, transactional_db, moto_broker, settings):
    # GIVEN SQS (moto) reachable, and the default queue's bound: retention 3600 s less 900 s
    sqs, urls = moto_broker
    # WHEN a job asks for 2700 s, longer than SQS holds a message
    response = _post(client, {"kind": "echo", "payload": {"message": "later"}, "countdown": 2700})
    # THEN it is accepted: SQS holds the first 900 s, and the eta header stays for the worker's hops
    assert response.status_code == 202, response.json()
    assert _queue_counts(sqs, urls["default"]) == (0, 1)
    [message] = sqs_backends[LOCAL_ACCOUNT_ID][REGION].queues[settings.QUEUE_TOPOLOGY.queue("default").name]._messages
    assert round((message.delayed_until - message.sent_timestamp) / 1000) == 900
    headers = json.loads(base64.b64decode(message.body))["headers"]
    eta = datetime.fromisoformat(headers["eta"])
    assert 2690 < (eta - Job.objects.get().created_at).total_seconds() < 2710


def test_newsletter_kind_routes_to_low_priority(client, transactional_db, moto_broker):
    # GIVEN SQS (moto) reachable
    sqs, urls = moto_broker
    # WHEN a newsletter job is posted without a queue
    response = _post(client, {"kind": "newsletter_batching", "payload": {"subject": "Hello"}})
    # THEN the topology routes it to low_priority
    assert response.status_code == 202
    assert Job.objects.get().queue == "low_priority"
    assert _queue_counts(sqs, urls["low_priority"]) == (1, 0)


def test_oversized_echo_is_413_and_nothing_sent(client, transactional_db, moto_broker):
    # GIVEN SQS (moto) reachable and an echo of 200 000 characters (the most the API takes)
    sqs, urls = moto_broker
    # WHEN it is posted
    response = _post(client, {"kind": "echo", "payload": {"message": "x" * 200_000}})
    # THEN 413 naming the size limit, the Job kept as refused, and the queue empty
    assert response.status_code == 413
    body = response.json()
    assert "262144 bytes" in body["error"]
    assert body["job"]["state"] == "refused"
    job = Job.objects.get()
    assert job.state == JobState.REFUSED
    assert "262144 bytes" in job.error
    assert _queue_counts(sqs, urls["default"]) == (0, 0)


def test_get_job_after_post(client, transactional_db, moto_broker):
    # GIVEN a job posted to moto
    job_id = _post(client, {"kind": "flaky", "payload": {"failures": 2}}).json()["job_id"]
    # WHEN it is read back
    response = client.get(f"/api/jobs/{job_id}")
    # THEN 200 with its fields
    assert response.status_code == 200
    body = response.json()
    assert body["id"] == job_id
    assert body["kind"] == "flaky"
    assert body["payload"] == {"failures": 2}
    assert body["state"] == "queued"
    assert body["attempts"] == 0


# --- reads -----------------------------------------------------------------------------------------


def test_get_missing_job_is_404_json(client, db):
    # GIVEN no jobs
    # WHEN a job is read
    response = client.get("/api/jobs/999")
    # THEN 404 with a JSON error naming it
    assert response.status_code == 404
    assert response["Content-Type"] == "application/json"
    assert response.json() == {"error": "no job 999"}


def test_healthz(client, db):
    # GIVEN a working database
    # WHEN the health check is read
    response = client.get("/healthz")
    # THEN 200 ok
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}
