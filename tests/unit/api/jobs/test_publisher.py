"""The publishing connection: kombu applies the budget's client-config to the client that sends, and a publish
on a new connection makes the two calls the budget arithmetic counts (contract tests for a kombu upgrade)."""

from __future__ import annotations

import boto3
import pytest
from botocore.client import BaseClient
from moto import mock_aws

from api.jobs import publisher
from api.jobs.models import Job
from api.jobs.publish_budget import CALLS_PER_PUBLISH
from workers.celery_config import LOCAL_ACCOUNT_ID, BrokerEnv, transport_options

REGION = "us-east-1"


@pytest.fixture
def moto_sqs(settings, monkeypatch):
    """The Celery app's broker swapped for moto's in-process SQS, with the test topology's queues."""
    from workers.celery_app import app

    with mock_aws():
        client = boto3.client("sqs", region_name=REGION)
        for q in settings.QUEUE_TOPOLOGY.queues.values():
            client.create_queue(QueueName=q.name)
        options = transport_options(settings.QUEUE_TOPOLOGY, BrokerEnv(account_id=LOCAL_ACCOUNT_ID, region=REGION))
        monkeypatch.setitem(app.conf, "broker_url", "sqs://")
        monkeypatch.setitem(app.conf, "broker_transport_options", options)
        yield client


def test_the_sending_client_has_the_budget_timeouts_and_no_retry(moto_sqs, settings):
    # GIVEN the publisher's producer pool (its own connection, the budget's client-config)
    budget = settings.PUBLISH_BUDGET
    # WHEN the boto3 client kombu sends with is built for a queue
    with publisher._producer_pool().acquire(block=True, timeout=5) as producer:
        client = producer.channel.sqs(queue="default")
    # THEN it carries the budget's timeouts and a single attempt (kombu: Channel._new_boto_client)
    assert client.meta.config.connect_timeout == budget.connect_timeout
    assert client.meta.config.read_timeout == budget.read_timeout
    assert client.meta.config.retries["total_max_attempts"] == 1


def test_the_worker_connection_keeps_its_own_longer_read_timeout(moto_sqs):
    # GIVEN the app's ordinary connection (the worker's), untouched by the publisher
    from workers.celery_app import app

    with app.connection_for_write() as conn:
        # WHEN its sending client is built THEN the read timeout still outlasts the 20 s long poll
        assert conn.default_channel.sqs(queue="default").meta.config.read_timeout == 30


def test_a_publish_on_a_new_connection_makes_the_calls_the_budget_counts(moto_sqs, db, monkeypatch):
    # GIVEN a Job and a count of every SQS call
    calls: list[str] = []
    real = BaseClient._make_api_call

    def counting(self, operation, params):
        calls.append(operation)
        return real(self, operation, params)

    monkeypatch.setattr(BaseClient, "_make_api_call", counting)
    job = Job.objects.create(kind="echo", payload={"message": "hi"}, queue="default")
    # WHEN it is published twice on the publisher's fresh pool
    publisher.send_job_task(job)
    first = list(calls)
    publisher.send_job_task(job)
    # THEN the first publish declared the queue and sent (the budget's CALLS_PER_PUBLISH), the second only sent
    assert first == ["GetQueueAttributes", "SendMessage"]
    assert len(first) == CALLS_PER_PUBLISH
    assert calls[len(first) :] == ["SendMessage"]
