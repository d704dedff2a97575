"""The AWS clients of the ops pages and commands, built from the settings (the local emulator or AWS)."""

from __future__ import annotations

import threading

import boto3
from botocore.config import Config
from django.conf import settings

# A page that polls must answer even when an endpoint does not: fail fast, show the error, try next time.
_CONFIG = Config(connect_timeout=3, read_timeout=10, retries={"max_attempts": 2, "mode": "standard"})
# Clients are thread-safe, making them from boto3's default session is not: the page reads on a reader thread
# (api/ops/read_budget.py) while a request may build its own.
_client_lock = threading.Lock()


def sqs_client():
    with _client_lock:
        return boto3.client(
            "sqs", endpoint_url=settings.SQS_ENDPOINT_URL, region_name=settings.SQS_BROKER.region, config=_CONFIG
        )


def cloudwatch_client():
    with _client_lock:
        return boto3.client(
            "cloudwatch",
            endpoint_url=settings.CLOUDWATCH_ENDPOINT_URL,
            region_name=settings.SQS_BROKER.region,
            config=_CONFIG,
        )
