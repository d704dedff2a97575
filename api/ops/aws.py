"""The AWS clients of the ops pages and commands, built from the settings (the local emulator or AWS)."""

from __future__ import annotations

import boto3
from botocore.config import Config
from django.conf import settings

# A page that polls must answer even when an endpoint does not: fail fast, show the error, try next time.
_CONFIG = Config(connect_timeout=3, read_timeout=10, retries={"max_attempts": 2, "mode": "standard"})


def sqs_client():
    return boto3.client(
        "sqs", endpoint_url=settings.SQS_ENDPOINT_URL, region_name=settings.SQS_BROKER.region, config=_CONFIG
    )


def cloudwatch_client():
    return boto3.client(
        "cloudwatch",
        endpoint_url=settings.CLOUDWATCH_ENDPOINT_URL,
        region_name=settings.SQS_BROKER.region,
        config=_CONFIG,
    )
