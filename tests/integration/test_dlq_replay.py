"""End to end: a failing task lands in the DLQ, a dry run reports it, the fix ships, a replay runs it."""

from __future__ import annotations

import io
import json
from types import SimpleNamespace

import pytest
from django.core.management import call_command

from core.envelope import decode_sqs_body
from devstack import processes
from lambdas.dlq_replay.handler import handler as replay_handler
from tests.integration.conftest import post_job, wait_for_job

pytestmark = pytest.mark.integration


def _context():
    return SimpleNamespace(
        function_name="celery-sqs-test-dlqReplay",
        memory_limit_in_mb=256,
        invoked_function_arn="arn:aws:lambda:us-east-1:123456789012:function:celery-sqs-test-dlqReplay",
        aws_request_id="e2e",
        get_remaining_time_in_millis=lambda: 300_000,
    )


def _dry_run(queue: str) -> dict:
    out = io.StringIO()
    call_command("dlq", "replay", "--queue", queue, stdout=out)
    return json.loads(out.getvalue())


def test_failed_task_is_replayed_after_the_fix(client, start_worker, queues):
    # GIVEN a worker running code in which `fail` always fails, and a job that reached the default DLQ
    broken = start_worker()
    response = post_job(client, kind="fail", payload={"message": "bug #42"})
    job_id, task_id = response.json()["job_id"], response.json()["task_id"]
    processes.wait_for(lambda: queues.dlq_depth("default")["visible"] == 1, timeout=90, what="the DLQ")
    attempts_before = wait_for_job(job_id, {"dead_lettered"}).attempts

    # WHEN an operator rehearses the replay locally (dry run, the default)
    report = _dry_run("default")

    # THEN it reports the task and moves nothing
    assert report["dry_run"] is True
    assert report["matched"] == 1 and report["moved"] == 0
    assert report["by_task"] == {"jobs.fail": 1}
    assert queues.dlq_depth("default")["visible"] == 1
    assert queues.drained("default")

    # WHEN the fix is deployed (a worker with the failure fixed replaces the broken one)
    processes.stop(broken.proc, grace=10)
    start_worker(env={"DEMO_FAILURES_FIXED": "true"})
    # AND the replay Lambda is invoked for real, resetting retries
    result = replay_handler({"queue": "default", "dry_run": False, "reset_retries": True}, _context())

    # THEN it moved the one message, keeping its task id
    assert result["moved"] == 1 and result["failed"] == [] and result["not_deleted"] == []
    # AND the worker runs it to success, once more
    job = wait_for_job(job_id, {"succeeded"})
    assert job.result == {"fixed": True, "message": "bug #42"}
    assert job.task_id == task_id
    assert job.attempts == attempts_before + 1
    assert job.replays == 1  # the worker read the replay Lambda's counter
    # AND the DLQ and the queue are empty
    processes.wait_for(lambda: queues.total("default") == 0, timeout=15, what="the queue to drain")
    assert sum(queues.dlq_depth("default").values()) == 0


def test_replay_keeps_what_it_was_not_asked_to_move(client, transactional_db, queues):
    # GIVEN a Celery message and a foreign message in the default DLQ (no worker running)
    queues.send_raw("default", "not celery")
    start = queues.dlq_depth("default")["visible"]
    # (put both straight in the DLQ, as SQS's redrive would)
    from devstack.queues import sqs_client

    sqs = sqs_client(queues.endpoint)
    [foreign] = sqs.receive_message(QueueUrl=queues.urls["default"], MaxNumberOfMessages=1)["Messages"]
    sqs.send_message(QueueUrl=queues.dlq_urls["default"], MessageBody=foreign["Body"])
    sqs.delete_message(QueueUrl=queues.urls["default"], ReceiptHandle=foreign["ReceiptHandle"])
    post_job(client, kind="echo", payload={"message": "dead"})
    [celery] = sqs.receive_message(QueueUrl=queues.urls["default"], MaxNumberOfMessages=1)["Messages"]
    sqs.send_message(QueueUrl=queues.dlq_urls["default"], MessageBody=celery["Body"])
    sqs.delete_message(QueueUrl=queues.urls["default"], ReceiptHandle=celery["ReceiptHandle"])
    assert queues.dlq_depth("default")["visible"] == start + 2

    # WHEN a replay is asked only for another task name
    out = io.StringIO()
    call_command("dlq", "replay", "--queue", "default", "--execute", "--task-name", "jobs.sleep", stdout=out)
    report = json.loads(out.getvalue())

    # THEN nothing moves, both are reported and visible again at once
    assert report["moved"] == 0 and report["skipped"] == 1 and report["undecodable"] == 1
    assert queues.dlq_depth("default") == {"visible": 2, "in_flight": 0, "delayed": 0}
    bodies = [m["Body"] for m in queues.receive_dlq("default")]
    assert "not celery" in bodies
    assert any(decode_sqs_body(b).task_name == "jobs.echo" for b in bodies if b != "not celery")
