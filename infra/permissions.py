"""Least-privilege permissions of the task roles, statement by statement (no wildcard actions; a wildcard
resource only where the action has no resource-level permissions)."""

from __future__ import annotations

from aws_cdk import Stack
from aws_cdk import aws_ecs as ecs
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


# A worker protects its own task from scale-in while it holds tasks (workers/task_protection.py): the ECS
# agent's endpoint calls UpdateTaskProtection with the task role's credentials.
TASK_PROTECTION_ACTIONS = ("ecs:UpdateTaskProtection",)


# The queues page (api/ops) replays DLQs with the replay Lambda's code, so it needs that Lambda's permissions
# on the DLQs (serverless.yml, DlqReplayRole): hold, delete what was sent, make the rest visible again.
REPLAY_DLQ_ACTIONS = CONSUME_ACTIONS
# The page's age of the oldest message and throughput: CloudWatch AWS/SQS metrics, all queues in one call.
METRICS_ACTIONS = ("cloudwatch:GetMetricData",)


def _allow(role: iam.IRole, sid: str, actions: tuple[str, ...], resources: list[str]) -> None:
    role.add_to_principal_policy(iam.PolicyStatement(sid=sid, actions=list(actions), resources=resources))


def allow_publish(role: iam.IRole, pairs: list[QueuePair]) -> None:
    """Send to the task queues, never to a DLQ (SQS's redrive fills those; only replays read them)."""
    _allow(role, "PublishTasks", PUBLISH_ACTIONS, [pair.queue.queue_arn for pair in pairs])


def allow_consume(role: iam.IRole, pairs: list[QueuePair]) -> None:
    """Receive from, ack on and requeue to a worker group's own queues."""
    _allow(role, "ConsumeOwnQueues", CONSUME_ACTIONS, [pair.queue.queue_arn for pair in pairs])


def allow_dlq_replay(role: iam.IRole, pairs: list[QueuePair]) -> None:
    """Receive from, delete from and release messages of the DLQs (sending back is allow_publish's)."""
    _allow(role, "ReplayDlqs", REPLAY_DLQ_ACTIONS, [pair.dlq.queue_arn for pair in pairs])


def allow_read_queue_metrics(role: iam.IRole) -> None:
    """Read CloudWatch metrics: GetMetricData has no resource-level permissions, so its resource is "*"."""
    _allow(role, "ReadQueueMetrics", METRICS_ACTIONS, ["*"])


def allow_task_protection(role: iam.IRole, cluster: ecs.ICluster) -> None:
    """Protect a task of this cluster from scale-in; the task's own ARN is known only at run time."""
    tasks = Stack.of(role).format_arn(service="ecs", resource="task", resource_name=f"{cluster.cluster_name}/*")
    _allow(role, "ProtectOwnTaskFromScaleIn", TASK_PROTECTION_ACTIONS, [tasks])
