"""Create every queue of the topology with its DLQ and redrive policy (local stack and tests)."""

from __future__ import annotations

import json

import boto3

from core.claim_check_bucket import BUCKET_ENV_VAR, bucket_name
from core.sqs_batches import message_counts
from core.topology import Topology


def sqs_client(endpoint_url: str | None, region: str = "us-east-1"):
    return boto3.client("sqs", endpoint_url=endpoint_url, region_name=region)


def create_queues(topology: Topology, *, endpoint_url: str | None, prefix: str = "") -> dict[str, str]:
    """Create (idempotently) each queue and its DLQ, and the claim-check bucket when a queue uses one; returns
    {queue key: queue URL}."""
    if any(q.claim_check_max_bytes for q in topology.queues.values()):
        create_claim_check_bucket(endpoint_url=endpoint_url)
    sqs = sqs_client(endpoint_url)
    urls = {}
    for key, spec in topology.queues.items():
        dlq_url = sqs.create_queue(
            QueueName=spec.dlq_sqs_name(prefix),
            Attributes={"MessageRetentionPeriod": str(spec.dlq_retention_seconds)},
        )["QueueUrl"]
        dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        urls[key] = sqs.create_queue(
            QueueName=spec.sqs_name(prefix),
            Attributes={
                "VisibilityTimeout": str(spec.visibility_timeout),
                "MessageRetentionPeriod": str(spec.retention_seconds),
                "MaximumMessageSize": str(spec.max_message_bytes),
                "RedrivePolicy": json.dumps(
                    {"deadLetterTargetArn": dlq_arn, "maxReceiveCount": spec.max_receive_count}
                ),
            },
        )["QueueUrl"]
    return urls


def create_claim_check_bucket(*, endpoint_url: str | None, bucket: str | None = None) -> str:
    """The claim-check bucket ($CLAIM_CHECK_BUCKET) on the emulator, created if missing; infra/ makes the real one."""
    bucket = bucket or bucket_name()
    if not bucket:
        raise RuntimeError(f"a queue has claim_check_max_bytes but {BUCKET_ENV_VAR} is unset")
    s3 = boto3.client("s3", endpoint_url=endpoint_url, region_name="us-east-1")
    s3.create_bucket(Bucket=bucket)  # idempotent in us-east-1 for the bucket's owner
    return bucket


def dlq_url(topology: Topology, key: str, *, endpoint_url: str | None, prefix: str = "") -> str:
    sqs = sqs_client(endpoint_url)
    return sqs.get_queue_url(QueueName=topology.queue(key).dlq_sqs_name(prefix))["QueueUrl"]


def queue_depth(url: str, *, endpoint_url: str | None) -> dict[str, int]:
    """Visible, in-flight and delayed message counts of one queue."""
    return message_counts(sqs_client(endpoint_url), url)
