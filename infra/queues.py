"""Every queue of the topology (queues.yml) with its dead-letter queue and redrive policy."""

from __future__ import annotations

from dataclasses import dataclass

from aws_cdk import Duration, RemovalPolicy, Stack
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from core.topology import QueueSpec, Topology
from infra.naming import pascal_case


@dataclass(frozen=True)
class QueuePair:
    """A topology queue, its SQS queue and its DLQ."""

    spec: QueueSpec
    queue: sqs.Queue
    dlq: sqs.Queue


class TopologyQueues(Construct):
    """One SQS queue and one DLQ per topology queue, named "<prefix><name>" and "<prefix><dlq>"."""

    def __init__(self, scope: Construct, construct_id: str, *, topology: Topology, prefix: str) -> None:
        super().__init__(scope, construct_id)
        self.pairs: dict[str, QueuePair] = {}
        for key, spec in topology.queues.items():
            # Always with a suffix: a construct named "Default" (the `default` queue) would be special
            # to CDK (a construct's default child) and lose its name in the logical id.
            cid = pascal_case(key)
            # The source queue's ARN from its name: a reference would be a cycle (the queue refers to its DLQ).
            source_arn = Stack.of(self).format_arn(service="sqs", resource=spec.sqs_name(prefix))
            dlq = sqs.Queue(
                self,
                f"{cid}Dlq",
                queue_name=spec.dlq_sqs_name(prefix),
                retention_period=Duration.seconds(spec.dlq_retention_seconds),
                encryption=sqs.QueueEncryption.SQS_MANAGED,
                enforce_ssl=True,
                # Only its own queue may dead-letter into it.
                redrive_allow_policy=sqs.RedriveAllowPolicy(
                    redrive_permission=sqs.RedrivePermission.BY_QUEUE,
                    source_queues=[sqs.Queue.from_queue_arn(self, f"{cid}Source", source_arn)],
                ),
                # The failed tasks outlive the stack: deleting or replacing it never deletes them.
                removal_policy=RemovalPolicy.RETAIN,
            )
            queue = sqs.Queue(
                self,
                f"{cid}Queue",
                queue_name=spec.sqs_name(prefix),
                visibility_timeout=Duration.seconds(spec.visibility_timeout),
                retention_period=Duration.seconds(spec.retention_seconds),
                max_message_size_bytes=spec.max_message_bytes,
                # SSE-SQS: encrypted at rest with no KMS key, so no kms:* permission anywhere.
                encryption=sqs.QueueEncryption.SQS_MANAGED,
                enforce_ssl=True,
                # A failed task is left unacked (task_acks_on_failure=False) and comes back every
                # visibility timeout; this moves it to the DLQ on receive max_receive_count + 1.
                dead_letter_queue=sqs.DeadLetterQueue(max_receive_count=spec.max_receive_count, queue=dlq),
            )
            self.pairs[key] = QueuePair(spec=spec, queue=queue, dlq=dlq)

    def of(self, keys: tuple[str, ...] | list[str]) -> list[QueuePair]:
        return [self.pairs[key] for key in keys]
