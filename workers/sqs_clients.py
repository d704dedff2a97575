"""The one factory for boto3 SQS clients the worker makes itself, with the transport's timeouts and retries."""

from __future__ import annotations

import boto3
from botocore.config import Config

from workers.celery_config import SQS_CLIENT_CONFIG


def client_config() -> Config:
    """The botocore config kombu's clients get from transport_options' "client-config" (the same numbers)."""
    return Config(**SQS_CLIENT_CONFIG)


def new_sqs_client(*, endpoint_url: str | None, region: str):
    """An SQS client like kombu's own: botocore's defaults (60 s connect and read, 5 attempts) would let one
    hung call stall a heartbeat past the visibility timeout."""
    return boto3.client("sqs", endpoint_url=endpoint_url, region_name=region, config=client_config())
