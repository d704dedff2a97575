"""Fixtures of the ops tests: moto in-process holding the test topology's queues and DLQs (with real Celery
messages, from the DLQ Lambda tests' SqsWorld), the emulator's metrics, and the settings pointed at moto."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any

import boto3
import pytest
from django.test import Client
from moto.sqs.models import Queue, SQSBackend

from devstack import sqs_emulator
from tests.unit.lambdas.conftest import REGION, FastSqs, SqsWorld, sqs_world  # noqa: F401 (a fixture)


@dataclass
class OpsWorld:
    """The queues in moto (SqsWorld) and the CloudWatch client that reads what the emulator publishes."""

    sqs: SqsWorld
    cloudwatch: Any

    def publish_metrics(self) -> None:
        """One period of the emulator's AWS/SQS metrics, as the local stack writes them."""
        sqs_emulator.publish_metrics()


@pytest.fixture
def ops_world(sqs_world, settings, monkeypatch) -> OpsWorld:  # noqa: F811
    """The ops code's clients talk to moto; the emulator counts deletes and sends (undone after the test)."""
    from api.ops import aws

    settings.SQS_ENDPOINT_URL = None  # moto intercepts AWS's own endpoints only
    settings.CLOUDWATCH_ENDPOINT_URL = None
    monkeypatch.setattr(Queue, "delete_message", Queue.delete_message)
    monkeypatch.setattr(SQSBackend, "send_message", SQSBackend.send_message)
    monkeypatch.setattr(Queue, "add_message", Queue.add_message)
    sqs_emulator.install_counters()
    real = aws.sqs_client
    # No 1 s long poll at the end of every replay run (see FastSqs).
    monkeypatch.setattr(aws, "sqs_client", lambda: FastSqs(real()))
    return OpsWorld(sqs=sqs_world, cloudwatch=boto3.client("cloudwatch", region_name=REGION))


class SpyClient:
    """Delegates to a boto3 client and counts the operations called."""

    def __init__(self, client):
        self.client, self.calls = client, Counter()

    def __getattr__(self, name):
        self.calls[name] += 1
        return getattr(self.client, name)


@pytest.fixture
def staff(django_user_model):
    return django_user_model.objects.create_user("operator", password="pw", is_staff=True)


@pytest.fixture
def staff_client(staff) -> Client:
    """A logged-in staff client that enforces CSRF as a browser session would."""
    client = Client(enforce_csrf_checks=True)
    client.force_login(staff)
    return client
