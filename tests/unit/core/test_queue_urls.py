"""A missing queue is an error that names it (and the prefix), not a raw QueueDoesNotExist."""

from __future__ import annotations

import boto3
import pytest
from moto import mock_aws

from core.dlq.replay import replay_dlq
from core.dlq.request import parse_replay_request
from core.dlq.summary import summarise_dlq
from core.queue_urls import QueueNotFoundError, queue_url
from core.topology import load_topology

REGION = "us-east-1"


@pytest.fixture
def sqs():
    with mock_aws():
        yield boto3.client("sqs", region_name=REGION)


def test_an_existing_queue_gives_its_url(sqs):
    url = sqs.create_queue(QueueName="celery-sqs-dev-default")["QueueUrl"]
    assert queue_url(sqs, "celery-sqs-dev-default", prefix="celery-sqs-dev-") == url


def test_a_missing_queue_is_named_with_the_prefix(sqs):
    # GIVEN no queue WHEN its URL is asked for THEN the error names the queue and the prefix
    with pytest.raises(QueueNotFoundError) as error:
        queue_url(sqs, "celery-sqs-dev-default-dlq", prefix="celery-sqs-dev-")
    assert "queue 'celery-sqs-dev-default-dlq' does not exist" in str(error.value)
    assert "SQS_QUEUE_PREFIX='celery-sqs-dev-'" in str(error.value)


def test_replay_and_alert_name_the_missing_queue(sqs):
    # GIVEN the local stack's queues (no prefix) but a Lambda told the deployed prefix
    topology = load_topology()
    for spec in topology.queues.values():
        sqs.create_queue(QueueName=spec.sqs_name(""))
        sqs.create_queue(QueueName=spec.dlq_sqs_name(""))
    request = parse_replay_request({"queue": "default"}, topology)

    # WHEN the replay and the alert look for their queues THEN each error names the queue it looked for
    spec = topology.queue("default")
    with pytest.raises(QueueNotFoundError, match=f"queue 'celery-sqs-dev-{spec.name}' does not exist"):
        replay_dlq(request, sqs=sqs, topology=topology, prefix="celery-sqs-dev-")
    with pytest.raises(QueueNotFoundError, match=f"queue 'celery-sqs-dev-{spec.dlq}' does not exist"):
        summarise_dlq(sqs, topology, "default", prefix="celery-sqs-dev-")
