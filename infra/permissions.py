"""Least-privilege SQS permissions of the task roles, statement by statement (no wildcards)."""

from __future__ import annotations

from aws_cdk import aws_iam as iam

from infra.queues import QueuePair

# Publishing: kombu 5.7 declares the queue on a connection's first publish (GetQueueAttributes) and a
# reject reads the queue's RedrivePolicy (GetQueueAttributes); GetQueueUrl for boto3 callers by name.
PUBLISH_ACTIONS = ("sqs:SendMessage", "sqs:GetQueueAttributes", "sqs:GetQueueUrl")
# Consuming with acks_late: receive, delete on ack, visibility changes on requeue/restore. The IAM
# action sqs:ChangeMessageVisibility also authorises ChangeMessageVisibilityBatch (and DeleteMessage
# DeleteMessageBatch): there is no separate *Batch action to grant.
CONSUME_ACTIONS = (
    "sqs:ReceiveMessage",
    "sqs:DeleteMessage",
    "sqs:ChangeMessageVisibility",
    "sqs:GetQueueAttributes",
    "sqs:GetQueueUrl",
)


def allow_publish(role: iam.IRole, pairs: list[QueuePair]) -> None:
    """Send to the task queues (never a DLQ: only the DLQ Lambdas of serverless.yml touch those)."""
    role.add_to_principal_policy(
        iam.PolicyStatement(
            sid="PublishTasks",
            actions=list(PUBLISH_ACTIONS),
            resources=[pair.queue.queue_arn for pair in pairs],
        )
    )


def allow_consume(role: iam.IRole, pairs: list[QueuePair]) -> None:
    """Receive from, ack on and requeue to a worker group's own queues."""
    role.add_to_principal_policy(
        iam.PolicyStatement(
            sid="ConsumeOwnQueues",
            actions=list(CONSUME_ACTIONS),
            resources=[pair.queue.queue_arn for pair in pairs],
        )
    )
