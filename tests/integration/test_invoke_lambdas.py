"""`make invoke-replay` and `make invoke-alert`: both Lambdas through `osls invoke local` against a running
local stack (here the tests' moto server with the test topology's queues), with no variable but the port."""

from __future__ import annotations

import json
import os
import shutil
import subprocess

import boto3
import pytest

from devstack.processes import REPO_ROOT
from workers.celery_app import app

pytestmark = pytest.mark.integration

INVOKE_TIMEOUT = 240  # npm ci on a first run, then a few seconds


def _make(target: str, endpoint: str, **env: str) -> subprocess.CompletedProcess:
    if missing := [tool for tool in ("node", "npm") if shutil.which(tool) is None]:
        pytest.fail(f"{' and '.join(missing)} not found: the Lambdas run locally through osls (Node.js)", pytrace=False)
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("SQS_", "SNS_", "LOCAL_", "AWS_"))}
    return subprocess.run(
        ["make", "--no-print-directory", target],
        cwd=REPO_ROOT,
        env={**clean, "LOCAL_SQS_PORT": endpoint.rsplit(":", 1)[1], **env},
        capture_output=True,
        text=True,
        timeout=INVOKE_TIMEOUT,
        check=False,
    )


def _result(stdout: str) -> dict:
    """The handler's return value: osls prints it last, as indented JSON."""
    return json.loads(stdout[stdout.rindex("\n{\n") :])


def _unchunked(text: str) -> str:
    """osls relays the Lambda's output as it reads it and ends every read chunk with a newline, so a line the
    handler wrote in several writes (a traceback's last line) may arrive split at any write boundary."""
    return text.replace("\n", "")


def _dead_letter(queues, task_name: str) -> str:
    """A real task message published by the project's producer, moved into the default DLQ as SQS's redrive does."""
    task_id = app.send_task(task_name, kwargs={"job_id": 1}, queue="default").id
    sqs = boto3.client("sqs", endpoint_url=queues.endpoint)
    [message] = sqs.receive_message(QueueUrl=queues.urls["default"], WaitTimeSeconds=5)["Messages"]
    sqs.send_message(QueueUrl=queues.dlq_urls["default"], MessageBody=message["Body"])
    sqs.delete_message(QueueUrl=queues.urls["default"], ReceiptHandle=message["ReceiptHandle"])
    return task_id


def test_make_invoke_alert_then_replay_against_the_local_stack(queues):
    # GIVEN the local stack's queues with one failed task in the default DLQ
    task_id = _dead_letter(queues, "jobs.fail")
    # AND a queue subscribed to the local notification topic (the name bin/invoke-lambda creates)
    sns = boto3.client("sns", endpoint_url=queues.endpoint)
    sqs = boto3.client("sqs", endpoint_url=queues.endpoint)
    topic = sns.create_topic(Name="celery-sqs-local-dlq-notify")["TopicArn"]
    inbox = sqs.create_queue(QueueName="alert-inbox")["QueueUrl"]
    inbox_arn = sqs.get_queue_attributes(QueueUrl=inbox, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=inbox_arn, Attributes={"RawMessageDelivery": "true"})

    # WHEN the alert Lambda runs locally
    alert = _make("invoke-alert", queues.endpoint)

    # THEN it summarised the DLQ and published to the local topic, naming the task
    assert alert.returncode == 0, alert.stdout + alert.stderr
    result = _result(alert.stdout)
    assert result["published"] is True
    [default] = [s for s in result["summaries"] if s["queue"] == "default"]
    assert default["visible"] == 1 and task_id in default["sample_task_ids"]
    [notification] = sqs.receive_message(QueueUrl=inbox, WaitTimeSeconds=5)["Messages"]
    assert "jobs.fail" in notification["Body"]

    # WHEN the replay Lambda runs locally, for real (not a dry run)
    replay = _make("invoke-replay", queues.endpoint, REPLAY_EVENT='{"queue": "default", "dry_run": false}')

    # THEN the message is back in its queue
    assert replay.returncode == 0, replay.stdout + replay.stderr
    report = _result(replay.stdout)
    assert (report["moved"], report["by_task"]) == (1, {"jobs.fail": 1})
    assert queues.depth("default")["visible"] == 1
    assert queues.dlq_depth("default")["visible"] == 0


def test_a_missing_queue_is_an_error_naming_it(queues):
    # GIVEN the local stack WHEN the replay looks for queues under a prefix the stack does not use
    replay = _make("invoke-replay", queues.endpoint, LOCAL_SQS_QUEUE_PREFIX="celery-sqs-dev-")
    # THEN it fails, naming the queue it looked for
    assert replay.returncode != 0
    output = _unchunked(replay.stdout + replay.stderr)
    assert "QueueNotFoundError: queue 'celery-sqs-dev-" in output
    assert "does not exist at " + queues.endpoint in output


def test_no_local_stack_is_a_clear_error(unreachable_endpoint):
    # GIVEN nothing listening WHEN the alert is invoked THEN it says to start the local stack
    alert = _make("invoke-alert", unreachable_endpoint)
    assert alert.returncode != 0
    assert "start `make run` in another terminal first" in alert.stderr
