"""Large tasks through real workers: a 1 MiB SQS message as it is, a 3 MiB body through S3 (the claim check) and
back, and a claim check whose S3 object is gone, which ends in the DLQ with a clear error."""

from __future__ import annotations

import time

import boto3
import pytest
from botocore.config import Config
from django.conf import settings

from api.jobs.models import Job
from core.envelope import decode_sqs_body
from core.topology import SQS_MAX_MESSAGE_BYTES
from devstack import processes
from devstack.queues import sqs_client
from tests.integration.conftest import wait_for_job
from workers.celery_app import app

pytestmark = pytest.mark.integration

MIB = 1_048_576


def _s3():
    path_style = Config(s3={"addressing_style": "path"})
    return boto3.client("s3", endpoint_url=settings.SQS_ENDPOINT_URL, region_name="us-east-1", config=path_style)


def _objects() -> list[str]:
    listed = _s3().list_objects_v2(Bucket=settings.SQS_BROKER.claim_check_bucket)
    return [item["Key"] for item in listed.get("Contents", [])]


def _peek(queues, key: str) -> dict:
    """The queue's one message, left visible (a receive with visibility 0)."""
    [message] = sqs_client(queues.endpoint).receive_message(
        QueueUrl=queues.urls[key], MaxNumberOfMessages=10, VisibilityTimeout=0, WaitTimeSeconds=1
    )["Messages"]
    return message


def _echo(queue: str, message: str) -> Job:
    job = Job.objects.create(kind="echo", payload={}, queue=queue)
    app.send_task("jobs.echo", kwargs={"job_id": job.id, "message": message}, task_id=str(job.task_id), queue=queue)
    return job


def test_a_1_mib_message_runs_end_to_end(start_worker, queues):
    # GIVEN a queue with SQS's 1 MiB limit (the default) and no claim check
    assert settings.QUEUE_TOPOLOGY.queue("low_priority").max_message_bytes == SQS_MAX_MESSAGE_BYTES
    text = "m" * 585_000  # ~1.78x after kombu's two base64 passes: just under 1 MiB

    # WHEN a task with that payload is published
    job = _echo("low_priority", text)

    # THEN SQS holds it as one message of more than 1 000 000 bytes (no more than 1 MiB)
    body = _peek(queues, "low_priority")["Body"]
    assert 1_000_000 < len(body) <= SQS_MAX_MESSAGE_BYTES
    # AND a real worker runs it with the whole payload, and the queue empties
    start_worker()
    job = wait_for_job(job.id, {"succeeded"}, timeout=60)
    assert job.result == {"message": text}
    assert queues.drained("low_priority")


def test_a_3_mib_body_goes_through_s3_and_its_object_is_gone_afterwards(start_worker, queues):
    # GIVEN a queue whose claim check takes bodies up to 4 MiB past its 1 MiB message limit
    spec = settings.QUEUE_TOPOLOGY.queue("high_priority")
    assert spec.max_message_bytes == MIB and spec.claim_check_max_bytes == 4 * MIB
    text = "c" * (3 * MIB)

    # WHEN a task with a 3 MiB payload is published
    job = _echo("high_priority", text)

    # THEN its body is one S3 object, and the SQS message is small and still names the task
    [key] = _objects()
    message = _peek(queues, "high_priority")
    assert len(message["Body"]) < 8_192
    envelope = decode_sqs_body(message["Body"])
    assert (envelope.task_name, envelope.task_id) == ("jobs.echo", str(job.task_id))
    assert envelope.claim_check["key"] == key and envelope.claim_check["size"] > 3 * MIB
    # AND a real worker runs it with the whole payload
    start_worker()
    job = wait_for_job(job.id, {"succeeded"}, timeout=60)
    assert job.result == {"message": text}
    # AND the message and the S3 object are gone
    assert queues.drained("high_priority")
    processes.wait_for(lambda: not _objects(), timeout=10, interval=0.2, what="the claim-check object to be deleted")


def test_a_missing_s3_object_ends_in_the_dlq_with_a_clear_error(start_worker, queues):
    # GIVEN a claim-checked task whose S3 object is gone (deleted by hand, or expired)
    job = _echo("high_priority", "g" * (2 * MIB))
    [key] = _objects()
    _s3().delete_object(Bucket=settings.SQS_BROKER.claim_check_bucket, Key=key)

    # WHEN a real worker receives it
    started = time.monotonic()
    worker = start_worker()

    # THEN the redrive policy moves it to the DLQ (never acked, never run), with its task name still readable
    processes.wait_for(
        lambda: queues.dlq_depth("high_priority")["visible"] == 1, timeout=90, interval=0.5, what="the DLQ"
    )
    [dead] = queues.receive_dlq("high_priority")
    envelope = decode_sqs_body(dead["Body"])
    assert (envelope.task_name, envelope.task_id) == ("jobs.echo", str(job.task_id))
    assert queues.total("high_priority") == 0
    # AND the worker logged an ERROR naming the task, its id and the key, and keeps running
    log = worker.log()
    assert f"claim check: cannot read the body of task jobs.echo id {job.task_id}" in log
    assert key in log and "NoSuchKey" in log
    assert worker.alive()
    job.refresh_from_db()
    assert job.state != "succeeded" and job.attempts == 0
    print(f"moved to the DLQ {time.monotonic() - started:.1f} s after the worker started")
