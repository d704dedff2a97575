"""Worker scaling on backlog per task: visible messages of the group's queues / its running tasks."""

from __future__ import annotations

from aws_cdk import aws_applicationautoscaling as appscaling
from constructs import Construct

from infra.queues import QueuePair

Query = appscaling.CfnScalingPolicy.TargetTrackingMetricDataQueryProperty
MetricStat = appscaling.CfnScalingPolicy.TargetTrackingMetricStatProperty
Metric = appscaling.CfnScalingPolicy.TargetTrackingMetricProperty
Dimension = appscaling.CfnScalingPolicy.TargetTrackingMetricDimensionProperty

TASKS_ID = "tasks"
BACKLOG_ID = "backlog_per_task"
SCALE_OUT_COOLDOWN_SECONDS = 60
# Scaling in stops a worker: SIGTERM, soft shutdown, unstarted messages handed back. Not too often.
SCALE_IN_COOLDOWN_SECONDS = 300


def backlog_expression(queue_ids: list[str]) -> str:
    """The queues' visible messages summed, per running task. FILL: a queue with no datapoint in the
    period (SQS stops publishing for a long-idle queue) counts as empty instead of blanking the sum."""
    total = " + ".join(f"FILL({qid}, 0)" for qid in queue_ids)
    return f"({total}) / {TASKS_ID}"


def backlog_per_task_policy(
    scope: Construct,
    construct_id: str,
    *,
    policy_name: str,
    scalable_target: appscaling.ScalableTarget,
    queues: list[QueuePair],
    cluster_name: str,
    service_name: str,
    backlog_per_task: int,
) -> appscaling.CfnScalingPolicy:
    """A target tracking policy on metric math (the CDK L2 policy takes single metrics only)."""
    queue_ids = [f"visible{i}" for i in range(len(queues))]
    metrics = [
        Query(
            id=qid,
            label=f"{pair.spec.key}: visible messages",
            return_data=False,
            metric_stat=MetricStat(
                metric=Metric(
                    namespace="AWS/SQS",
                    metric_name="ApproximateNumberOfMessagesVisible",
                    dimensions=[Dimension(name="QueueName", value=pair.queue.queue_name)],
                ),
                # One datapoint a minute; Average does not double-count should SQS ever send two.
                stat="Average",
            ),
        )
        for qid, pair in zip(queue_ids, queues, strict=True)
    ]
    metrics.append(
        Query(
            id=TASKS_ID,
            label="running tasks",
            return_data=False,
            metric_stat=MetricStat(
                metric=Metric(
                    namespace="ECS/ContainerInsights",  # needs Container Insights on the cluster
                    metric_name="RunningTaskCount",
                    dimensions=[
                        Dimension(name="ClusterName", value=cluster_name),
                        Dimension(name="ServiceName", value=service_name),
                    ],
                ),
                stat="Average",
            ),
        )
    )
    metrics.append(
        Query(
            id=BACKLOG_ID,
            label="visible messages per running task",
            expression=backlog_expression(queue_ids),
            return_data=True,
        )
    )
    return appscaling.CfnScalingPolicy(
        scope,
        construct_id,
        policy_name=policy_name,
        policy_type="TargetTrackingScaling",
        scaling_target_id=scalable_target.scalable_target_id,
        target_tracking_scaling_policy_configuration=appscaling.CfnScalingPolicy.TargetTrackingScalingPolicyConfigurationProperty(
            target_value=float(backlog_per_task),
            customized_metric_specification=appscaling.CfnScalingPolicy.CustomizedMetricSpecificationProperty(
                metrics=metrics
            ),
            scale_out_cooldown=SCALE_OUT_COOLDOWN_SECONDS,
            scale_in_cooldown=SCALE_IN_COOLDOWN_SECONDS,
        ),
    )
