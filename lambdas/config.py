"""Configuration of the Lambdas, from their environment (set by serverless.yml from the topology)."""

from __future__ import annotations

import os
from functools import lru_cache

import boto3

from core.env import env_int, env_str
from core.topology import Topology, load_topology

SERVICE = "celery-sqs-dlq"
METRICS_NAMESPACE = "CelerySqs"


@lru_cache(maxsize=1)
def topology() -> Topology:
    # Lambdas always use the deployed numbers, never a local profile.
    return load_topology(profile=os.environ.get("QUEUE_TOPOLOGY_PROFILE", ""))


def queue_prefix() -> str:
    return env_str("SQS_QUEUE_PREFIX", "") or ""


def max_replays() -> int:
    return env_int("DLQ_MAX_REPLAYS", 3)


def sqs_client():
    # SQS_ENDPOINT_URL only for local runs; on AWS the default endpoint and the function's role.
    return boto3.client("sqs", endpoint_url=env_str("SQS_ENDPOINT_URL", None))


def sns_client():
    return boto3.client("sns", endpoint_url=env_str("SNS_ENDPOINT_URL", None))
